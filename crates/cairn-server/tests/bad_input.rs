//! Bad input never hurts.
//!
//! Every class of malformed, hostile or merely wrong input gets Redis 7's
//! exact reply; a protocol error closes only the offending connection
//! (after its error reply); and a second, separate client still reads
//! everything written before the bad input while the server keeps
//! serving. The expected texts were checked against redis-server 7.0.
//!
//! Protocol abuse goes over raw `std::net::TcpStream`s with short
//! timeouts: the point is to send bytes no client library would.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use cairn_server::{Config, ServerHandle};

/// How long any single read or write may block before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const MB: u64 = 1024 * 1024;

// ---------------------------------------------------------------- harness

/// Tests that measure this process' RSS (the server runs in-process) or
/// move megabytes take this lock so they do not disturb one another.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Caps this test process' address space, so that a runaway allocation
/// in the server under test (say, a parser loop that never advances)
/// aborts this process instead of taking the whole machine down.
fn cap_address_space() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let cap: libc::rlim_t = 6 << 30;
        // SAFETY: plain syscalls on a local, fully initialised struct.
        unsafe {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_AS, &mut lim) == 0 && lim.rlim_cur > cap {
                lim.rlim_cur = cap.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_AS, &lim);
            }
        }
    });
}

struct Server {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
}

impl Server {
    fn start(config: Config) -> Server {
        cap_address_space();
        let handle = cairn_server::start(config).expect("server starts");
        let addr = handle.local_addr();
        Server {
            handle: Some(handle),
            addr,
        }
    }

    fn with_defaults() -> Server {
        Server::start(config())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            // A failing test may leave a connection the server cannot
            // finish; do not hang the run on it.
            if !std::thread::panicking() {
                h.wait();
            }
        }
    }
}

fn config() -> Config {
    Config {
        port: 0,
        threads: 2,
        shutdown_timeout: 1,
        ..Default::default()
    }
}

