//! Users and ACLs side by side with redis-server 7: the same command
//! sequences must give identical replies, error wording included
//! (docs/design/acl.md, docs/COMPATIBILITY.md). ACL LOG entries are
//! compared field by field but for their age and client description.

use std::io::{Read, Write};
use std::time::Duration;

use redis::Value;

mod common;

use common::{cmd, connect, Reference, Server};

/// ACL LOG's entries with their age and client description blanked
/// (they differ by timing and by connection).
fn log_fields(v: Value) -> Value {
    let Value::Array(entries) = v else { return v };
    let entries = entries
        .into_iter()
        .map(|e| match e {
            Value::Array(kv) => {
                let mut out = Vec::new();
                for pair in kv.chunks(2) {
                    let key = pair[0].clone();
                    let blank = matches!(&key, Value::BulkString(k) if k == b"age-seconds" || k == b"client-info");
                    out.push(key);
                    out.push(if blank { Value::Nil } else { pair[1].clone() });
                }
                Value::Array(out)
            }
            other => other,
        })
        .collect();
    Value::Array(entries)
}

/// Runs a script on one connection; `log: ` before a line compares the
/// ACL LOG reply by fields.
fn play(url: &str, script: &[&str]) -> Vec<(String, Result<Value, String>)> {
    let mut c = connect(url);
    script
        .iter()
        .map(|line| {
            let (log, text) = match line.strip_prefix("log: ") {
                Some(t) => (true, t),
                None => (false, *line),
            };
            let args: Vec<&str> = text.split(' ').collect();
            let r = cmd(&mut c, &args).map(|v| if log { log_fields(v) } else { v });
            (line.to_string(), r)
        })
        .collect()
}

fn same_as_redis(cairn_url: &str, redis_url: &str, script: &[&str]) {
    let ours = play(cairn_url, script);
    let theirs = play(redis_url, script);
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t, "cairn vs redis after `{}`", o.0);
    }
}

#[test]
fn requirepass_auth_and_noauth_match_redis() {
    let cairn = Server::with(cairn_server::Config {
        port: 0,
        requirepass: "sekret".into(),
        ..Default::default()
    });
    let redis = Reference::start_with(&["--requirepass", "sekret"]);
    same_as_redis(
        &cairn.url(),
        &redis.url(),
        &[
            "GET a",
            "PING",
            "ACL WHOAMI",
            "NOSUCHCOMMAND x",
            "HELLO 3",
            "HELLO 2 AUTH default bad",
            "AUTH bad",
            "AUTH default bad",
            "AUTH nosuch x",
            "AUTH a b c",
            "EXEC",
            "MULTI",
            "AUTH sekret",
            "ACL WHOAMI",
            "SET a 1",
            "GET a",
            "ACL LIST",
            "ACL GETUSER default",
            "AUTH default sekret",
            "log: ACL LOG",
            "log: ACL LOG 1",
            "ACL LOG -1",
            "ACL LOG x",
            "ACL LOG RESET",
            "ACL LOG",
        ],
    );
}

#[test]
fn hello_auth_logs_in_and_picks_the_protocol() {
    let cairn = Server::with(cairn_server::Config {
        port: 0,
        requirepass: "sekret".into(),
        ..Default::default()
    });
    let mut c = connect(&cairn.url());
    let hello = cmd(&mut c, &["HELLO", "2", "AUTH", "default", "sekret"]);
    assert!(matches!(hello, Ok(Value::Array(_))), "{hello:?}");
    assert_eq!(
        cmd(&mut c, &["ACL", "WHOAMI"]),
        Ok(Value::BulkString(b"default".to_vec()))
    );
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]), Ok(Value::Okay));
}

const ALICE: &str =
    "ACL SETUSER alice on >pw ~k* %R~r* %W~w* &ch +get +set +@hash -hdel +@transaction +incr";

