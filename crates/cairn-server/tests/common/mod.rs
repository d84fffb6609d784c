//! Shared by the side-by-side tests: a cairn server and a redis-server
//! on free ports, both stopped on drop.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server(Option<cairn_server::ServerHandle>);

impl Server {
    pub fn start() -> Server {
        let config = cairn_server::Config {
            port: 0,
            ..Default::default()
        };
        Server(Some(cairn_server::start(config).expect("server starts")))
    }

    pub fn url(&self) -> String {
        let addr = self.0.as_ref().map(|h| h.local_addr()).expect("running");
        format!("redis://{addr}/")
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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
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

/// Sends one command given as words; an error reply is `Err(text)`.
pub fn cmd(c: &mut redis::Connection, args: &[String]) -> Result<redis::Value, String> {
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a.as_str());
    }
    cmd.query(c).map_err(|e| e.to_string())
}

/// Replies of one script played on both servers.
pub type Played = Vec<(String, Result<redis::Value, String>)>;

/// Panics listing every line whose replies differ.
pub fn assert_same(want: &Played, got: &Played) {
    let mut diffs = Vec::new();
    for ((line, w), (_, g)) in want.iter().zip(got) {
        if w != g {
            let shown: String = line.chars().take(80).collect();
            diffs.push(format!("{shown}\n  redis: {w:?}\n  cairn: {g:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
