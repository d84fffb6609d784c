//! The retry rules against scripted fake servers: what is resent, what
//! ends in `OutcomeUnknown`, how `-MOVED` is followed. A fake server
//! counts each command it receives, so a test sees exactly how often a
//! write reached the "server".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::{Client, ClientConfig, Cmd, Error, Frame, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the fake does with one command.
enum Act {
    Reply(&'static str),
    Owned(String),
    /// Close the connection without answering (after reading the request).
    Close,
}

/// Decides the answer from the command's name, its arguments and how
/// many times this name was seen before (0 for the first).
type Script = Arc<dyn Fn(&str, &[Vec<u8>], usize) -> Act + Send + Sync>;

struct Fake {
    addr: String,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fake {
    async fn start(script: Script) -> Fake {
        Fake::on(cairn_check::ports::free_port(), script).await
    }

    /// A fake on a given port (so a `CLUSTER SLOTS` reply can name it).
    async fn on(port: u16, script: Script) -> Fake {
        let l = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s, script.clone(), counts.clone()));
            }
        });
        Fake {
            addr: format!("127.0.0.1:{port}"),
            seen,
        }
    }

    fn seen(&self, name: &str) -> usize {
        *self.seen.lock().expect("lock").get(name).unwrap_or(&0)
    }
}