/// A raw connection that reads whole RESP2 replies.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to server");
    }

    /// Sends bytes, tolerating the server having closed already.
    fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes);
    }

    /// The raw bytes of the next complete reply.
    fn reply(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match reply_len(&self.buf) {
                Ok(Some(n)) => return self.buf.drain(..n).collect(),
                Ok(None) => {}
                Err(e) => panic!("malformed reply ({e}): {}", show(&self.buf)),
            }
            assert!(
                Instant::now() < deadline,
                "no complete reply in time; have {}",
                show(&self.buf)
            );
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("connection closed; partial reply {}", show(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {
                    panic!("no reply within {IO_TIMEOUT:?}; have {}", show(&self.buf))
                }
                Err(e) => panic!("read failed: {e}; have {}", show(&self.buf)),
            }
        }
    }

    /// Reads one reply and checks it byte for byte.
    fn expect(&mut self, want: &str) {
        let got = self.reply();
        assert_eq!(show(&got), show(want.as_bytes()));
    }

    /// Sends a command as a multibulk request and returns its reply.
    fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&multibulk(args));
        self.reply()
    }

    /// Sends an inline command line (a `\r\n` is added) and checks the
    /// reply.
    fn inline(&mut self, line: &str, want: &str) {
        self.send(format!("{line}\r\n").as_bytes());
        self.expect(want);
    }

    /// The connection is still served.
    fn assert_open(&mut self) {
        assert_eq!(show(&self.cmd(&[b"PING"])), show(PONG.as_bytes()));
    }

    /// The server closes the connection without sending anything more.
    fn expect_closed(&mut self) {
        let (extra, _) = self.read_to_close("after the error reply");
        assert!(
            extra.is_empty(),
            "unexpected bytes before close: {}",
            show(&extra)
        );
    }

    /// Reads until the server closes the connection (EOF or reset);
    /// returns what arrived (after anything already buffered) and whether
    /// it ended in a reset. Fails if the connection stays open past the
    /// timeout.
    fn read_to_close(&mut self, context: &str) -> (Vec<u8>, bool) {
        let mut got = std::mem::take(&mut self.buf);
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return (got, false),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if is_reset(&e) => return (got, true),
                Err(e) if is_timeout(&e) => {
                    panic!("connection still open {context}; got {}", show(&got))
                }
                Err(e) => panic!("read failed {context}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "connection still open {context}; got {}",
                show(&got)
            );
        }
    }

    /// Nothing arrives for `wait` (the server is waiting for more input).
    fn expect_silence(&mut self, wait: Duration) {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 1024];
        match self.s.read(&mut chunk) {
            Err(e) if is_timeout(&e) => {}
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => panic!("unexpected reply {}", show(&chunk[..n])),
            Err(e) => panic!("read failed: {e}"),
        }
        self.s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn show(b: &[u8]) -> String {
    const MAX: usize = 400;
    let s = String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned();
    if b.len() > MAX {
        format!("{s:?}... ({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// Length of the first complete RESP2 reply in `b`; `Ok(None)` while
/// incomplete, `Err` when the bytes are not RESP2.
fn reply_len(b: &[u8]) -> Result<Option<usize>, String> {
    let Some(&kind) = b.first() else {
        return Ok(None);
    };
    let Some(cr) = b.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &b[1..cr];
    let after = cr + 2;
    let int = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad integer line {}", show(line)))
    };
    match kind {
        b'+' | b'-' => Ok(Some(after)),
        b':' => int().map(|_| Some(after)),
        b'$' => match int()? {
            -1 => Ok(Some(after)),
            n if n < 0 => Err(format!("bad bulk length {n}")),
            n => {
                let end = after + n as usize;
                if b.len() < end + 2 {
                    return Ok(None);
                }
                if &b[end..end + 2] != b"\r\n" {
                    return Err("bulk not terminated by CRLF".into());
                }
                Ok(Some(end + 2))
            }
        },
        b'*' => match int()? {
            -1 => Ok(Some(after)),
            n if n < 0 => Err(format!("bad array length {n}")),
            n => {
                let mut pos = after;
                for _ in 0..n {
                    match reply_len(&b[pos..])? {
                        Some(len) => pos += len,
                        None => return Ok(None),
                    }
                }
                Ok(Some(pos))
            }
        },
        other => Err(format!("unexpected reply type byte {other:#04x}")),
    }
}

/// Writes data that later checks read back: small values, an empty one,
/// binary ones and a 64 KB one.
fn seed(addr: SocketAddr, tag: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut data: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("{tag}:key:{i}").into_bytes(),
                format!("value-{i}").into_bytes(),
            )
        })
        .collect();
    data.push((format!("{tag}:empty").into_bytes(), Vec::new()));
    data.push((
        format!("{tag}:binary").into_bytes(),
        b"\x00\r\n*1\r\n$-1\r\n\xff\xfe".to_vec(),
    ));
    data.push((
        format!("{tag}:big").into_bytes(),
        (0..64 * 1024).map(|i| (i % 251) as u8).collect(),
    ));
    let mut c = Client::connect(addr);
    for (k, v) in &data {
        assert_eq!(show(&c.cmd(&[b"SET", k, v])), show(OK.as_bytes()));
    }
    data
}

/// A fresh client reads back everything [`seed`] wrote, and the server
/// still answers.
fn assert_intact(addr: SocketAddr, data: &[(Vec<u8>, Vec<u8>)]) {
    let mut c = Client::connect(addr);
    c.assert_open();
    for (k, v) in data {
        let got = c.cmd(&[b"GET", k]);
        assert!(
            got == bulk(v),
            "key {} lost or changed: {}",
            show(k),
            show(&got)
        );
    }
}

