//! Shared by the side-by-side tests: a cairn server and a redis-server
//! on free ports, both stopped on drop, and the pieces that send a
//! script's commands and compare the two servers' replies.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server(Option<cairn_server::ServerHandle>);

impl Server {
    pub fn start() -> Server {
        Server::with(cairn_server::Config {
            port: 0,
            ..Default::default()
        })
    }

    pub fn with(config: cairn_server::Config) -> Server {
        Server(Some(cairn_server::start(config).expect("server starts")))
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.0.as_ref().map(|h| h.local_addr()).expect("running")
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr())
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

/// A redis-server on a free port, stopped on drop.
pub struct Reference(Child, u16);

impl Reference {
    pub fn start() -> Reference {
        Self::start_with(&[])
    }

    /// With extra `--name value` settings.
    pub fn start_with(settings: &[&str]) -> Reference {
        let port = cairn_check::ports::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Reference(child, port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.1)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection to `url`.
pub fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("valid url")
        .get_connection()
        .expect("connect")
}

/// Sends one command (space-split arguments already split).
pub fn send(c: &mut redis::Connection, args: &[String]) -> Result<redis::Value, String> {
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a.as_str());
    }
    cmd.query(c).map_err(|e| e.to_string())
}

/// Replies of one script played on both servers.
pub type Played = Vec<(String, Result<redis::Value, String>)>;

/// Plays `script` with `play` against a fresh redis-server and a fresh
/// cairn (in RESP3 when `resp3`), asserts the replies are the same, and
/// returns the reference's (for checks that it spoke the protocol asked).
#[allow(dead_code)]
pub fn same_replies_as_redis(
    script: &[String],
    play: fn(&str, &[String]) -> Played,
    resp3: bool,
) -> Played {
    let reference = Reference::start();
    let cairn = Server::start();
    let url = |u: String| {
        if resp3 {
            format!("{u}?protocol=resp3")
        } else {
            u
        }
    };
    let want = play(&url(reference.url()), script);
    let got = play(&url(cairn.url()), script);
    assert_same_replies(&want, &got);
    want
}

/// Panics listing every line whose replies differ (the lists tests' name).
pub fn assert_same(want: &Played, got: &Played) {
    assert_same_replies(want, got);
}

/// Fails with every line whose replies differ (redis-server's first).
pub fn assert_same_replies(
    want: &[(String, Result<redis::Value, String>)],
    got: &[(String, Result<redis::Value, String>)],
) {
    assert_eq!(want.len(), got.len());
    let mut diffs = Vec::new();
    for ((line, w), (_, g)) in want.iter().zip(got) {
        if w != g {
            let shown: String = line.chars().take(80).collect();
            diffs.push(format!("{shown}\n  redis: {w:?}\n  cairn: {g:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences in {} commands:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// Scans `key` to the end with `scan` (HSCAN, SSCAN ...) and `COUNT
/// count` plus `extra` options: every item seen, and how many calls it
/// took.
pub fn scan_all(
    c: &mut redis::Connection,
    scan: &str,
    key: &str,
    count: usize,
    extra: &[&str],
) -> (std::collections::HashSet<String>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut cursor: u64 = 0;
    let mut calls = 0;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd(scan)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .arg(extra)
            .query(c)
            .expect("scan");
        seen.extend(items);
        calls += 1;
        cursor = next;
        if cursor == 0 {
            return (seen, calls);
        }
    }
}

/// MEMORY USAGE of `key`.
pub fn memory_usage(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .query(c)
        .expect("memory usage")
}

/// One command; an error reply as its text.
pub fn cmd(c: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).map_err(|e| e.to_string())
}
