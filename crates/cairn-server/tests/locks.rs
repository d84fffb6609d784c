//! Locks on a standalone server through a real Redis client (`redis`
//! crate): grants, fencing tokens, owners and tokens checked, leases
//! ending on the server's clock, bad input refused with nothing changed.
//! docs/design/locks.md.

use std::time::Duration;

use redis::{Commands, Value};

struct Server(Option<cairn_server::ServerHandle>);

impl Server {
    fn start() -> Server {
        let config = cairn_server::Config {
            port: 0,
            ..Default::default()
        };
        Server(Some(cairn_server::start(config).expect("server starts")))
    }

    fn conn(&self) -> redis::Connection {
        let addr = self.0.as_ref().map(|h| h.local_addr()).expect("running");
        redis::Client::open(format!("redis://{addr}/"))
            .expect("valid url")
            .get_connection()
            .expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.shutdown();
            h.wait();
        }
    }
}

fn cmd(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn token(v: Value) -> i64 {
    match v {
        Value::Int(t) => t,
        other => panic!("not a token: {other:?}"),
    }
}

#[test]
fn a_lock_is_granted_to_one_owner_at_a_time_with_increasing_tokens() {
    let s = Server::start();
    let mut c = s.conn();
    let t1 = token(cmd(&mut c, &["LOCK.ACQUIRE", "jobs", "worker-a", "5000"]).unwrap());
    assert!(t1 > 0);
    // Held: another owner gets a null reply; the holder, its token again.
    assert_eq!(
        cmd(&mut c, &["LOCK.ACQUIRE", "jobs", "worker-b", "5000"]).unwrap(),
        Value::Nil
    );
    assert_eq!(
        token(cmd(&mut c, &["LOCK.ACQUIRE", "jobs", "worker-a", "5000"]).unwrap()),
        t1
    );
    let t = t1.to_string();
    // Wrong owner or token: nothing changes, and the reply says so.
    let e = cmd(&mut c, &["LOCK.RENEW", "jobs", "worker-b", &t, "5000"]).unwrap_err();
    assert!(e.to_string().contains("LOCKLOST"), "{e}");
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "jobs", "worker-a", "1"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut c, &["LOCK.RENEW", "jobs", "worker-a", &t, "8000"]).unwrap(),
        Value::Int(1)
    );
    let info = cmd(&mut c, &["LOCK.INFO", "jobs"]).unwrap();
    let text = format!("{info:?}");
    assert!(text.contains("worker-a") && text.contains(&t), "{text}");
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "jobs", "worker-a", &t]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut c, &["LOCK.INFO", "jobs"]).unwrap(), Value::Nil);
    let t2 = token(cmd(&mut c, &["LOCK.ACQUIRE", "jobs", "worker-b", "5000"]).unwrap());
    assert!(t2 > t1, "token {t2} after {t1}");
    assert_eq!(
        cmd(&mut c, &["LOCK.FORCERELEASE", "jobs"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        cmd(&mut c, &["LOCK.FORCERELEASE", "jobs"]).unwrap(),
        Value::Int(0)
    );
    // A lock is not a key.
    let keys: Vec<String> = c.keys("*").unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn a_lease_ends_on_the_servers_clock_and_the_old_token_is_dead() {
    let s = Server::start();
    let mut c = s.conn();
    let t1 = token(cmd(&mut c, &["LOCK.ACQUIRE", "l", "a", "100"]).unwrap());
    assert_eq!(
        cmd(&mut c, &["LOCK.ACQUIRE", "l", "b", "100"]).unwrap(),
        Value::Nil
    );
    std::thread::sleep(Duration::from_millis(150));
    let t2 = token(cmd(&mut c, &["LOCK.ACQUIRE", "l", "b", "100"]).unwrap());
    assert!(t2 > t1);
    let old = t1.to_string();
    assert!(cmd(&mut c, &["LOCK.RENEW", "l", "a", &old, "100"]).is_err());
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "l", "a", &old]).unwrap(),
        Value::Int(0)
    );
}