async fn serve(
    mut s: tokio::net::TcpStream,
    script: Script,
    seen: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((Frame::Array(parts), used))) = Frame::decode(&buf, 1 << 20) {
            buf.drain(..used);
            let args: Vec<Vec<u8>> = parts
                .into_iter()
                .filter_map(|p| match p {
                    Frame::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect();
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            let nth = {
                let mut m = seen.lock().expect("lock");
                let n = m.entry(name.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let reply = match script(&name, &args[1..], nth) {
                Act::Close => return,
                Act::Reply(r) => r.to_string(),
                Act::Owned(r) => r,
            };
            if s.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A standalone server (no cluster): the client routes everything to it.
fn standalone(then: impl Fn(&str, usize) -> Act + Send + Sync + 'static) -> Script {
    Arc::new(move |name, _args, nth| match name {
        "CLUSTER" => Act::Reply("-ERR This instance has cluster support disabled\r\n"),
        "READONLY" => Act::Reply("-ERR This instance has cluster support disabled\r\n"),
        _ => then(name, nth),
    })
}

fn config(addr: &str) -> ClientConfig {
    ClientConfig::new([addr])
        .retry(RetryPolicy::default().backoff(Duration::from_millis(1), Duration::from_millis(5)))
        .request_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn a_write_whose_connection_drops_is_not_resent() {
    let fake = Fake::start(standalone(|_, _| Act::Close)).await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    let r = c.set("k", "v", None).await;
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    assert_eq!(fake.seen("SET"), 1, "sent once, never again");
    assert_eq!(c.stats().outcome_unknown, 1);
}

#[tokio::test]
async fn an_unknown_reply_ends_a_non_idempotent_write() {
    let fake = Fake::start(standalone(|_, _| {
        Act::Reply("-UNKNOWN outcome unknown (x)\r\n")
    }))
    .await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    let r = c.incr_by("n", 1).await;
    assert!(r.as_ref().is_err_and(|e| e.is_outcome_unknown()), "{r:?}");
    assert_eq!(fake.seen("INCRBY"), 1);
}

#[tokio::test]
async fn a_write_that_opted_in_is_resent_after_an_unknown_outcome() {
    let fake = Fake::start(standalone(|_, nth| match nth {
        0 => Act::Close,
        _ => Act::Reply("+OK\r\n"),
    }))
    .await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    let cmd = Cmd::new("SET").arg("k").arg("v").retry_if_unknown();
    assert_eq!(
        c.execute(&cmd).await.expect("retried"),
        Frame::Simple(b"OK".to_vec())
    );
    assert_eq!(fake.seen("SET"), 2);
}

#[tokio::test]
async fn reads_are_resent_after_a_dropped_connection() {
    let fake = Fake::start(standalone(|_, nth| match nth {
        0 | 1 => Act::Close,
        _ => Act::Reply("$1\r\nv\r\n"),
    }))
    .await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    let v: Option<String> = c.get("k").await.expect("recovered");
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!(fake.seen("GET"), 3);
}

#[tokio::test]
async fn tryagain_proves_nothing_was_applied_so_writes_are_resent() {
    let fake = Fake::start(standalone(|_, nth| match nth {
        0 => Act::Reply("-TRYAGAIN no leader (nothing was applied); retry\r\n"),
        _ => Act::Reply(":7\r\n"),
    }))
    .await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    assert_eq!(c.incr_by("n", 1).await.expect("retried"), 7);
    assert_eq!(fake.seen("INCRBY"), 2);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit() {
    let fake = Fake::start(standalone(|_, _| Act::Reply("-TRYAGAIN never\r\n"))).await;
    let cfg = config(&fake.addr).retry(
        RetryPolicy::default()
            .attempts_max(4)
            .backoff(Duration::from_millis(1), Duration::from_millis(2)),
    );
    let c = Client::connect(cfg).await.expect("connect");
    let r = c.incr_by("n", 1).await;
    assert!(
        matches!(r, Err(Error::Unavailable { attempts: 4, .. })),
        "{r:?}"
    );
    assert_eq!(fake.seen("INCRBY"), 4);
}

#[tokio::test]
async fn server_errors_are_returned_not_retried() {
    let fake = Fake::start(standalone(|_, _| {
        Act::Reply("-WRONGTYPE Operation against a key\r\n")
    }))
    .await;
    let c = Client::connect(config(&fake.addr)).await.expect("connect");
    let r = c.incr_by("n", 1).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.server()).map(|e| e.code()),
        Some("WRONGTYPE")
    );
    assert_eq!(fake.seen("INCRBY"), 1);
}

/// A `CLUSTER SLOTS` reply giving every slot to `port`.
fn all_slots_to(port: u16) -> String {
    format!("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n")
}

#[tokio::test]
async fn moved_is_followed_and_remembered() {
    let (pa, pb) = (
        cairn_check::ports::free_port(),
        cairn_check::ports::free_port(),
    );
    // B leads every slot and knows it.
    let b = Fake::on(
        pb,
        Arc::new(move |name, _, _| match name {
            "CLUSTER" => Act::Owned(all_slots_to(pb)),
            _ => Act::Reply("$2\r\nhi\r\n"),
        }),
    )
    .await;
    // A led them: its first two answers (a connection's handshake, the
    // bootstrap refresh) still name itself, later ones name B.
    let b_addr = b.addr.clone();
    let a = Fake::on(
        pa,
        Arc::new(move |name, args, nth| match name {
            "CLUSTER" if nth < 2 => Act::Owned(all_slots_to(pa)),
            "CLUSTER" => Act::Owned(all_slots_to(pb)),
            _ => {
                let slot = cairn_client::slot::slot(&args[0]);
                Act::Owned(format!("-MOVED {slot} {b_addr}\r\n"))
            }
        }),
    )
    .await;
    let c = Client::connect(ClientConfig::new([a.addr.clone()]))
        .await
        .expect("connect");
    assert_eq!(c.leader_of(b"k").as_deref(), Some(a.addr.as_str()));
    let v: Option<String> = c.get("k").await.expect("GET via MOVED");
    assert_eq!(v.as_deref(), Some("hi"));
    assert_eq!(c.stats().redirects, 1);
    assert_eq!(
        c.leader_of(b"k").as_deref(),
        Some(b.addr.as_str()),
        "the route was patched"
    );
    // The next request goes straight to B.
    let _: Option<String> = c.get("k").await.expect("GET");
    assert_eq!((a.seen("GET"), b.seen("GET")), (1, 2));
}

#[test]
fn the_blocking_client_works_without_a_runtime() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fake = rt.block_on(Fake::start(standalone(|name, _| match name {
        "GET" => Act::Reply("$3\r\n42!\r\n"),
        "INCRBY" => Act::Reply(":3\r\n"),
        _ => Act::Reply("+OK\r\n"),
    })));
    let c = cairn_client::blocking::Client::connect(config(&fake.addr)).expect("connect");
    c.set("k", "v", Some(Duration::from_secs(5))).expect("SET");
    assert_eq!(c.get::<String>("k").expect("GET").as_deref(), Some("42!"));
    assert_eq!(c.incr_by("n", 3).expect("INCRBY"), 3);
    assert_eq!(fake.seen("SET"), 1);
}