#[test]
fn noperm_on_commands_categories_and_keys_matches_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    same_as_redis(
        &cairn.url(),
        &redis.url(),
        &[
            "FLUSHALL",
            ALICE,
            "AUTH alice wrong",
            "AUTH alice pw",
            "ACL WHOAMI",
            "GET k1",
            "GET x",
            "SET k1 v",
            "SET r1 v",
            "GET r1",
            "SET w1 v",
            "GET w1",
            "INCR w1",
            "INCR k2",
            "HSET k3 f v",
            "HGET k3 f",
            "HDEL k3 f",
            "DEL k1",
            "PING",
            "MULTI",
            "GET x",
            "SET k1 v2",
            "EXEC",
            "MULTI",
            "SET k1 v3",
            "GET k1",
            "EXEC",
            "AUTH default anything",
            "log: ACL LOG",
            "ACL SETUSER alice -@all +get",
            "ACL DRYRUN alice get k1",
            "ACL DRYRUN alice set k1 v",
            "ACL DRYRUN alice get x",
            "ACL DRYRUN alice get",
            "ACL DRYRUN nosuch get k1",
            "ACL DRYRUN alice nosuchcmd",
            // Open to every user, as Redis.
            "ACL SETUSER nob on nopass -@all",
            "ACL DRYRUN nob auth a b",
            "ACL DRYRUN nob hello",
            "ACL DRYRUN nob quit",
            "ACL DRYRUN nob reset",
            "ACL DRYRUN nob ping",
        ],
    );
}

#[test]
fn read_and_write_key_patterns_match_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    let mut script = vec![
        "ACL SETUSER wo on nopass %W~w* +@all",
        "ACL SETUSER ro on nopass %R~w* +@all",
        "ACL SETUSER none on nopass +@all",
    ];
    let cmds = [
        "set w v",
        "set w v get",
        "setnx w v",
        "getset w v",
        "getdel w",
        "getex w",
        "mset w v",
        "append w v",
        "incr w",
        "incrbyfloat w 1",
        "hset w f v",
        "hdel w f",
        "hincrby w f 1",
        "del w",
        "expire w 1",
        "persist w",
        "rename w w2",
        "copy w w2",
        "get w",
        "exists w",
        "type w",
        "ttl w",
        "object encoding w",
        "strlen w",
        "hlen w",
        "hexists w f",
        "hget w f",
        "hgetall w",
        "mget w",
        "getrange w 0 1",
        "dbsize",
        "keys *",
    ];
    let lines: Vec<String> = cmds
        .iter()
        .flat_map(|c| {
            ["wo", "ro", "none"]
                .into_iter()
                .map(move |u| format!("ACL DRYRUN {u} {c}"))
        })
        .collect();
    script.extend(lines.iter().map(String::as_str));
    same_as_redis(&cairn.url(), &redis.url(), &script);
}

#[test]
fn getuser_list_and_rule_errors_match_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    same_as_redis(
        &cairn.url(),
        &redis.url(),
        &[
            // Redis lists single commands in its hash table's (random)
            // order: at most one of each sign per user here.
            "ACL SETUSER alice on >pw ~k* %R~r* %W~w* &ch +get +@hash +@transaction",
            "ACL GETUSER alice",
            "ACL SETUSER bob",
            "ACL GETUSER bob",
            "ACL SETUSER u1 +get +set -get +@hash -@hash allcommands -get",
            "ACL SETUSER u2 resetkeys %RW~a %R~a %W~b %R~b %R~c &x &y &x",
            "ACL SETUSER u3 >a >b >a <b nopass",
            "ACL GETUSER u3",
            "ACL SETUSER u3 >c",
            "ACL GETUSER u3",
            "ACL SETUSER u3 resetpass",
            "ACL GETUSER u3",
            "ACL SETUSER u4 on >p ~* &* +@all reset",
            "ACL SETUSER u5 on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 allkeys allchannels nocommands +@read -get skip-sanitize-payload",
            "ACL GETUSER u5",
            "ACL SETUSER u5 !30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4",
            "ACL SETUSER u6 +@hash -hdel +get +@all -@hash +@hash",
            "ACL SETUSER u7 -@all +@read -@write -hget",
            "ACL LIST",
            "ACL USERS",
            "ACL SETUSER x foo",
            "ACL SETUSER x +nosuch",
            "ACL SETUSER x +@nosuch",
            "ACL SETUSER x #abc",
            "ACL SETUSER x !abc",
            "ACL SETUSER x <nope",
            "ACL SETUSER x %Q~a",
            "ACL SETUSER x %~a",
            "ACL SETUSER x %RR~a",
            "ACL SETUSER x ~* ~a",
            "ACL SETUSER x allkeys %R~*",
            "ACL SETUSER x &* &y",
            "ACL SETUSER alice off ~z* +bogus",
            "ACL GETUSER x",
            "ACL GETUSER alice",
            "ACL DELUSER default",
            "ACL DELUSER bob nosuch u1",
            "ACL USERS",
            "ACL GETUSER nosuch",
            "ACL CAT nosuch",
            "ACL NOSUCH",
            "ACL GETUSER",
            "ACL WHOAMI extra",
            "ACL SAVE",
            "ACL LOAD",
        ],
    );
}