#[test]
fn bad_lock_arguments_are_refused_and_change_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    let t = token(cmd(&mut c, &["LOCK.ACQUIRE", "l", "a", "5000"]).unwrap()).to_string();
    let long_owner = "o".repeat(257);
    for (args, want) in [
        (vec!["LOCK.ACQUIRE", "l", "a"], "wrong number of arguments"),
        (vec!["LOCK.ACQUIRE", "l", "a", "0"], "lease"),
        (vec!["LOCK.ACQUIRE", "l", "a", "-1"], "lease"),
        (vec!["LOCK.ACQUIRE", "l", "a", "x"], "lease"),
        (vec!["LOCK.ACQUIRE", "l", "a", "86400001"], "lease"),
        (vec!["LOCK.ACQUIRE", "l", "", "10"], "owner"),
        (
            vec!["LOCK.ACQUIRE", "l", long_owner.as_str(), "10"],
            "owner",
        ),
        (vec!["LOCK.RENEW", "l", "a", "-3", "10"], "token"),
        (vec!["LOCK.RENEW", "l", "a", "nan", "10"], "token"),
        (vec!["LOCK.RELEASE", "l", "a"], "wrong number of arguments"),
        (vec!["LOCK.INFO"], "wrong number of arguments"),
        (vec!["LOCK.EXPIRE", "l", t.as_str()], "unknown command"),
    ] {
        let e = cmd(&mut c, &args).unwrap_err().to_string();
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // The grant is untouched.
    let info = format!("{:?}", cmd(&mut c, &["LOCK.INFO", "l"]).unwrap());
    assert!(info.contains(&t), "{info}");
}

/// Fencing: a holder paused past its lease cannot overwrite what the
/// next holder wrote; the lock and the key share a slot (hash tag).
#[test]
fn a_former_holders_fenced_write_is_refused() {
    let s = Server::start();
    let mut c = s.conn();
    let ta = token(cmd(&mut c, &["LOCK.ACQUIRE", "{job}:lock", "a", "100"]).unwrap()).to_string();
    let ok = cmd(
        &mut c,
        &["SET", "{job}:data", "from-a", "FENCE", "{job}:lock", &ta],
    )
    .unwrap();
    assert_eq!(ok, Value::Okay);
    // a stalls past its lease; b takes over and writes.
    std::thread::sleep(Duration::from_millis(150));
    let tb = token(cmd(&mut c, &["LOCK.ACQUIRE", "{job}:lock", "b", "5000"]).unwrap()).to_string();
    cmd(
        &mut c,
        &["SET", "{job}:data", "from-b", "FENCE", "{job}:lock", &tb],
    )
    .unwrap();
    // a wakes up and writes with its old token: refused.
    let e = cmd(
        &mut c,
        &["SET", "{job}:data", "late-a", "FENCE", "{job}:lock", &ta],
    )
    .unwrap_err();
    assert!(e.to_string().contains("FENCED"), "{e}");
    let v: String = c.get("{job}:data").unwrap();
    assert_eq!(v, "from-b");
    let e = cmd(&mut c, &["SET", "data", "x", "FENCE", "{job}:lock", &tb]).unwrap_err();
    assert!(e.to_string().contains("same slot"), "{e}");
}