/// This process' resident set size, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// Waits until INFO reports `n` connected clients (the checking client
/// included): closed connections are cleaned up, not leaked.
fn wait_connected_clients(addr: SocketAddr, n: usize) {
    let mut c = Client::connect(addr);
    let want = format!("connected_clients:{n}\r\n");
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let info = c.cmd(&[b"INFO", b"clients"]);
        if String::from_utf8_lossy(&info).contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {want:?} in {}",
            show(&info)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `input` on a fresh connection and expects exactly `replies`
/// (in order), then the server to close that connection.
fn expect_protocol_error(addr: SocketAddr, input: &[u8], replies: &[&str]) {
    let mut c = Client::connect(addr);
    c.send_lenient(input);
    for r in replies {
        c.expect(r);
    }
    c.expect_closed();
}

const PONG: &str = "+PONG\r\n";
const OK: &str = "+OK\r\n";
const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
const OVERFLOW: &str = "-ERR increment or decrement would overflow\r\n";
const BAD_MBULK: &str = "-ERR Protocol error: invalid multibulk length\r\n";
const BAD_BULK: &str = "-ERR Protocol error: invalid bulk length\r\n";
const UNBALANCED: &str = "-ERR Protocol error: unbalanced quotes in request\r\n";

// ------------------------------------------------------------------ tests

#[test]
fn malformed_frames_get_protocol_errors_and_close_only_that_connection() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "malformed");
    let expected_dollar = |c: char| format!("-ERR Protocol error: expected '$', got '{c}'\r\n");
    let cases: Vec<(&[u8], String)> = vec![
        (b"*abc\r\n", BAD_MBULK.into()),
        (b"*01\r\n", BAD_MBULK.into()),
        (b"*+1\r\n", BAD_MBULK.into()),
        (b"*1\r\nx\r\n", expected_dollar('x')),
        (b"*2\r\n$3\r\nGET\r\n:5\r\n", expected_dollar(':')),
        (b"*1\r\n+PING\r\n", expected_dollar('+')),
        (b"*1\r\n$abc\r\n", BAD_BULK.into()),
        (b"*1\r\n$+4\r\nPING\r\n", BAD_BULK.into()),
        (b"*1\r\n$04\r\nPING\r\n", BAD_BULK.into()),
        (b"*1\r\n$ 4\r\nPING\r\n", BAD_BULK.into()),
    ];
    for (input, want) in &cases {
        expect_protocol_error(srv.addr, input, &[want]);
    }

    // Requests before the bad frame run and are answered first; what
    // follows it in the same packet is discarded, not executed.
    expect_protocol_error(
        srv.addr,
        b"SET before 1\r\nPING\r\n*1\r\nx\r\nSET after 1\r\n",
        &[OK, PONG, &expected_dollar('x')],
    );
    // The bad byte may arrive in a later packet than the frame's start.
    let mut c = Client::connect(srv.addr);
    c.send(b"*2\r\n$4\r\nECHO\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send_lenient(b"?oops\r\n");
    c.expect(&expected_dollar('?'));
    c.expect_closed();

    let mut other = Client::connect(srv.addr);
    assert_eq!(show(&other.cmd(&[b"GET", b"before"])), show(b"$1\r\n1\r\n"));
    assert_eq!(show(&other.cmd(&[b"EXISTS", b"after"])), show(b":0\r\n"));
    assert_intact(srv.addr, &data);
    wait_connected_clients(srv.addr, 2);
}

#[test]
fn huge_and_negative_lengths_are_refused_without_allocating_by_the_claim() {
    let _g = heavy();
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "lengths");

    // A negative or zero count is an empty request, silently skipped, as
    // in Redis (which treats `*-1` like a null array).
    let mut c = Client::connect(srv.addr);
    c.send(b"*-5\r\n*-1\r\n*0\r\nPING\r\n");
    c.expect(PONG);
    c.assert_open();
    drop(c);

    let too_big_count = [b"*".as_slice(), &[b'1'; 70_000]].concat();
    let too_big_bulk_count = [b"*1\r\n$".as_slice(), &[b'9'; 70_000]].concat();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"*99999999999\r\n", BAD_MBULK),
        // Counts above INT_MAX.
        (b"*2147483648\r\n", BAD_MBULK),
        (b"*3000000000\r\n", BAD_MBULK),
        (b"*1\r\n$-2\r\n", BAD_BULK),
        (b"*1\r\n$-1\r\n", BAD_BULK),
        (b"*1\r\n$99999999999\r\n", BAD_BULK),
        // Above proto-max-bulk-len (512 MB).
        (b"*1\r\n$600000000\r\n", BAD_BULK),
        (b"*1\r\n$536870913\r\n", BAD_BULK),
        (
            &too_big_count,
            "-ERR Protocol error: too big mbulk count string\r\n",
        ),
        (
            &too_big_bulk_count,
            "-ERR Protocol error: too big bulk count string\r\n",
        ),
    ];
    for (input, want) in &cases {
        expect_protocol_error(srv.addr, input, &[want]);
    }

    // Claims the server must accept and wait on, without allocating by
    // them: a count of 2 billion (then 1 argument) and INT_MAX, and one
    // bulk of just under 512 MB of which only a few bytes arrive.
    let before = rss();
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect(srv.addr);
        c.send(b"*2000000000\r\n$1\r\na\r\n");
        claimers.push(c);
    }
    for claim in [
        b"*2147483647\r\n$3\r\nGET\r\n$1\r\nk\r\n".as_slice(),
        b"*2\r\n$3\r\nGET\r\n$536870000\r\nabc",
    ] {
        let mut c = Client::connect(srv.addr);
        c.send(claim);
        claimers.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    Client::connect(srv.addr).assert_open();
    for c in &mut claimers {
        c.expect_silence(Duration::from_millis(100));
    }
    let grew = rss().saturating_sub(before);
    assert!(
        grew < 64 * MB,
        "RSS grew by {} MB while clients only claimed huge requests \
         (RSS is process-wide: a runaway server thread left by another failing test counts too)",
        grew / MB
    );
    drop(claimers);

    assert_intact(srv.addr, &data);
    wait_connected_clients(srv.addr, 1);
}