/// `sanitize-payload` and its opposite, logging in as a user that is
/// `off` (AUTH and HELLO AUTH, right and wrong password), and AUTH after
/// `resetpass` (a password, then nopass, each taken away), with ACL
/// GETUSER after each change and the ACL LOG the failures leave.
#[test]
fn sanitize_payload_off_users_and_resetpass_match_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    same_as_redis(
        &cairn.url(),
        &redis.url(),
        &[
            "ACL SETUSER s1 on >pw sanitize-payload ~* +@all",
            "ACL GETUSER s1",
            "ACL SETUSER s1 skip-sanitize-payload",
            "ACL GETUSER s1",
            "ACL SETUSER s1 sanitize-payload",
            "ACL GETUSER s1",
            "ACL SETUSER s1 reset",
            "ACL GETUSER s1",
            "ACL LIST",
            // A user that is off: no login, whatever the password.
            "ACL SETUSER off1 off >pw ~* +@all",
            "ACL GETUSER off1",
            "AUTH off1 pw",
            "AUTH off1 wrong",
            "HELLO 2 AUTH off1 pw",
            "ACL WHOAMI",
            "ACL DRYRUN off1 GET k",
            "ACL SETUSER off1 on",
            "ACL GETUSER off1",
            "AUTH off1 pw",
            "ACL WHOAMI",
            // Turned off while logged in: the session goes on (Redis 7.0
            // only stops new logins).
            "ACL SETUSER off1 off",
            "ACL WHOAMI",
            "GET k",
            "AUTH off1 pw",
            "ACL WHOAMI",
            "AUTH default anything",
            "ACL WHOAMI",
            // resetpass: the password that worked no longer does.
            "ACL SETUSER rp on >pw ~* +@all",
            "AUTH rp pw",
            "ACL WHOAMI",
            "ACL SETUSER rp resetpass",
            "ACL GETUSER rp",
            "ACL WHOAMI",
            "AUTH rp pw",
            "AUTH rp ",
            "ACL WHOAMI",
            // ... nor does nopass once reset.
            "ACL SETUSER rp nopass",
            "ACL GETUSER rp",
            "AUTH rp whatever",
            "ACL SETUSER rp resetpass",
            "ACL GETUSER rp",
            "AUTH rp whatever",
            "ACL SETUSER rp >new",
            "ACL GETUSER rp",
            "AUTH rp new",
            "ACL WHOAMI",
            "AUTH default x",
            "ACL LIST",
            "log: ACL LOG",
        ],
    );
}

#[test]
fn categories_are_redis_in_redis_order_then_cairns() {
    let cairn = Server::start();
    let redis = Reference::start();
    let ours = cmd(&mut connect(&cairn.url()), &["ACL", "CAT"]);
    let theirs = cmd(&mut connect(&redis.url()), &["ACL", "CAT"]);
    let (Ok(Value::Array(ours)), Ok(Value::Array(theirs))) = (ours, theirs) else {
        panic!("ACL CAT answers arrays");
    };
    assert_eq!(ours[..theirs.len()], theirs[..]);
    let extra: Vec<Value> = ["lock", "cluster"]
        .iter()
        .map(|c| Value::BulkString(c.as_bytes().to_vec()))
        .collect();
    assert_eq!(ours[theirs.len()..], extra[..]);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-acl-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("users.acl")
}

