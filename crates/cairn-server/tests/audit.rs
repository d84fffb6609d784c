//! The audit log with a real server and the redis crate: logins (good
//! and bad), ACL changes, admin commands and refused commands are
//! recorded in order, with names and never values; the chain verifies,
//! survives a restart, and breaks where a record is edited or removed.

use std::path::Path;

fn start(path: &Path) -> cairn_server::ServerHandle {
    let config = cairn_server::Config {
        port: 0,
        requirepass: "adminpw-not-logged".into(),
        audit_log: path.to_string_lossy().into_owned(),
        ..Default::default()
    };
    cairn_server::start(config).expect("server starts")
}

fn conn(h: &cairn_server::ServerHandle) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", h.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn run(c: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).map_err(|e| e.to_string())
}

fn stop(h: cairn_server::ServerHandle) {
    h.shutdown();
    h.wait();
}

/// The records as (event, user, command, outcome) for comparison.
fn records(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let f = |name: &str| {
                let key = format!("\"{name}\":\"");
                l.find(&key)
                    .map(|i| {
                        let rest = &l[i + key.len()..];
                        rest[..rest.find('"').unwrap_or(0)].to_string()
                    })
                    .unwrap_or_default()
            };
            format!(
                "{} {} {} {}",
                f("event"),
                f("user"),
                f("command"),
                f("outcome")
            )
        })
        .collect()
}