/// A tiny seeded PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random input shaped to reach every parser state: raw noise, noise
/// after a multibulk or bulk header, junk lines, mostly-NUL runs.
fn junk(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(2048);
    match rng.below(6) {
        0 => rng.bytes(n),
        1 => {
            let mut v = format!("*{}\r\n", rng.below(5)).into_bytes();
            v.extend(rng.bytes(n));
            v
        }
        2 => {
            let mut v = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", rng.below(64)).into_bytes();
            v.extend(rng.bytes(n));
            v
        }
        3 => {
            let mut v = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let len = rng.below(64);
                v.extend(rng.bytes(len));
                v.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
            }
            v
        }
        4 => {
            let mut v = vec![0u8; n];
            for _ in 0..rng.below(8) {
                let at = rng.below(n as u64);
                v[at] = [b'\r', b'\n', b'*', b'$', b'"', b'\''][rng.below(6)];
            }
            v
        }
        _ => {
            // Something valid first: it must be answered before the junk.
            let mut v = b"PING\r\n".to_vec();
            v.extend(rng.bytes(n));
            v
        }
    }
}

/// Checks that `out` is a sequence of well-formed replies, where a
/// protocol error can only be the last one. A connection that ended in a
/// reset may have lost the tail of the last reply.
fn check_junk_replies(input: &[u8], out: &[u8], reset: bool) {
    let mut pos = 0;
    while pos < out.len() {
        match reply_len(&out[pos..]) {
            Ok(Some(n)) => {
                let r = &out[pos..pos + n];
                pos += n;
                if r.starts_with(b"-ERR Protocol error") {
                    assert_eq!(
                        pos,
                        out.len(),
                        "replies after a protocol error; input {}",
                        show(input)
                    );
                }
                if r[0] == b'-' {
                    assert!(
                        r[1].is_ascii_uppercase(),
                        "error without a code: {} for input {}",
                        show(r),
                        show(input)
                    );
                }
            }
            Ok(None) if reset => return,
            Ok(None) => panic!(
                "truncated reply {} for input {}",
                show(&out[pos..]),
                show(input)
            ),
            Err(e) => panic!(
                "malformed reply ({e}): {} for input {}",
                show(out),
                show(input)
            ),
        }
    }
}

#[test]
fn binary_junk_never_hurts() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "junk");
    let mut rng = Rng(0x00c0_ffee_5eed_1234);
    for round in 0..150 {
        let input = junk(&mut rng);
        let mut c = Client::connect(srv.addr);
        c.send_lenient(&input);
        // Half-close: the server answers what it can, then sees EOF and
        // must close the connection.
        let _ = c.s.shutdown(Shutdown::Write);
        let (out, reset) = c.read_to_close(&format!(
            "after junk round {round} was sent and the write side closed; input {}",
            show(&input)
        ));
        check_junk_replies(&input, &out, reset);
        if input.starts_with(b"PING\r\n") {
            assert!(out.starts_with(PONG.as_bytes()), "round {round}");
        }
        if round % 50 == 49 {
            assert_intact(srv.addr, &data);
        }
    }
    assert_intact(srv.addr, &data);
    let mut c = Client::connect(srv.addr);
    assert_eq!(
        show(&c.cmd(&[b"DBSIZE"])),
        show(format!(":{}\r\n", data.len()).as_bytes()),
        "junk must not have written anything"
    );
    wait_connected_clients(srv.addr, 2);
}

