//! MULTI/EXEC/DISCARD/WATCH on a standalone server through a real Redis
//! client, side by side with redis-server where Redis defines the
//! answer (replies and error wording must be identical), and cairn's
//! own guarantees: fenced transactions, atomicity across shards, WATCH
//! under contention losing no update. docs/design/transactions.md.

use std::time::Duration;

use redis::Value;

mod common;

use common::{Reference, Server};

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("valid url")
        .get_connection()
        .expect("connect")
}

fn cmd(c: &mut redis::Connection, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).map_err(|e| e.to_string())
}

/// Steps of a script: (connection 0 or 1, command) or a pause.
enum Step<'a> {
    On(usize, &'a [&'a str]),
    Sleep(u64),
}
use Step::*;

fn play(url: &str, steps: &[Step<'_>]) -> Vec<Result<Value, String>> {
    let mut c = [connect(url), connect(url)];
    let mut out = Vec::new();
    cmd(&mut c[0], &["FLUSHALL"]).expect("flush");
    for s in steps {
        match s {
            On(i, args) => out.push(cmd(&mut c[*i], args)),
            Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
        }
    }
    out
}

/// Plays each script against redis-server and cairn; the replies must be
/// the same, step for step.
fn same_as_redis(scripts: &[(&str, &[Step<'_>])]) {
    let reference = Reference::start();
    let server = Server::start();
    for (name, steps) in scripts {
        let want = play(&reference.url(), steps);
        let got = play(&server.url(), steps);
        assert_eq!(
            got, want,
            "script '{name}': cairn (left) differs from redis-server"
        );
    }
}

#[test]
fn transactions_answer_as_redis_does() {
    same_as_redis(&[
        (
            "commands apply in order, errors stay in place",
            &[
                On(0, &["MULTI"]),
                On(0, &["SET", "a", "1"]),
                On(0, &["INCR", "a"]),
                On(0, &["GET", "a"]),
                On(0, &["SET", "s", "text"]),
                On(0, &["INCR", "s"]),
                On(0, &["SET", "x", "1", "EX", "0"]),
                On(0, &["EXEC"]),
                On(0, &["GET", "a"]),
                On(0, &["GET", "x"]),
            ],
        ),
        (
            "protocol errors",
            &[
                On(0, &["EXEC"]),
                On(0, &["DISCARD"]),
                On(0, &["MULTI"]),
                On(0, &["MULTI"]),
                On(0, &["WATCH", "a"]),
                On(0, &["SET", "a", "1"]),
                On(0, &["EXEC"]),
                On(0, &["MULTI"]),
                On(0, &["DISCARD"]),
                On(0, &["EXEC"]),
                On(0, &["MULTI"]),
                On(0, &["EXEC"]),
            ],
        ),
        (
            "a refused command aborts EXEC",
            &[
                On(0, &["MULTI"]),
                On(0, &["SET", "a", "1"]),
                On(0, &["SET", "a"]),
                On(0, &["EXEC"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "a", "1"]),
                On(0, &["NOSUCHCOMMAND", "a"]),
                On(0, &["EXEC"]),
                On(0, &["EXISTS", "a"]),
            ],
        ),
        (
            "a watched key changed by another client",
            &[
                On(0, &["SET", "w", "1"]),
                On(0, &["WATCH", "w"]),
                On(1, &["SET", "w", "2"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "w", "3"]),
                On(0, &["EXEC"]),
                On(0, &["GET", "w"]),
                // EXEC forgot the watch: this one applies.
                On(0, &["MULTI"]),
                On(0, &["SET", "w", "4"]),
                On(0, &["EXEC"]),
            ],
        ),
        (
            "a watched key set to the same value, created and deleted, or unchanged",
            &[
                On(0, &["SET", "w", "1"]),
                On(0, &["WATCH", "w"]),
                On(1, &["SET", "w", "1"]),
                On(0, &["MULTI"]),
                On(0, &["INCR", "w"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "absent"]),
                On(1, &["SET", "absent", "1"]),
                On(1, &["DEL", "absent"]),
                On(0, &["MULTI"]),
                On(0, &["INCR", "w"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "w"]),
                On(1, &["GET", "w"]),
                On(0, &["MULTI"]),
                On(0, &["INCR", "w"]),
                On(0, &["EXEC"]),
            ],
        ),
        (
            "UNWATCH, DISCARD and a failed check all forget watches",
            &[
                On(0, &["WATCH", "w"]),
                On(0, &["UNWATCH"]),
                On(1, &["SET", "w", "1"]),
                On(0, &["MULTI"]),
                On(0, &["INCR", "w"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "w"]),
                On(0, &["MULTI"]),
                On(0, &["DISCARD"]),
                On(1, &["SET", "w", "5"]),
                On(0, &["MULTI"]),
                On(0, &["INCR", "w"]),
                On(0, &["EXEC"]),
            ],
        ),
        (
            "FLUSHALL touches watched keys that existed, only those",
            &[
                On(0, &["SET", "w", "1"]),
                On(0, &["WATCH", "w"]),
                On(1, &["FLUSHALL"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "1"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "never"]),
                On(1, &["FLUSHALL"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "2"]),
                On(0, &["EXEC"]),
            ],
        ),
        (
            "a watched key that expires before EXEC",
            &[
                On(0, &["SET", "e", "1", "PX", "40"]),
                On(0, &["WATCH", "e"]),
                Sleep(120),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "1"]),
                On(0, &["EXEC"]),
                On(0, &["GET", "x"]),
            ],
        ),
        (
            "expiry, deletion and renaming touch watched keys",
            &[
                On(0, &["SET", "w", "1"]),
                On(0, &["WATCH", "w"]),
                On(1, &["EXPIRE", "w", "100"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "1"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "w"]),
                On(1, &["RENAME", "w", "v"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "2"]),
                On(0, &["EXEC"]),
                On(0, &["WATCH", "v"]),
                On(1, &["DEL", "v"]),
                On(0, &["MULTI"]),
                On(0, &["SET", "x", "3"]),
                On(0, &["EXEC"]),
                On(0, &["GET", "x"]),
            ],
        ),
    ]);
}

fn int(v: Result<Value, String>) -> i64 {
    match v {
        Ok(Value::Int(n)) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn a_fenced_transaction_applies_only_while_its_token_holds() {
    let s = Server::start();
    let mut c = connect(&s.url());
    let t = int(cmd(&mut c, &["LOCK.ACQUIRE", "{job}lock", "a", "10000"])).to_string();
    let tx = |c: &mut redis::Connection, token: &str, value: &str| {
        cmd(c, &["MULTI"]).unwrap();
        assert_eq!(
            cmd(c, &["LOCK.FENCE", "{job}lock", token]),
            Ok(Value::SimpleString("QUEUED".into()))
        );
        cmd(c, &["SET", "{job}data", value]).unwrap();
        cmd(c, &["INCR", "{job}count"]).unwrap();
        cmd(c, &["EXEC"])
    };
    assert_eq!(
        tx(&mut c, &t, "first"),
        Ok(Value::Array(vec![Value::Okay, Value::Okay, Value::Int(1)]))
    );
    // The lock moves on: the old holder's transaction changes nothing.
    assert_eq!(int(cmd(&mut c, &["LOCK.RELEASE", "{job}lock", "a", &t])), 1);
    let t2 = int(cmd(&mut c, &["LOCK.ACQUIRE", "{job}lock", "b", "10000"])).to_string();
    assert_ne!(t, t2);
    let stale = tx(&mut c, &t, "stale").unwrap_err();
    assert!(stale.contains("FENCED"), "{stale}");
    assert_eq!(
        cmd(&mut c, &["GET", "{job}data"]),
        Ok(Value::BulkString(b"first".to_vec()))
    );
    assert_eq!(
        int(cmd(&mut c, &["GET", "{job}count"]).map(|v| match v {
            Value::BulkString(b) => Value::Int(String::from_utf8_lossy(&b).parse().unwrap_or(-1)),
            v => v,
        })),
        1
    );
    // Outside a transaction LOCK.FENCE answers for itself; fenced DEL and
    // INCRBY follow the same rule.
    assert_eq!(
        cmd(&mut c, &["LOCK.FENCE", "{job}lock", &t2]),
        Ok(Value::Okay)
    );
    assert!(cmd(&mut c, &["LOCK.FENCE", "{job}lock", &t])
        .unwrap_err()
        .contains("FENCED"));
    assert!(cmd(
        &mut c,
        &["INCRBY", "{job}count", "5", "FENCE", "{job}lock", &t]
    )
    .unwrap_err()
    .contains("FENCED"));
    assert_eq!(
        int(cmd(
            &mut c,
            &["INCRBY", "{job}count", "5", "FENCE", "{job}lock", &t2]
        )),
        6
    );
    assert!(cmd(&mut c, &["DEL", "{job}data", "FENCE", "{job}lock", &t])
        .unwrap_err()
        .contains("FENCED"));
    assert_eq!(
        int(cmd(
            &mut c,
            &["DEL", "{job}data", "{job}count", "FENCE", "{job}lock", &t2]
        )),
        2
    );
    // A fence on a lock of another slot is refused outright.
    assert!(cmd(&mut c, &["DEL", "data", "FENCE", "{job}lock", &t2])
        .unwrap_err()
        .to_ascii_uppercase()
        .contains("CROSSSLOT"));
}

#[test]
fn commands_a_transaction_cannot_hold_abort_it() {
    let s = Server::start();
    let mut c = connect(&s.url());
    for refused in [
        &["LOCK.ACQUIRE", "l", "me", "1000", "WAIT", "10"][..],
        &["KEYS", "*"],
        &["FLUSHALL"],
        &["CAIRN.EXEC", "k", "0"],
    ] {
        cmd(&mut c, &["MULTI"]).unwrap();
        cmd(&mut c, &["SET", "k", "1"]).unwrap();
        let e = cmd(&mut c, refused).unwrap_err();
        assert!(
            e.contains("not allowed") || e.contains("cannot WAIT"),
            "{refused:?}: {e}"
        );
        let e = cmd(&mut c, &["EXEC"]).unwrap_err();
        assert!(e.contains("discarded because of previous errors"), "{e}");
        assert_eq!(cmd(&mut c, &["EXISTS", "k"]), Ok(Value::Int(0)));
    }
    // RESET ends a transaction and forgets watches.
    cmd(&mut c, &["MULTI"]).unwrap();
    cmd(&mut c, &["RESET"]).unwrap();
    assert!(cmd(&mut c, &["EXEC"])
        .unwrap_err()
        .contains("without MULTI"));
}

/// Keys of different shards change together or not at all, and WATCH
/// retry loops from several clients lose no increment.
#[test]
fn watch_retry_loops_lose_no_update_across_shards() {
    let s = Server::start();
    let url = s.url();
    const CLIENTS: usize = 4;
    const EACH: i64 = 150;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect(&url);
                let mut aborted = 0u64;
                for _ in 0..EACH {
                    loop {
                        cmd(&mut c, &["WATCH", "left", "right"]).unwrap();
                        let num = |v: &Value| match v {
                            Value::BulkString(b) => {
                                String::from_utf8_lossy(b).parse::<i64>().unwrap()
                            }
                            Value::Nil => 0,
                            other => panic!("{other:?}"),
                        };
                        let (l, r) = match cmd(&mut c, &["MGET", "left", "right"]) {
                            Ok(Value::Array(v)) => (num(&v[0]), num(&v[1])),
                            other => panic!("{other:?}"),
                        };
                        assert_eq!(l, -r, "a transaction was seen half applied");
                        cmd(&mut c, &["MULTI"]).unwrap();
                        cmd(&mut c, &["SET", "left", &(l + 1).to_string()]).unwrap();
                        cmd(&mut c, &["SET", "right", &(r - 1).to_string()]).unwrap();
                        match cmd(&mut c, &["EXEC"]) {
                            Ok(Value::Nil) => aborted += 1,
                            Ok(Value::Array(_)) => break,
                            other => panic!("{other:?}"),
                        }
                    }
                }
                aborted
            })
        })
        .collect();
    let aborted: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let mut c = connect(&url);
    let total = CLIENTS as i64 * EACH;
    assert_eq!(
        cmd(&mut c, &["MGET", "left", "right"]),
        Ok(Value::Array(vec![
            Value::BulkString(total.to_string().into_bytes()),
            Value::BulkString((-total).to_string().into_bytes()),
        ]))
    );
    // The keys live in different shards, and contention made WATCH abort
    // (printed, not asserted: scheduling decides how often).
    println!("{aborted} aborted transactions retried");
}