fn info_field(c: &mut redis::Connection, section: &str, field: &str) -> String {
    let text: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn waiters(c: &mut redis::Connection, name: &str) -> i64 {
    match cmd(c, &["LOCK.INFO", name]).unwrap() {
        Value::Array(f) => match f.get(9) {
            Some(Value::Int(n)) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// WAIT: waiters queue in arrival order and each release hands the lock
/// to the next at once (no polling); a wait that runs out leaves the
/// queue; an expired lease passes the lock to the first waiter.
#[test]
fn waiters_are_served_in_order_at_once_and_leave_when_their_wait_ends() {
    let s = Server::start();
    let mut c = s.conn();
    let ta = token(cmd(&mut c, &["LOCK.ACQUIRE", "q", "a", "60000"]).unwrap());
    let spawn_wait = |owner: &'static str, wait: &'static str| {
        let mut w = s.conn();
        std::thread::spawn(move || {
            let r = cmd(&mut w, &["LOCK.ACQUIRE", "q", owner, "60000", "WAIT", wait]);
            (r, std::time::Instant::now())
        })
    };
    let b = spawn_wait("b", "10000");
    while waiters(&mut c, "q") < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cw = spawn_wait("c", "10000");
    while waiters(&mut c, "q") < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(info_field(&mut c, "clients", "blocked_clients"), "2");
    let released = std::time::Instant::now();
    let t = ta.to_string();
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "q", "a", &t]).unwrap(),
        Value::Int(1)
    );
    let (rb, at_b) = b.join().unwrap();
    let tb = token(rb.unwrap());
    assert!(tb > ta);
    let hand_off = at_b.duration_since(released);
    assert!(
        hand_off < Duration::from_secs(2),
        "hand-off took {hand_off:?}"
    );
    eprintln!("hand-off {hand_off:?}");
    // c is still waiting: b holds it now.
    assert_eq!(waiters(&mut c, "q"), 1);
    let t = tb.to_string();
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "q", "b", &t]).unwrap(),
        Value::Int(1)
    );
    let tc = token(cw.join().unwrap().0.unwrap());
    assert!(tc > tb);
    // A wait that runs out: null, and out of the queue.
    let d = spawn_wait("d", "200");
    let (rd, _) = d.join().unwrap();
    assert_eq!(rd.unwrap(), Value::Nil);
    assert_eq!(waiters(&mut c, "q"), 0);
    assert_eq!(info_field(&mut c, "clients", "blocked_clients"), "0");
    // A lease that runs out hands the lock to the first waiter.
    let t = tc.to_string();
    assert_eq!(
        cmd(&mut c, &["LOCK.RENEW", "q", "c", &t, "200"]).unwrap(),
        Value::Int(1)
    );
    let e = spawn_wait("e", "10000");
    let te = token(e.join().unwrap().0.unwrap());
    assert!(te > tc);
    // Bad WAIT values change nothing.
    for args in [
        vec!["LOCK.ACQUIRE", "q", "f", "100", "WAIT", "-1"],
        vec!["LOCK.ACQUIRE", "q", "f", "100", "WAIT", "3600001"],
        vec!["LOCK.ACQUIRE", "q", "f", "100", "WAIT"],
        vec!["LOCK.ACQUIRE", "q", "f", "100", "LATER", "5"],
    ] {
        assert!(cmd(&mut c, &args).is_err(), "{args:?}");
    }
    assert_eq!(waiters(&mut c, "q"), 0);
}

fn sem_field(c: &mut redis::Connection, name: &str, field: &str) -> i64 {
    match cmd(c, &["SEM.INFO", name]).unwrap() {
        Value::Array(f) => {
            let i = f
                .iter()
                .position(|v| *v == Value::BulkString(field.as_bytes().to_vec()))
                .expect("field");
            match &f[i + 1] {
                Value::Int(n) => *n,
                other => panic!("{other:?}"),
            }
        }
        Value::Nil => 0,
        other => panic!("{other:?}"),
    }
}