#[test]
fn unknown_commands_get_redis_error_and_connection_survives() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "unknown");
    let mut c = Client::connect(srv.addr);
    c.inline(
        "foo a b",
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
    );
    c.inline(
        "FOO",
        "-ERR unknown command 'FOO', with args beginning with: \r\n",
    );
    c.inline(
        "GE k",
        "-ERR unknown command 'GE', with args beginning with: 'k' \r\n",
    );
    c.send(&multibulk(&[b"NotACommand", b"x", b""]));
    c.expect("-ERR unknown command 'NotACommand', with args beginning with: 'x' '' \r\n");
    // CR and LF inside the error text become spaces: framing survives.
    c.inline(
        r#"foo "a\r\nb" c"#,
        "-ERR unknown command 'foo', with args beginning with: 'a  b' 'c' \r\n",
    );
    // The name is cut at 128 bytes, the argument list soon after 128.
    let name = vec![b'N'; 200];
    let (a, b, cc) = (vec![b'a'; 100], vec![b'b'; 100], vec![b'c'; 100]);
    let got = c.cmd(&[&name, &a, &b, &cc]);
    let want = format!(
        "-ERR unknown command '{}', with args beginning with: '{}' '{}' \r\n",
        "N".repeat(128),
        "a".repeat(100),
        "b".repeat(25)
    );
    assert_eq!(show(&got), show(want.as_bytes()));
    // Many at once, pipelined: one error each, in order, then service.
    let mut pipeline = Vec::new();
    for i in 0..1000 {
        pipeline.extend(multibulk(&[b"nosuchcmd", format!("{i}").as_bytes()]));
    }
    c.send(&pipeline);
    for i in 0..1000 {
        c.expect(&format!(
            "-ERR unknown command 'nosuchcmd', with args beginning with: '{i}' \r\n"
        ));
    }
    c.assert_open();
    assert_intact(srv.addr, &data);
}

#[test]
fn wrong_arity_names_the_command_and_changes_nothing() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "arity");
    let mut c = Client::connect(srv.addr);
    let arity = |cmd: &str| format!("-ERR wrong number of arguments for '{cmd}' command\r\n");
    for (line, cmd) in [
        ("GET", "get"),
        ("get a b", "get"),
        ("SET k", "set"),
        ("INCRBY k", "incrby"),
        ("ECHO", "echo"),
        ("DBSIZE x", "dbsize"),
        ("PING a b", "ping"),
        ("EXPIRE k", "expire"),
        ("MSET a", "mset"),
        ("MSET arity:a b arity:c", "mset"),
        ("CONFIG", "config"),
        ("CONFIG GET", "config|get"),
    ] {
        c.inline(line, &arity(cmd));
    }
    // The odd MSET wrote nothing.
    assert_eq!(
        show(&c.cmd(&[b"EXISTS", b"arity:a", b"arity:c"])),
        show(b":0\r\n")
    );
    c.assert_open();
    assert_intact(srv.addr, &data);
}