#[test]
fn logins_acl_changes_admin_and_refused_commands_are_chained_without_values() {
    let dir = tempfile_dir("audit-main");
    let path = dir.join("audit.log");
    let h = start(&path);
    let mut c = conn(&h);
    assert!(run(&mut c, &["GET", "k"]).unwrap_err().contains("NOAUTH"));
    assert!(run(&mut c, &["AUTH", "wrong-guess"]).is_err());
    run(&mut c, &["AUTH", "adminpw-not-logged"]).unwrap();
    run(&mut c, &["SET", "secretkey", "secret-value-not-logged"]).unwrap();
    run(&mut c, &["CONFIG", "SET", "maxmemory", "123456789"]).unwrap();
    run(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "bob",
            "on",
            ">bobs-password-not-logged",
            "~b*",
            "+get",
        ],
    )
    .unwrap();
    let mut b = conn(&h);
    run(&mut b, &["AUTH", "bob", "bobs-password-not-logged"]).unwrap();
    run(&mut b, &["GET", "bkey"]).unwrap();
    let e = run(&mut b, &["GET", "other"]).unwrap_err();
    assert!(
        e.to_uppercase().contains("NOPERM") || e.contains("permission"),
        "{e}"
    );
    let e = run(&mut b, &["FLUSHALL"]).unwrap_err();
    assert!(
        e.to_uppercase().contains("NOPERM") || e.contains("permission"),
        "{e}"
    );
    // Lock force-release is for administrators: refused to bob (and
    // recorded), recorded when the admin runs it.
    let e = run(&mut b, &["LOCK.FORCERELEASE", "bkey"]).unwrap_err();
    assert!(e.to_uppercase().contains("NOPERM"), "{e}");
    run(&mut c, &["FLUSHALL"]).unwrap();
    run(&mut c, &["LOCK.FORCERELEASE", "some-lock"]).unwrap();
    // CLUSTER commands are recorded whatever they answer (this node is
    // standalone).
    let _ = run(&mut c, &["CLUSTER", "INFO"]);
    // Bob's address as the server sees it, to find in his records.
    let list = match run(&mut c, &["CLIENT", "LIST"]).unwrap() {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("{other:?}"),
    };
    let bob_addr = list
        .lines()
        .find(|l| l.contains(" user=bob "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .unwrap_or_else(|| panic!("no bob in {list}"))
        .to_string();
    assert!(bob_addr.starts_with("127.0.0.1:"), "{bob_addr}");
    // The writer is asynchronous: INFO shows the records once written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let info = loop {
        let info = match run(&mut c, &["INFO", "stats"]).unwrap() {
            redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        };
        if info.contains("audit_records:17\r\n") {
            break info;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    stop(h);

    // The redis crate sends CLIENT SETINFO (library name and version) as
    // it connects, before any AUTH: refused, and recorded as such.
    let want = [
        "denied default client|setinfo noauth",
        "denied default client|setinfo noauth",
        "denied default get noauth",
        "auth default auth failed",
        "auth default auth ok",
        "command default config|set ",
        "command default acl|setuser ",
        "denied default client|setinfo noauth",
        "denied default client|setinfo noauth",
        "auth bob auth ok",
        "denied bob get key",
        "denied bob flushall command",
        "denied bob lock.forcerelease command",
        "command default flushall ",
        "command default lock.forcerelease ",
        "command default cluster|info ",
        "command default client|list ",
    ];
    let got = records(&path);
    // INFO stats ran after these and is not audited; nothing else is.
    assert_eq!(got, want, "{got:#?}");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["not-logged", "123456789", "secretkey"] {
        assert!(!text.contains(secret), "{secret} in the audit log:\n{text}");
    }
    // Key names are kept (a refused GET names its key).
    assert!(text.contains(r#""keys":["other"]"#), "{text}");
    // A denied command names the user, the client's address and the
    // command: each of bob's refusals carries his connection's address.
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#""event":"denied","user":"bob""#))
        .collect();
    assert_eq!(denied.len(), 3, "{text}");
    for l in &denied {
        assert!(
            l.contains(&format!(r#""client":"{bob_addr}","command":""#)),
            "{l} lacks client {bob_addr}"
        );
    }
    // The force-release names its lock (a key name), as other commands do.
    assert!(text.contains(r#""keys":["some-lock"]"#), "{text}");
    let v = cairn_server::audit::verify(&path).unwrap();
    assert_eq!(v.records, want.len() as u64);
    assert!(
        info.contains(&format!("audit_last_hash:{}", v.last_hash)),
        "{info}"
    );

    // A restart continues the chain.
    let h = start(&path);
    let mut c = conn(&h);
    run(&mut c, &["AUTH", "adminpw-not-logged"]).unwrap();
    stop(h);
    // Two refused CLIENT SETINFO and the AUTH.
    assert_eq!(
        cairn_server::audit::verify(&path).unwrap().records,
        want.len() as u64 + 3
    );

    // Tampering shows: an edited record, a removed one.
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut edited = lines.clone();
    edited[9] = edited[9].replace("\"bob\"", "\"eve\"");
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let e = cairn_server::audit::verify(&path).unwrap_err();
    assert!(e.starts_with("line 10:"), "{e}");
    // ... and the server will not add to it.
    let config = cairn_server::Config {
        port: 0,
        audit_log: path.to_string_lossy().into_owned(),
        ..Default::default()
    };
    assert!(cairn_server::start(config).is_err());
    let mut removed = lines.clone();
    removed.remove(2);
    std::fs::write(&path, removed.join("\n") + "\n").unwrap();
    let e = cairn_server::audit::verify(&path).unwrap_err();
    assert!(e.starts_with("line 3:"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cairn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `maxclients-per-user`: a user's logins past the limit are refused
/// (and audited); one logging out makes room.
#[test]
fn logins_past_the_per_user_limit_are_refused() {
    let dir = tempfile_dir("audit-limit");
    let path = dir.join("audit.log");
    let config = cairn_server::Config {
        port: 0,
        maxclients_per_user: 2,
        audit_log: path.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let h = cairn_server::start(config).expect("server starts");
    let mut admin = conn(&h);
    run(
        &mut admin,
        &["ACL", "SETUSER", "ann", "on", ">pw", "~*", "+@all"],
    )
    .unwrap();
    let mut a1 = conn(&h);
    let mut a2 = conn(&h);
    let mut a3 = conn(&h);
    run(&mut a1, &["AUTH", "ann", "pw"]).unwrap();
    run(&mut a2, &["AUTH", "ann", "pw"]).unwrap();
    let e = run(&mut a3, &["AUTH", "ann", "pw"]).unwrap_err();
    assert!(
        e.contains("max number of clients for user 'ann' reached"),
        "{e}"
    );
    // Still the default user on that connection.
    let who = run(&mut a3, &["ACL", "WHOAMI"]).unwrap();
    assert_eq!(who, redis::Value::BulkString(b"default".to_vec()));
    // Re-authenticating on a connection already counted is fine.
    run(&mut a1, &["AUTH", "ann", "pw"]).unwrap();
    drop(a2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while run(&mut a3, &["AUTH", "ann", "pw"]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed login was never released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop(h);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#""user":"ann","client""#) && text.contains(r#""outcome":"limit""#),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