/// Semaphores: permits shared up to the limit, FIFO waiters woken by a
/// release (a waiter asking for more blocks those behind it), every
/// holder fenced by its own token, and the read-write lock built from
/// one (readers take 1 permit, the writer all of them).
#[test]
fn a_semaphore_shares_permits_and_serves_waiters_in_order() {
    let s = Server::start();
    let mut c = s.conn();
    let ta = token(cmd(&mut c, &["SEM.ACQUIRE", "pool", "a", "2", "3", "60000"]).unwrap());
    let tb = token(cmd(&mut c, &["SEM.ACQUIRE", "pool", "b", "1", "3", "60000"]).unwrap());
    assert!(tb > ta);
    // Full: no permit for c; the same owner again gets its token back.
    assert_eq!(
        cmd(&mut c, &["SEM.ACQUIRE", "pool", "c", "1", "3", "60000"]).unwrap(),
        Value::Nil
    );
    assert_eq!(
        token(cmd(&mut c, &["SEM.ACQUIRE", "pool", "a", "2", "3", "60000"]).unwrap()),
        ta
    );
    assert_eq!(sem_field(&mut c, "pool", "used"), 3);
    // Wrong shape: a lock call on a semaphore, another limit, bad numbers.
    for args in [
        vec!["LOCK.ACQUIRE", "pool", "z", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "1", "4", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "4", "3", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "0", "3", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "1", "1000001", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "x", "3", "1000"],
        vec!["SEM.ACQUIRE", "pool", "z", "1", "3"],
    ] {
        assert!(cmd(&mut c, &args).is_err(), "{args:?}");
    }
    assert_eq!(sem_field(&mut c, "pool", "used"), 3);
    // Fencing: each holder's own token works.
    let (sa, sb) = (ta.to_string(), tb.to_string());
    assert_eq!(
        cmd(&mut c, &["LOCK.FENCE", "pool", &sa]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        cmd(&mut c, &["LOCK.FENCE", "pool", &sb]).unwrap(),
        Value::Okay
    );
    // Waiters: d wants 2, e wants 1; FIFO means e waits behind d.
    let spawn_wait = |owner: &'static str, permits: &'static str| {
        let mut w = s.conn();
        std::thread::spawn(move || {
            cmd(
                &mut w,
                &[
                    "SEM.ACQUIRE",
                    "pool",
                    owner,
                    permits,
                    "3",
                    "60000",
                    "WAIT",
                    "10000",
                ],
            )
        })
    };
    let d = spawn_wait("d", "2");
    while sem_field(&mut c, "pool", "waiters") < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = spawn_wait("e", "1");
    while sem_field(&mut c, "pool", "waiters") < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // b leaves: 1 free, d (2) does not fit, so e waits too.
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "pool", "b", &sb]).unwrap(),
        Value::Int(1)
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sem_field(&mut c, "pool", "waiters"), 2);
    // a leaves: d and then e both get in, at once.
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "pool", "a", &sa]).unwrap(),
        Value::Int(1)
    );
    let td = token(d.join().unwrap().unwrap());
    let te = token(e.join().unwrap().unwrap());
    assert!(td > ta && te >= td, "{ta} {td} {te}");
    assert_eq!(sem_field(&mut c, "pool", "used"), 3);
    assert_eq!(sem_field(&mut c, "pool", "limit"), 3);
    assert_eq!(
        cmd(&mut c, &["LOCK.FORCERELEASE", "pool"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(cmd(&mut c, &["SEM.INFO", "pool"]).unwrap(), Value::Nil);

    // A read-write lock: readers take 1 of 100 permits, the writer 100.
    let r1 = token(cmd(&mut c, &["SEM.ACQUIRE", "rw", "r1", "1", "100", "60000"]).unwrap());
    token(cmd(&mut c, &["SEM.ACQUIRE", "rw", "r2", "1", "100", "60000"]).unwrap());
    let mut w = s.conn();
    let writer = std::thread::spawn(move || {
        cmd(
            &mut w,
            &[
                "SEM.ACQUIRE",
                "rw",
                "w",
                "100",
                "100",
                "60000",
                "WAIT",
                "10000",
            ],
        )
    });
    while sem_field(&mut c, "rw", "waiters") < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A reader arriving after the writer waits behind it (no starvation).
    assert_eq!(
        cmd(&mut c, &["SEM.ACQUIRE", "rw", "r3", "1", "100", "60000"]).unwrap(),
        Value::Nil
    );
    let r1s = r1.to_string();
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "rw", "r1", &r1s]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(sem_field(&mut c, "rw", "waiters"), 1);
    // LOCK.DEQUEUE by a holder answers its token, as for a lock.
    let r2 = sem_token(&mut c, "rw", "r2");
    assert_eq!(
        cmd(&mut c, &["LOCK.DEQUEUE", "rw", "r2"]).unwrap(),
        Value::Int(r2)
    );
    let r2s = r2.to_string();
    assert_eq!(
        cmd(&mut c, &["LOCK.RELEASE", "rw", "r2", &r2s]).unwrap(),
        Value::Int(1)
    );
    let tw = token(writer.join().unwrap().unwrap());
    assert!(tw > r1);
    assert_eq!(sem_field(&mut c, "rw", "used"), 100);
}

/// The token `owner` holds `name` with, from SEM.INFO.
fn sem_token(c: &mut redis::Connection, name: &str, owner: &str) -> i64 {
    let Value::Array(f) = cmd(c, &["SEM.INFO", name]).unwrap() else {
        panic!("no semaphore {name}")
    };
    let i = f
        .iter()
        .position(|v| *v == Value::BulkString(b"holders".to_vec()))
        .expect("holders");
    let Value::Array(holders) = &f[i + 1] else {
        panic!("holders")
    };
    for h in holders {
        let Value::Array(h) = h else { continue };
        if h.get(1) == Some(&Value::BulkString(owner.as_bytes().to_vec())) {
            if let Some(Value::Int(t)) = h.get(3) {
                return *t;
            }
        }
    }
    panic!("{owner} does not hold {name}")
}