#[test]
fn wrong_types_for_numeric_commands() {
    // Here the "wrong type" is a string that is not a number; WRONGTYPE
    // proper (a hash) is tested side by side with Redis in hashes.rs.
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "types");
    let mut c = Client::connect(srv.addr);
    c.inline("SET s abc", OK);
    c.inline("SET f 1.5", OK);
    c.inline(r#"SET sp " 1""#, OK);
    c.inline(r#"SET ts "1 ""#, OK);
    c.inline("SET lz 01", OK);
    for key in ["s", "f", "sp", "ts", "lz"] {
        c.inline(&format!("INCR {key}"), NOT_INT);
        c.inline(&format!("DECR {key}"), NOT_INT);
        c.inline(&format!("INCRBY {key} 1"), NOT_INT);
        c.inline(&format!("DECRBY {key} 1"), NOT_INT);
    }
    c.inline("INCRBYFLOAT s 1", NOT_FLOAT);
    c.inline("INCRBYFLOAT f abc", NOT_FLOAT);
    c.inline("INCRBYFLOAT f 1.5x", NOT_FLOAT);
    c.inline(r#"INCRBYFLOAT f " 1""#, NOT_FLOAT);
    c.inline("INCRBYFLOAT f nan", NOT_FLOAT);
    // The failed commands left the values alone.
    c.inline("GET s", "$3\r\nabc\r\n");
    c.inline("GET f", "$3\r\n1.5\r\n");
    c.inline("GET sp", "$2\r\n 1\r\n");
    c.inline("GET lz", "$2\r\n01\r\n");
    c.inline("INCRBYFLOAT f 1", "$3\r\n2.5\r\n");
    assert_intact(srv.addr, &data);
}

#[test]
fn non_integer_and_overflowing_increments() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "incr");
    let mut c = Client::connect(srv.addr);
    c.inline("SET n 1", OK);
    c.inline(&format!("INCRBY n {}", i64::MAX), OVERFLOW);
    c.inline(
        &format!("DECRBY n {}", i64::MIN),
        "-ERR decrement would overflow\r\n",
    );
    // Not integers, or out of i64 range, as arguments.
    for arg in ["1.5", "abc", "\" 1\"", "\"1 \"", "+1", "\"\"", "01", "-0"] {
        c.inline(&format!("INCRBY n {arg}"), NOT_INT);
        c.inline(&format!("DECRBY n {arg}"), NOT_INT);
    }
    c.inline("INCRBY n 9223372036854775808", NOT_INT);
    c.inline("INCRBY n -9223372036854775809", NOT_INT);
    c.inline("GET n", "$1\r\n1\r\n");

    c.inline("SET n 10", OK);
    c.inline(&format!("INCRBY n {}", i64::MAX), OVERFLOW);
    c.inline("SET n -10", OK);
    c.inline(&format!("DECRBY n {}", i64::MAX), OVERFLOW);
    c.inline("GET n", "$3\r\n-10\r\n");
    c.inline(&format!("SET m {}", i64::MAX), OK);
    c.inline("INCR m", OVERFLOW);
    c.inline(&format!("SET m {}", i64::MIN), OK);
    c.inline("DECR m", OVERFLOW);
    c.inline(
        "GET m",
        &String::from_utf8(bulk(i64::MIN.to_string().as_bytes())).unwrap(),
    );
    // The extremes themselves are reachable.
    c.inline(
        &format!("DECRBY fresh {}", i64::MAX),
        ":-9223372036854775807\r\n",
    );
    c.inline("DECR fresh", ":-9223372036854775808\r\n");
    c.inline("DECR fresh", OVERFLOW);
    // Float increments that leave the finite range.
    c.inline("SET x 1", OK);
    c.inline(
        "INCRBYFLOAT x inf",
        "-ERR increment would produce NaN or Infinity\r\n",
    );
    c.inline("GET x", "$1\r\n1\r\n");
    assert_intact(srv.addr, &data);
}

#[test]
fn set_option_errors() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "setopt");
    let mut c = Client::connect(srv.addr);
    let bad_expire = "-ERR invalid expire time in 'set' command\r\n";
    c.inline("SET k v FOO", "-ERR syntax error\r\n");
    c.inline("SET k v NX XX", "-ERR syntax error\r\n");
    c.inline("SET k v EX 10 PX 10", "-ERR syntax error\r\n");
    c.inline("SET k v KEEPTTL EX 1", "-ERR syntax error\r\n");
    c.inline("SET k v EX", "-ERR syntax error\r\n");
    c.inline("SET k v EX abc", NOT_INT);
    c.inline("SET k v EX 0", bad_expire);
    c.inline("SET k v EX -1", bad_expire);
    c.inline("SET k v PX 0", bad_expire);
    c.inline("SET k v EX 9999999999999999", bad_expire);
    c.inline("SET k v EXAT 0", bad_expire);
    c.inline("GETRANGE k a b", NOT_INT);
    c.inline("SETRANGE k -1 x", "-ERR offset is out of range\r\n");
    c.inline("EXISTS k", ":0\r\n");
    assert_intact(srv.addr, &data);
}