#[test]
fn acl_files_load_and_save_as_redis_does() {
    let text = "user default on nopass ~* &* +@all\nuser alice on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k* resetchannels -@all +get\n";
    let (ours, theirs) = (temp_path("ours"), temp_path("theirs"));
    std::fs::write(&ours, text).expect("write");
    std::fs::write(&theirs, text).expect("write");
    let cairn = Server::with(cairn_server::Config {
        port: 0,
        aclfile: ours.to_string_lossy().into_owned(),
        ..Default::default()
    });
    let redis = Reference::start_with(&["--aclfile", &theirs.to_string_lossy()]);
    let script = [
        "ACL LIST",
        "AUTH alice pw",
        "GET k1",
        "AUTH default x",
        "ACL SETUSER bob on >b ~b* +@read",
        "ACL SAVE",
        "ACL DELUSER alice",
        "ACL LOAD",
        "ACL LIST",
    ];
    same_as_redis(&cairn.url(), &redis.url(), &script);
    let saved = |p: &std::path::Path| std::fs::read_to_string(p).expect("saved");
    assert_eq!(saved(&ours), saved(&theirs));
    // A bad file changes nothing; the error names the file and line.
    std::fs::write(&ours, "user carol on +nosuch\n").expect("write");
    std::fs::write(&theirs, "user carol on +nosuch\n").expect("write");
    let mut c = connect(&cairn.url());
    let mut r = connect(&redis.url());
    let ours_err = cmd(&mut c, &["ACL", "LOAD"]).expect_err("bad file");
    let theirs_err = cmd(&mut r, &["ACL", "LOAD"]).expect_err("bad file");
    let strip = |e: &str, p: &std::path::Path| e.replace(&*p.to_string_lossy(), "FILE");
    assert_eq!(strip(&ours_err, &ours), strip(&theirs_err, &theirs));
    assert_eq!(cmd(&mut c, &["ACL", "LIST"]), cmd(&mut r, &["ACL", "LIST"]));
}

#[test]
fn a_bad_acl_file_stops_the_server_from_starting() {
    let path = temp_path("bad");
    std::fs::write(&path, "user x on +nosuch\n").expect("write");
    let started = cairn_server::start(cairn_server::Config {
        port: 0,
        aclfile: path.to_string_lossy().into_owned(),
        ..Default::default()
    });
    let err = started.err().expect("refused").to_string();
    assert!(
        err.contains("Unknown command or category name in ACL"),
        "{err}"
    );
}

/// Raw RESP over TCP: sees the connection close.
fn raw(addr: std::net::SocketAddr, requests: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(requests.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn too_many_failed_auths_close_the_connection() {
    let cairn = Server::with(cairn_server::Config {
        port: 0,
        requirepass: "sekret".into(),
        ..Default::default()
    });
    let attempts = "AUTH wrong\r\n".repeat(12) + "PING\r\n";
    let out = raw(cairn.addr(), &attempts);
    assert_eq!(out.matches("-WRONGPASS").count(), 10, "{out}");
    assert!(!out.contains("NOAUTH"), "closed before PING: {out}");
}

#[test]
fn a_deleted_users_connections_are_closed_and_changes_apply_at_once() {
    let cairn = Server::start();
    let mut admin = connect(&cairn.url());
    cmd(
        &mut admin,
        &["ACL", "SETUSER", "eve", "on", ">pw", "~*", "+get"],
    )
    .expect("setuser");
    let mut eve = connect(&cairn.url());
    cmd(&mut eve, &["AUTH", "eve", "pw"]).expect("auth");
    assert_eq!(cmd(&mut eve, &["GET", "k"]), Ok(Value::Nil));
    cmd(&mut admin, &["ACL", "SETUSER", "eve", "-get"]).expect("setuser");
    let denied = cmd(&mut eve, &["GET", "k"]).expect_err("revoked");
    assert!(
        denied.contains("no permissions to run the 'get' command"),
        "{denied}"
    );
    cmd(&mut admin, &["ACL", "DELUSER", "eve"]).expect("deluser");
    assert!(cmd(&mut eve, &["PING"]).is_err(), "connection closed");
}

#[test]
fn config_set_requirepass_matches_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    let script = [
        "CONFIG SET requirepass pw",
        "CONFIG GET requirepass",
        "ACL LIST",
        "AUTH pw",
        "AUTH default nope",
    ];
    same_as_redis(&cairn.url(), &redis.url(), &script);
    // A new connection now needs the password.
    same_as_redis(&cairn.url(), &redis.url(), &["GET k", "AUTH pw", "GET k"]);
}

#[test]
fn genpass_and_client_info_user_match_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    same_as_redis(
        &cairn.url(),
        &redis.url(),
        &["ACL GENPASS 0", "ACL GENPASS 5000", "ACL GENPASS x"],
    );
    for url in [cairn.url(), redis.url()] {
        let mut c = connect(&url);
        for (bits, len) in [("5", 2), ("256", 64), ("4096", 1024)] {
            let Ok(Value::BulkString(p)) = cmd(&mut c, &["ACL", "GENPASS", bits]) else {
                panic!("GENPASS answers a string");
            };
            assert_eq!(p.len(), len, "{url} {bits}");
        }
        cmd(
            &mut c,
            &["ACL", "SETUSER", "dan", "on", ">pw", "+@all", "~*"],
        )
        .expect("setuser");
        cmd(&mut c, &["AUTH", "dan", "pw"]).expect("auth");
        let text = match cmd(&mut c, &["CLIENT", "INFO"]) {
            Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Value::VerbatimString { text, .. }) => text,
            other => panic!("CLIENT INFO answers a string: {other:?}"),
        };
        assert!(text.contains(" user=dan "), "{url}: {text}");
    }
}