#[test]
fn client_that_never_reads_does_not_hurt_others() {
    let _g = heavy();
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "slow");
    let big: Vec<u8> = (0..100 * 1024).map(|i| (i % 253) as u8).collect();
    let mut c = Client::connect(srv.addr);
    assert_eq!(
        show(&c.cmd(&[b"SET", b"bigkey", &big])),
        show(OK.as_bytes())
    );

    let request = multibulk(&[b"GET", b"bigkey"]);
    let pipeline: Arc<Vec<u8>> = Arc::new(request.repeat(200_000));
    let before = rss();

    let slow = TcpStream::connect(srv.addr).unwrap();
    slow.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut slow, stop, pipeline) =
            (slow.try_clone().unwrap(), stop.clone(), pipeline.clone());
        std::thread::spawn(move || {
            let mut off = 0;
            while off < pipeline.len() && !stop.load(Ordering::Relaxed) {
                let end = (off + 64 * 1024).min(pipeline.len());
                match slow.write(&pipeline[off..end]) {
                    Ok(n) => off += n,
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            off
        })
    };

    // Meanwhile others get quick answers and memory stays flat.
    let started = Instant::now();
    let mut peak = before;
    let mut other = Client::connect(srv.addr);
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        other.assert_open();
        let got = other.cmd(&[b"GET", b"slow:key:7"]);
        assert_eq!(show(&got), show(&bulk(b"value-7")));
        let got = other.cmd(&[b"GET", b"bigkey"]);
        assert!(got == bulk(&big), "bigkey changed");
        worst = worst.max(t.elapsed());
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(
        written < pipeline.len(),
        "the whole pipeline was accepted ({written} bytes): the server buffered replies"
    );
    assert!(
        worst < Duration::from_secs(1),
        "another client waited {worst:?} for a reply"
    );
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 64 * MB,
        "RSS grew by {} MB behind a client that never reads \
         (RSS is process-wide: a runaway server thread left by another failing test counts too)",
        grew / MB
    );

    // Once the slow client goes away, its connection is cleaned up.
    drop(slow);
    drop(other);
    drop(c);
    wait_connected_clients(srv.addr, 1);
    assert_intact(srv.addr, &data);
}

#[test]
fn query_buffer_limit_closes_only_the_offender() {
    let _g = heavy();
    let srv = Server::start(Config {
        client_query_buffer_limit: MB,
        ..config()
    });
    let data = seed(srv.addr, "qbuf");
    let mut bystander = Client::connect(srv.addr);
    bystander.assert_open();

    let mut c = Client::connect(srv.addr);
    c.send(b"*1\r\n$2000000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < 1536 * 1024 {
        if c.s.write_all(&chunk).is_err() {
            break; // closed under us: fine
        }
        sent += chunk.len();
    }
    assert!(
        sent > MB as usize,
        "server closed after only {sent} bytes (limit is 1 MB)"
    );
    // Redis logs and closes without a reply.
    c.expect_closed();

    bystander.assert_open();
    let got = bystander.cmd(&[b"GET", b"qbuf:key:3"]);
    assert_eq!(show(&got), show(&bulk(b"value-3")));
    // A big request under the limit is still fine.
    let value = vec![b'v'; 900 * 1024];
    assert_eq!(
        show(&bystander.cmd(&[b"SET", b"qbuf:under", &value])),
        show(OK.as_bytes())
    );
    assert!(bystander.cmd(&[b"GET", b"qbuf:under"]) == bulk(&value));
    drop(bystander);
    wait_connected_clients(srv.addr, 1);
    assert_intact(srv.addr, &data);
}

/// Connects once the server has let go of earlier connections (their
/// slots free up asynchronously).
fn connect_when_slot_free(addr: SocketAddr) -> Client {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let mut c = Client::connect(addr);
        c.send(b"PING\r\n");
        if c.reply() == PONG.as_bytes() {
            return c;
        }
        assert!(Instant::now() < deadline, "no client slot freed up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn maxclients_refuses_extra_connections_with_redis_error() {
    let srv = Server::start(Config {
        maxclients: 2,
        ..config()
    });
    let data = seed(srv.addr, "maxclients");
    let mut first = connect_when_slot_free(srv.addr);
    let mut second = connect_when_slot_free(srv.addr);
    for _ in 0..3 {
        let mut third = Client::connect(srv.addr);
        third.expect("-ERR max number of clients reached\r\n");
        third.expect_closed();
    }
    // Those served are unaffected and nothing was lost.
    first.assert_open();
    for (k, v) in &data {
        assert!(second.cmd(&[b"GET", k]) == bulk(v), "lost {}", show(k));
    }
    // A slot freed is a slot reusable.
    drop(first);
    connect_when_slot_free(srv.addr).assert_open();
    drop(second);
    assert_intact(srv.addr, &data);
}

#[test]
fn inline_edge_cases() {
    let srv = Server::with_defaults();
    let data = seed(srv.addr, "inline");
    let mut c = Client::connect(srv.addr);
    // Empty and blank lines are skipped, LF alone ends a line, and
    // spaces or tabs around arguments do not matter.
    c.send(b"\r\n\n  \r\n\t\r\nPING\r\n");
    c.expect(PONG);
    c.send(b"PING\n");
    c.expect(PONG);
    c.inline("   PING   ", PONG);
    c.inline("\tECHO\tx\t", "$1\r\nx\r\n");
    // Inline and multibulk requests mix in one packet.
    c.send(b"PING\r\n*1\r\n$4\r\nPING\r\nPING\n");
    for _ in 0..3 {
        c.expect(PONG);
    }
    // Quotes and escapes, as sdssplitargs.
    c.inline(r#"ECHO """#, "$0\r\n\r\n");
    c.inline("ECHO ''", "$0\r\n\r\n");
    c.inline(r#"ECHO "\x41\x4a\x4""#, "$4\r\nAJx4\r\n");
    c.inline(r#"ECHO "a\"b""#, "$3\r\na\"b\r\n");
    c.inline(r#"ECHO 'a"b'"#, "$3\r\na\"b\r\n");
    c.inline(r#"ECHO "\z\n""#, "$2\r\nz\n\r\n");
    c.inline(r"ECHO 'a\'b'", "$3\r\na'b\r\n");
    c.inline(r"ECHO 'a\nb'", "$4\r\na\\nb\r\n");
    c.inline(r#"ECHO a"b""#, "$2\r\nab\r\n");
    c.inline(r#"SET "inline key" "c\x41d""#, OK);
    c.inline(r#"GET "inline key""#, "$3\r\ncAd\r\n");
    c.inline(r#"SET "" empty-name"#, OK);
    c.inline(r#"GET """#, "$10\r\nempty-name\r\n");

    // Unbalanced quotes: protocol error, connection closed.
    for line in [
        r#"ECHO "abc"#,
        r#"ECHO 'abc"#,
        r#"ECHO "abc"def"#,
        r#"ECHO 'abc'def"#,
        r#"ECHO "a""b""#,
        r#"SET "a b"#,
    ] {
        expect_protocol_error(srv.addr, format!("{line}\r\n").as_bytes(), &[UNBALANCED]);
    }
    // A line that never ends.
    expect_protocol_error(
        srv.addr,
        &vec![b'A'; 70_000],
        &["-ERR Protocol error: too big inline request\r\n"],
    );

    // NUL bytes in an inline line. Redis (C strings) stalls on them;
    // whatever cairn does, it must not hang: answer or close promptly.
    // One worker thread, so a stuck worker shows as a stuck server.
    let single = Server::start(Config {
        threads: 1,
        ..config()
    });
    for input in [
        b"ECHO a\x00b\r\n".as_slice(),
        b"\x00\r\n",
        b"PING \x00\r\n",
        b"\x00PING\r\n",
    ] {
        let mut n = Client::connect(single.addr);
        n.send_lenient(input);
        let _ = n.s.shutdown(Shutdown::Write);
        let (out, reset) =
            n.read_to_close(&format!("after input {} and a half-close", show(input)));
        check_junk_replies(input, &out, reset);
        Client::connect(single.addr).assert_open();
    }

    c.assert_open();
    c.inline(r#"GET "inline key""#, "$3\r\ncAd\r\n");
    assert_intact(srv.addr, &data);
}