#[test]
fn exec_refuses_commands_whose_permission_was_revoked_after_queueing() {
    let cairn = Server::start();
    let mut admin = connect(&cairn.url());
    cmd(
        &mut admin,
        &["ACL", "SETUSER", "fay", "on", ">pw", "~*", "+@all"],
    )
    .expect("setuser");
    let mut fay = connect(&cairn.url());
    cmd(&mut fay, &["AUTH", "fay", "pw"]).expect("auth");
    cmd(&mut fay, &["MULTI"]).expect("multi");
    cmd(&mut fay, &["SET", "k", "v"]).expect("queued");
    cmd(&mut admin, &["ACL", "SETUSER", "fay", "-set"]).expect("revoke");
    let refused = cmd(&mut fay, &["EXEC"]).expect_err("revoked");
    assert!(
        refused.contains("ACLs rules changed between the moment the transaction was accumulated and the EXEC call"),
        "{refused}"
    );
    assert_eq!(cmd(&mut admin, &["GET", "k"]), Ok(Value::Nil));
    // The transaction is over.
    let e = cmd(&mut fay, &["EXEC"]).expect_err("no multi");
    assert!(e.contains("EXEC without MULTI"), "{e}");
}

#[test]
fn command_info_lists_acl_categories_as_redis() {
    let cairn = Server::start();
    let redis = Reference::start();
    let categories = |url: &str, name: &str| -> Value {
        match cmd(&mut connect(url), &["COMMAND", "INFO", name]) {
            Ok(Value::Array(mut entries)) => match entries.pop() {
                Some(Value::Array(mut fields)) if fields.len() > 6 => fields.swap_remove(6),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    };
    for name in [
        "get", "set", "hset", "hgetall", "del", "exists", "flushall", "ping", "exec",
    ] {
        assert_eq!(
            categories(&cairn.url(), name),
            categories(&redis.url(), name),
            "{name}"
        );
    }
}

/// A thousand wrong passwords (100 connections of 10): each connection is
/// closed after its tenth failure, every failure is WRONGPASS, the
/// server keeps serving a logged-in client throughout and the right
/// password still works afterwards (no global lock-out, as Redis); ACL
/// LOG keeps them within its bound (128 entries, Redis' acllog-max-len).
#[test]
fn a_thousand_wrong_passwords_close_their_connections_and_others_are_served() {
    let cairn = Server::with(cairn_server::Config {
        port: 0,
        requirepass: "sekret".into(),
        ..Default::default()
    });
    let mut good = connect(&format!("redis://:sekret@{}/", cairn.addr()));
    let attempts = "AUTH wrong-password\r\n".repeat(11);
    let mut wrongpass = 0;
    for i in 0..100 {
        let out = raw(cairn.addr(), &attempts);
        wrongpass += out.matches("-WRONGPASS").count();
        if i % 10 == 0 {
            let v = cmd(&mut good, &["INCR", "served"]).unwrap();
            assert_eq!(v, redis::Value::Int(i / 10 + 1));
        }
    }
    assert_eq!(wrongpass, 1000);
    let mut again = connect(&format!("redis://:sekret@{}/", cairn.addr()));
    assert_eq!(
        cmd(&mut again, &["GET", "served"]).unwrap(),
        redis::Value::BulkString(b"10".to_vec())
    );
    let log = cmd(&mut good, &["ACL", "LOG", "1000"]).unwrap();
    let redis::Value::Array(entries) = log else {
        panic!("ACL LOG: {log:?}")
    };
    assert!((1..=128).contains(&entries.len()), "{}", entries.len());
    assert!(format!("{:?}", entries[0]).contains("auth"));
}
