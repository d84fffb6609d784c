//! Closed-loop load generator for `benches/vs-etcd.sh`.
//!
//! `--clients N` connections (each its own TCP connection, spread round-robin
//! over `--endpoints`), each doing one request at a time: PUT/SET or GET of a
//! uniformly random key `k%06d` out of `--keys`, with a `--value-size` value.
//! `--warmup` is run and thrown away, then `--duration` is measured. For
//! `--op get` every key is written first (not timed).
//!
//! * `--target etcd`: the etcd v3 gRPC API (`etcd-client`). Gets are
//!   linearizable (etcd's default, `serializable = false`); puts are as
//!   durable as the server makes them (etcd fsyncs its WAL by default).
//! * `--target resp`: RESP (cairn, redis) with a small hand-written client:
//!   `SET k v` must answer `+OK`, `GET k` a bulk string of `--value-size`
//!   bytes.
//!
//! Coordination ops (`--op lock|lock-one|incr`), one cycle per op:
//! * `lock`: each client acquires and releases its own lock (uncontended).
//!   etcd: the v3 Lock API with a lease granted per client (60 s), Lock then
//!   Unlock. RESP: `LOCK.ACQUIRE lock-ID cID 10000` then `LOCK.RELEASE`.
//! * `lock-one`: every client acquires and releases the same lock (contended).
//!   etcd's Lock call blocks until granted; RESP uses `WAIT 30000`. Also
//!   reports the hand-off time (`handoff_p50_ms`): from a holder sending its
//!   release to the next holder receiving its grant.
//! * `incr`: increments of one counter. etcd: read, then a transaction that
//!   writes value+1 if the key's mod revision is unchanged (retried until it
//!   succeeds); RESP: `INCR ctr`.
//!
//! Prints one line to stdout:
//! `target=etcd op=put clients=64 ops=84000 secs=10.000 rps=8400 p50_ms=6.100 ... errors=0`.
//! Errors (error replies, timeouts, I/O errors, missing or wrong values) are
//! counted and not included in `ops`; the first few are described on stderr.
//! Every loop is bounded in time: the run ends at warm-up + duration, and each
//! request or connection attempt has `--op-timeout`.
//!
//! `--cpu-pids P1,P2,...` (the server processes): their utime + stime (all
//! threads, `/proc/PID/stat`) is sampled at the start and the end of the
//! measured window and reported as `server_cpu` (cores busy on average, summed
//! over the processes), `server_cpu_each` and `server_cpu_us_per_op`; the
//! generator's own CPU over the same window is `gen_cpu`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "\
usage: etcd-load --target etcd|resp --endpoints HOST:PORT[,HOST:PORT...] --op put|get|lock|lock-one|incr
                 [--clients 64] [--duration 10s] [--warmup 2s] [--keys 10000]
                 [--value-size 64] [--op-timeout 5s] [--threads 0] [--no-preload]
                 [--cpu-pids PID,PID...] [--conns N]

  --target etcd   etcd v3 gRPC (linearizable gets, default durable puts)
  --target resp   RESP: SET / GET (cairn, redis)
  durations: 10, 10s, 1.5s, 500ms
  --threads       tokio worker threads (0 = one per CPU)
  --no-preload    with --op get: do not write the keys first
  --cpu-pids      server processes whose CPU time is reported for the measured window
  --conns         etcd only: N gRPC connections shared by the clients (HTTP/2 streams),
                  client i on connection i % N (default: one per client)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Etcd,
    Resp,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    /// Acquire + release of the client's own lock.
    Lock,
    /// Acquire (waiting) + release of one lock shared by every client.
    LockOne,
    /// One increment of one counter.
    Incr,
}

struct Opts {
    target: Target,
    endpoints: Vec<String>,
    op: Op,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    keys: u64,
    value_size: usize,
    op_timeout: Duration,
    threads: usize,
    conns: usize,
    preload: bool,
    cpu_pids: Vec<u32>,
    /// RESP only: route each key to its slot's leader (Redis Cluster client).
    cluster: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration '{s}'"))?;
    if !(v.is_finite() && v >= 0.0 && v * mult <= 86_400.0) {
        return Err(format!("bad duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn parse_args() -> Result<Opts, String> {
    let mut target = None;
    let mut endpoints = Vec::new();
    let mut op = None;
    let mut o = Opts {
        target: Target::Resp,
        endpoints: Vec::new(),
        op: Op::Put,
        clients: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        keys: 10_000,
        value_size: 64,
        op_timeout: Duration::from_secs(5),
        threads: 0,
        conns: 0,
        preload: true,
        cpu_pids: Vec::new(),
        cluster: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if name == "-h" || name == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if name == "--no-preload" {
            o.preload = false;
            continue;
        }
        let mut val = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        let num = |v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: not a number: '{v}'"))
        };
        match name.as_str() {
            "--target" => {
                target = Some(match val()?.as_str() {
                    "etcd" => Target::Etcd,
                    "resp" | "cairn" | "redis" => Target::Resp,
                    t => return Err(format!("unknown target '{t}' (etcd, resp)")),
                })
            }
            "--endpoints" => {
                endpoints = val()?
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--op" => {
                op = Some(match val()?.as_str() {
                    "put" | "set" => Op::Put,
                    "get" => Op::Get,
                    "lock" => Op::Lock,
                    "lock-one" => Op::LockOne,
                    "incr" => Op::Incr,
                    x => return Err(format!("unknown op '{x}' (put, get, lock, lock-one, incr)")),
                })
            }
            "--clients" => o.clients = num(val()?)? as usize,
            "--duration" => o.duration = parse_duration(&val()?)?,
            "--warmup" => o.warmup = parse_duration(&val()?)?,
            "--keys" => o.keys = num(val()?)?,
            "--value-size" => o.value_size = num(val()?)? as usize,
            "--op-timeout" => o.op_timeout = parse_duration(&val()?)?,
            "--threads" => o.threads = num(val()?)? as usize,
            "--conns" => o.conns = num(val()?)? as usize,
            "--cluster" => o.cluster = true,
            "--cpu-pids" => {
                o.cpu_pids = val()?
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<u32>()
                            .map_err(|_| format!("--cpu-pids: bad pid '{p}'"))
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument '{a}'")),
        }
    }
    o.target = target.ok_or("--target is required")?;
    o.op = op.ok_or("--op is required")?;
    if endpoints.is_empty() {
        return Err("--endpoints is required".into());
    }
    o.endpoints = endpoints;
    if o.conns == 0 || o.conns > o.clients {
        o.conns = o.clients;
    }
    if o.conns < o.clients && o.target != Target::Etcd {
        return Err(
            "--conns below --clients needs --target etcd (RESP clients do not share connections)"
                .into(),
        );
    }
    if o.clients == 0 || o.clients > 10_000 {
        return Err("--clients must be 1..10000".into());
    }
    if o.keys == 0 || o.keys > 1_000_000 {
        return Err("--keys must be 1..1000000 (keys are k%06d)".into());
    }
    if o.value_size > 1 << 20 {
        return Err("--value-size must be at most 1 MiB".into());
    }
    if o.duration.is_zero() {
        return Err("--duration must be > 0".into());
    }
    if o.op_timeout.is_zero() {
        return Err("--op-timeout must be > 0".into());
    }
    Ok(o)
}

/// utime + stime of a process (all its threads), in clock ticks; None if it is gone.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU ticks of the server processes and of this process.
fn sample_cpu(pids: &[u32]) -> (Vec<Option<u64>>, Option<u64>) {
    (
        pids.iter().map(|p| cpu_ticks(&p.to_string())).collect(),
        cpu_ticks("self"),
    )
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

/// splitmix64: a small, fast, seedable PRNG (uniform keys; no cryptography).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

// ------------------------------------------------------------------ RESP

enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// Redis Cluster's key slot: CRC16-XMODEM of the key (or its {hashtag}) mod 16384.
fn key_slot(key: &[u8]) -> usize {
    let k = match key.iter().position(|&c| c == b'{') {
        Some(o) => match key[o + 1..].iter().position(|&c| c == b'}') {
            Some(l) if l > 0 => &key[o + 1..o + 1 + l],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in k {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    (crc as usize) % 16384
}

/// A cluster-aware RESP client (like Redis Cluster clients): one
/// connection per node, each key sent to the node that leads its slot
/// (learned from CLUSTER SLOTS, corrected by -MOVED).
struct ClusterConn {
    endpoints: Vec<String>,
    conns: Vec<Option<RespConn>>,
    owner: Vec<u8>,
}

impl ClusterConn {
    async fn open(endpoints: &[String], owner: Vec<u8>) -> ClusterConn {
        ClusterConn {
            endpoints: endpoints.to_vec(),
            conns: endpoints.iter().map(|_| None).collect(),
            owner,
        }
    }

    async fn conn(&mut self, i: usize) -> Result<&mut RespConn, String> {
        if self.conns[i].is_none() {
            let addr = self.endpoints[i].clone();
            let s = RespConn::connect(&addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let mut c = RespConn {
                addr,
                stream: Some(s),
                out: Vec::with_capacity(256),
                buf: Vec::with_capacity(4096),
            };
            // Marks the connection cluster-aware: -MOVED instead of proxying.
            c.request(&[b"CLUSTER", b"SLOTS"]).await?;
            self.conns[i] = Some(c);
        }
        Ok(self.conns[i].as_mut().expect("just opened"))
    }

    async fn request(&mut self, key: &[u8], args: &[&[u8]]) -> Result<Reply, String> {
        let slot = key_slot(key);
        for _ in 0..3 {
            let i = self.owner[slot] as usize;
            let r = self.conn(i).await?.request(args).await;
            if r.is_err() {
                self.conns[i] = None;
            }
            let r = r?;
            if let Reply::Error(e) = &r {
                if let Some(rest) = e.strip_prefix(b"MOVED ") {
                    let addr = String::from_utf8_lossy(rest)
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    if let Some(j) = self.endpoints.iter().position(|x| *x == addr) {
                        self.owner[slot] = j as u8;
                        continue;
                    }
                }
            }
            return Ok(r);
        }
        Err("too many redirections".into())
    }
}

/// Reads CLUSTER SLOTS from `addr`: slot → index of its leader in `endpoints`.
async fn slot_owners(addr: &str, endpoints: &[String]) -> Result<Vec<u8>, String> {
    let s = RespConn::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut c = RespConn {
        addr: addr.to_string(),
        stream: Some(s),
        out: Vec::new(),
        buf: Vec::new(),
    };
    let Reply::Array(ranges) = c.request(&[b"CLUSTER", b"SLOTS"]).await? else {
        return Err("CLUSTER SLOTS: not an array".into());
    };
    let mut owner = vec![0u8; 16384];
    for r in ranges {
        let Reply::Array(items) = r else { continue };
        let (Some(Reply::Int(a)), Some(Reply::Int(b)), Some(Reply::Array(node))) =
            (items.first(), items.get(1), items.get(2))
        else {
            continue;
        };
        let (Some(Reply::Bulk(Some(host))), Some(Reply::Int(port))) = (node.first(), node.get(1))
        else {
            continue;
        };
        let hp = format!("{}:{port}", String::from_utf8_lossy(host));
        let j = endpoints.iter().position(|e| *e == hp).unwrap_or(0) as u8;
        let (lo, hi) = (*a as usize, (*b as usize).min(16383));
        for o in owner.iter_mut().take(hi + 1).skip(lo) {
            *o = j;
        }
    }
    Ok(owner)
}

/// A minimal RESP2 client: one connection, one request at a time.
struct RespConn {
    addr: String,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    buf: Vec<u8>,
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn parse_int(b: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer in reply: {:?}", String::from_utf8_lossy(b)))
}

/// Parses one reply at the start of `b`: Ok(None) if incomplete, else the reply and its length.
fn parse_reply(b: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(&t) = b.first() else { return Ok(None) };
    let Some(eol) = find_crlf(b, 1) else {
        return Ok(None);
    };
    let line = &b[1..eol];
    let after = eol + 2;
    Ok(Some(match t {
        b'+' => (Reply::Simple(line.to_vec()), after),
        b'-' => (Reply::Error(line.to_vec()), after),
        b':' => (Reply::Int(parse_int(line)?), after),
        b'$' => {
            let n = parse_int(line)?;
            if n < 0 {
                (Reply::Bulk(None), after)
            } else {
                let n = n as usize;
                if b.len() < after + n + 2 {
                    return Ok(None);
                }
                if &b[after + n..after + n + 2] != b"\r\n" {
                    return Err("bulk reply not terminated by CRLF".into());
                }
                (
                    Reply::Bulk(Some(b[after..after + n].to_vec())),
                    after + n + 2,
                )
            }
        }
        b'*' => {
            let n = parse_int(line)?;
            let mut items = Vec::new();
            let mut pos = after;
            for _ in 0..n.max(0) {
                match parse_reply(&b[pos..])? {
                    Some((r, used)) => {
                        items.push(r);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            (Reply::Array(items), pos)
        }
        _ => return Err(format!("unexpected reply type {:?}", t as char)),
    }))
}

impl RespConn {
    async fn connect(addr: &str) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn request(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        if self.stream.is_none() {
            let s = Self::connect(&self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            self.stream = Some(s);
        }
        let r = self.request_inner(args).await;
        if r.is_err() {
            // The connection may be out of step with the replies: start afresh.
            self.stream = None;
        }
        r
    }

    async fn request_inner(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let stream = self.stream.as_mut().expect("connected");
        self.out.clear();
        let _ = write!(Wr(&mut self.out), "*{}\r\n", args.len());
        for a in args {
            let _ = write!(Wr(&mut self.out), "${}\r\n", a.len());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                if used != self.buf.len() {
                    return Err("extra bytes after the reply".into());
                }
                return Ok(reply);
            }
            self.buf.reserve(4096);
            let n = stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
        }
    }
}

/// `fmt::Write` into a byte vector.
struct Wr<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Wr<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

// ------------------------------------------------------------------ clients

enum Conn {
    /// The client, and the lease its locks are attached to (0: none yet).
    Etcd(Box<etcd_client::Client>, i64),
    Resp(RespConn),
    Cluster(ClusterConn),
}

impl Conn {
    async fn open(target: Target, addr: &str, op_timeout: Duration) -> Result<Conn, String> {
        match target {
            Target::Etcd => {
                let opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(op_timeout)
                    .with_timeout(op_timeout);
                let c = etcd_client::Client::connect([addr], Some(opts))
                    .await
                    .map_err(|e| format!("etcd connect {addr}: {e}"))?;
                Ok(Conn::Etcd(Box::new(c), 0))
            }
            Target::Resp => {
                let s = RespConn::connect(addr)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                Ok(Conn::Resp(RespConn {
                    addr: addr.to_string(),
                    stream: Some(s),
                    out: Vec::with_capacity(256),
                    buf: Vec::with_capacity(4096),
                }))
            }
        }
    }

    async fn put(&mut self, k: &[u8], v: &[u8]) -> Result<(), String> {
        match self {
            Conn::Etcd(kv, _) => kv
                .put(k, v, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("etcd put: {e}")),
            Conn::Cluster(c) => match c.request(k, &[b"SET", k, v]).await? {
                Reply::Simple(s) if s == b"OK" => Ok(()),
                Reply::Error(e) => Err(format!("SET: -{}", String::from_utf8_lossy(&e))),
                _ => Err("SET: unexpected reply".into()),
            },
            Conn::Resp(c) => match c.request(&[b"SET", k, v]).await? {
                Reply::Simple(s) if s == b"OK" => Ok(()),
                Reply::Error(e) => Err(format!("SET: -{}", String::from_utf8_lossy(&e))),
                _ => Err("SET: unexpected reply".into()),
            },
        }
    }

    /// Ok(true) if the value is there and has the expected length.
    async fn get(&mut self, k: &[u8], value_size: usize) -> Result<bool, String> {
        match self {
            Conn::Etcd(kv, _) => {
                // GetOptions default: serializable = false, i.e. a linearizable read.
                let r = kv
                    .get(k, None)
                    .await
                    .map_err(|e| format!("etcd get: {e}"))?;
                Ok(r.kvs()
                    .first()
                    .is_some_and(|kv| kv.value().len() == value_size))
            }
            Conn::Cluster(c) => match c.request(k, &[b"GET", k]).await? {
                Reply::Bulk(Some(v)) => Ok(v.len() == value_size),
                Reply::Bulk(None) => Ok(false),
                Reply::Error(e) => Err(format!("GET: -{}", String::from_utf8_lossy(&e))),
                _ => Err("GET: unexpected reply".into()),
            },
            Conn::Resp(c) => match c.request(&[b"GET", k]).await? {
                Reply::Bulk(Some(v)) => Ok(v.len() == value_size),
                Reply::Bulk(None) => Ok(false),
                Reply::Error(e) => Err(format!("GET: -{}", String::from_utf8_lossy(&e))),
                _ => Err("GET: unexpected reply".into()),
            },
        }
    }
}

impl Conn {
    /// One RESP request (cluster-aware or not) for `key`.
    async fn resp(&mut self, key: &[u8], args: &[&[u8]]) -> Result<Reply, String> {
        match self {
            Conn::Cluster(c) => c.request(key, args).await,
            Conn::Resp(c) => c.request(args).await,
            Conn::Etcd(..) => Err("not a RESP connection".into()),
        }
    }

    /// Acquires lock `name` for `owner` (waiting when `wait`), returns when
    /// it is held, with what releases it.
    async fn acquire(&mut self, name: &[u8], owner: &[u8], wait: bool) -> Result<Vec<u8>, String> {
        match self {
            Conn::Etcd(c, lease) => {
                if *lease == 0 {
                    let r = c
                        .lease_grant(60, None)
                        .await
                        .map_err(|e| format!("etcd lease grant: {e}"))?;
                    *lease = r.id();
                }
                let opts = etcd_client::LockOptions::new().with_lease(*lease);
                let r = c
                    .lock(name, Some(opts))
                    .await
                    .map_err(|e| format!("etcd lock: {e}"))?;
                Ok(r.key().to_vec())
            }
            _ => {
                let mut args: Vec<&[u8]> = vec![b"LOCK.ACQUIRE", name, owner, b"10000"];
                if wait {
                    args.extend_from_slice(&[b"WAIT", b"30000"]);
                }
                match self.resp(name, &args).await? {
                    Reply::Int(t) => Ok(t.to_string().into_bytes()),
                    Reply::Bulk(None) => Err("LOCK.ACQUIRE: busy".into()),
                    Reply::Error(e) => {
                        Err(format!("LOCK.ACQUIRE: -{}", String::from_utf8_lossy(&e)))
                    }
                    _ => Err("LOCK.ACQUIRE: unexpected reply".into()),
                }
            }
        }
    }

    /// Releases what `acquire` returned.
    async fn release(&mut self, name: &[u8], owner: &[u8], held: Vec<u8>) -> Result<(), String> {
        match self {
            Conn::Etcd(c, _) => c
                .unlock(held)
                .await
                .map(|_| ())
                .map_err(|e| format!("etcd unlock: {e}")),
            _ => match self
                .resp(name, &[b"LOCK.RELEASE", name, owner, &held])
                .await?
            {
                Reply::Int(1) => Ok(()),
                Reply::Error(e) => Err(format!("LOCK.RELEASE: -{}", String::from_utf8_lossy(&e))),
                _ => Err("LOCK.RELEASE: not held".into()),
            },
        }
    }

    /// One increment of counter `k` (etcd: compare-and-swap, retried).
    async fn incr(&mut self, k: &[u8]) -> Result<(), String> {
        match self {
            Conn::Etcd(c, _) => {
                use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                for _ in 0..1000 {
                    let r = c.get(k, None).await.map_err(|e| format!("etcd get: {e}"))?;
                    let (cur, rev) = match r.kvs().first() {
                        Some(kv) => (
                            std::str::from_utf8(kv.value())
                                .ok()
                                .and_then(|v| v.parse::<i64>().ok())
                                .unwrap_or(0),
                            kv.mod_revision(),
                        ),
                        None => (0, 0),
                    };
                    let txn = Txn::new()
                        .when([Compare::mod_revision(k, CompareOp::Equal, rev)])
                        .and_then([TxnOp::put(k, (cur + 1).to_string(), None)]);
                    let t = c.txn(txn).await.map_err(|e| format!("etcd txn: {e}"))?;
                    if t.succeeded() {
                        return Ok(());
                    }
                }
                Err("etcd CAS increment: 1000 conflicts in a row".into())
            }
            _ => match self.resp(k, &[b"INCR", k]).await? {
                Reply::Int(_) => Ok(()),
                Reply::Error(e) => Err(format!("INCR: -{}", String::from_utf8_lossy(&e))),
                _ => Err("INCR: unexpected reply".into()),
            },
        }
    }
}

/// When the last release of the shared lock (`lock-one`) was sent.
type LastRelease = std::sync::Arc<std::sync::Mutex<Option<Instant>>>;

struct ClientResult {
    hist: Histogram<u64>,
    /// `lock-one`: from a release being sent to the next holder's grant, µs.
    handoff: Histogram<u64>,
    ops: u64,
    errors: u64,
    misses: u64,
    warmup_errors: u64,
    first_errors: Vec<String>,
}

const MAX_ERR_MSGS: usize = 3;
/// After an error a client pauses this long, so a dead server does not make a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

#[allow(clippy::too_many_arguments)]
async fn run_client(
    mut conn: Conn,
    id: usize,
    op: Op,
    keys: u64,
    value: Vec<u8>,
    op_timeout: Duration,
    warm_end: Instant,
    end: Instant,
    last_release: LastRelease,
) -> ClientResult {
    let mut res = ClientResult {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        handoff: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ops: 0,
        errors: 0,
        misses: 0,
        warmup_errors: 0,
        first_errors: Vec::new(),
    };
    let mut rng = Rng(0x5EED_0000 + id as u64);
    let vs = value.len();
    while Instant::now() < end {
        let k = key(rng.below(keys));
        let start = Instant::now();
        let owner = format!("c{id}").into_bytes();
        let r = match op {
            Op::Put => tokio::time::timeout(op_timeout, conn.put(&k, &value))
                .await
                .map(|r| r.map(|()| true)),
            Op::Get => tokio::time::timeout(op_timeout, conn.get(&k, vs)).await,
            Op::Incr => tokio::time::timeout(op_timeout, conn.incr(b"ctr"))
                .await
                .map(|r| r.map(|()| true)),
            Op::Lock | Op::LockOne => {
                let one = op == Op::LockOne;
                let name = if one {
                    b"lock-0".to_vec()
                } else {
                    format!("lock-{id}").into_bytes()
                };
                let cycle = async {
                    let held = conn.acquire(&name, &owner, one).await?;
                    let got = Instant::now();
                    if one {
                        let prev = *last_release.lock().expect("not poisoned");
                        if let Some(r) = prev.filter(|&r| r > start) {
                            if got >= warm_end && got < end {
                                res.handoff
                                    .saturating_record(got.duration_since(r).as_micros() as u64);
                            }
                        }
                    }
                    if one {
                        // Hand-off: from here (the release about to be
                        // sent) to the next holder's grant.
                        *last_release.lock().expect("not poisoned") = Some(Instant::now());
                    }
                    conn.release(&name, &owner, held).await?;
                    Ok::<bool, String>(true)
                };
                tokio::time::timeout(op_timeout, cycle).await
            }
        };
        let fin = Instant::now();
        let measured = fin >= warm_end && fin < end;
        let err = match r {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => {
                if measured {
                    res.misses += 1;
                }
                Some(format!(
                    "key {} missing or wrong length",
                    String::from_utf8_lossy(&k)
                ))
            }
            Ok(Err(e)) => Some(e),
            Err(_) => {
                if let Conn::Resp(c) = &mut conn {
                    c.stream = None; // a reply may still arrive: do not read it as the next one
                }
                Some(format!("timeout after {op_timeout:?}"))
            }
        };
        match err {
            None if measured => {
                res.ops += 1;
                res.hist
                    .saturating_record(fin.duration_since(start).as_micros() as u64);
            }
            None => {}
            Some(e) => {
                if measured {
                    res.errors += 1;
                } else if fin < warm_end {
                    res.warmup_errors += 1;
                }
                if res.first_errors.len() < MAX_ERR_MSGS {
                    res.first_errors.push(e);
                }
                tokio::time::sleep(ERROR_PAUSE.min(end.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
    }
    res
}

/// Writes every key once, spread over the connections; retries a key up to 3 times.
async fn preload(
    conns: Vec<Conn>,
    keys: u64,
    value: &[u8],
    op_timeout: Duration,
) -> Result<Vec<Conn>, String> {
    let n = conns.len() as u64;
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut k = i as u64;
            while k < keys {
                let key = key(k);
                let mut tries = 0;
                loop {
                    match tokio::time::timeout(op_timeout, conn.put(&key, &value)).await {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) if tries >= 3 => {
                            return Err(format!(
                                "preload of {}: {e}",
                                String::from_utf8_lossy(&key)
                            ))
                        }
                        Err(_) if tries >= 3 => {
                            return Err(format!(
                                "preload of {}: timeout",
                                String::from_utf8_lossy(&key)
                            ))
                        }
                        _ => {
                            if let Conn::Resp(c) = &mut conn {
                                c.stream = None;
                            }
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                k += n;
            }
            Ok(conn)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(|e| format!("preload task: {e}"))??);
    }
    Ok(out)
}

async fn run(o: Opts) -> Result<(), String> {
    let value: Vec<u8> = (0..o.value_size).map(|i| b'a' + (i % 26) as u8).collect();

    // Cluster-aware RESP clients: every client routes by slot itself.
    let owner = if o.cluster {
        Some(slot_owners(&o.endpoints[0], &o.endpoints).await?)
    } else {
        None
    };
    // Connect every client (round-robin over the endpoints) before the clock starts.
    let mut opens = Vec::new();
    for i in 0..o.conns {
        if let Some(owner) = &owner {
            let c = ClusterConn::open(&o.endpoints, owner.clone()).await;
            opens.push(tokio::spawn(async move { Ok(Conn::Cluster(c)) }));
            continue;
        }
        let addr = o.endpoints[i % o.endpoints.len()].clone();
        let (t, ot) = (o.target, o.op_timeout);
        opens.push(tokio::spawn(async move {
            tokio::time::timeout(ot * 2, Conn::open(t, &addr, ot))
                .await
                .unwrap_or_else(|_| Err(format!("connect {addr}: timeout")))
        }));
    }
    let mut conns = Vec::new();
    for t in opens {
        conns.push(t.await.map_err(|e| format!("connect task: {e}"))??);
    }
    // Fewer connections than clients (etcd only): clients share them as HTTP/2 streams.
    for i in o.conns..o.clients {
        let shared = match &conns[i % o.conns] {
            Conn::Etcd(kv, _) => Conn::Etcd(kv.clone(), 0),
            Conn::Resp(_) | Conn::Cluster(_) => unreachable!("--conns < --clients is etcd only"),
        };
        conns.push(shared);
    }

    if o.op == Op::Get && o.preload {
        let t = Instant::now();
        let deadline = Duration::from_secs(600);
        conns = tokio::time::timeout(deadline, preload(conns, o.keys, &value, o.op_timeout))
            .await
            .map_err(|_| format!("preload did not finish within {deadline:?}"))??;
        eprintln!(
            "etcd-load: preloaded {} keys in {:.1}s",
            o.keys,
            t.elapsed().as_secs_f64()
        );
    }

    let t0 = Instant::now();
    let warm_end = t0 + o.warmup;
    let end = warm_end + o.duration;
    // Sample CPU times at the start and the end of the measured window.
    let pids = o.cpu_pids.clone();
    let cpu_task = tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(warm_end)).await;
        let (a, ta) = (Instant::now(), sample_cpu(&pids));
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        let (b, tb) = (Instant::now(), sample_cpu(&pids));
        (b.duration_since(a).as_secs_f64(), ta, tb)
    });
    let mut tasks = Vec::new();
    let last_release: LastRelease = Default::default();
    for (id, conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_client(
            conn,
            id,
            o.op,
            o.keys,
            value.clone(),
            o.op_timeout,
            warm_end,
            end,
            last_release.clone(),
        )));
    }
    let mut hist: Histogram<u64> =
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut handoff: Histogram<u64> =
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let (mut ops, mut errors, mut misses, mut warmup_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut msgs: Vec<String> = Vec::new();
    // Each client stops at `end` after at most one more op of at most op_timeout (+ error pause).
    let wait_until =
        tokio::time::Instant::from_std(end + o.op_timeout * 2 + Duration::from_secs(5));
    for t in tasks {
        let r = tokio::time::timeout_at(wait_until, t)
            .await
            .map_err(|_| "a client did not stop in time".to_string())?
            .map_err(|e| format!("client task: {e}"))?;
        hist.add(&r.hist).map_err(|e| format!("histogram: {e:?}"))?;
        handoff
            .add(&r.handoff)
            .map_err(|e| format!("histogram: {e:?}"))?;
        ops += r.ops;
        errors += r.errors;
        misses += r.misses;
        warmup_errors += r.warmup_errors;
        for m in r.first_errors {
            if msgs.len() < MAX_ERR_MSGS && !msgs.contains(&m) {
                msgs.push(m);
            }
        }
    }
    let secs = o.duration.as_secs_f64();
    let (win, (s0, g0), (s1, g1)) = tokio::time::timeout(Duration::from_secs(5), cpu_task)
        .await
        .map_err(|_| "CPU sampler did not finish".to_string())?
        .map_err(|e| format!("CPU sampler: {e}"))?;
    let hz = clk_tck();
    let cores = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if win > 0.0 => Some(b.saturating_sub(a) as f64 / hz / win),
        _ => None,
    };
    let each: Vec<Option<f64>> = s0.iter().zip(&s1).map(|(a, b)| cores(*a, *b)).collect();
    let mut cpu_fields = String::new();
    if !o.cpu_pids.is_empty() {
        if each.iter().all(Option::is_some) {
            let total: f64 = each.iter().flatten().sum();
            let per_op = if ops > 0 {
                total * win / ops as f64 * 1e6
            } else {
                f64::NAN
            };
            let _ = write!(
                cpu_fields,
                " server_cpu={total:.3} server_cpu_us_per_op={per_op:.1}"
            );
        } else {
            let _ = write!(cpu_fields, " server_cpu=nan server_cpu_us_per_op=nan");
            eprintln!("etcd-load: a server process in --cpu-pids was gone during the run");
        }
        let list: Vec<String> = each
            .iter()
            .map(|c| c.map_or_else(|| "nan".to_string(), |c| format!("{c:.3}")))
            .collect();
        let _ = write!(cpu_fields, " server_cpu_each={}", list.join("/"));
    }
    match cores(g0, g1) {
        Some(c) => {
            let _ = write!(cpu_fields, " gen_cpu={c:.3}");
        }
        None => cpu_fields.push_str(" gen_cpu=nan"),
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let target = match o.target {
        Target::Etcd => "etcd",
        Target::Resp => "resp",
    };
    let op = match o.op {
        Op::Put => "put",
        Op::Get => "get",
        Op::Lock => "lock",
        Op::LockOne => "lock-one",
        Op::Incr => "incr",
    };
    if !handoff.is_empty() {
        let _ = write!(
            cpu_fields,
            " handoff_p50_ms={:.3} handoff_p99_ms={:.3}",
            handoff.value_at_quantile(0.5) as f64 / 1000.0,
            handoff.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    println!(
        "target={target} op={op} clients={} conns={} endpoints={} ops={ops} secs={secs:.3} rps={:.0} mean_ms={:.3} \
         p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} errors={errors} misses={misses} \
         warmup_errors={warmup_errors}{cpu_fields}",
        o.clients,
        o.conns,
        o.endpoints.len(),
        ops as f64 / secs,
        hist.mean() / 1000.0,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0,
    );
    for m in msgs {
        eprintln!("etcd-load: error: {m}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("etcd-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if o.threads > 0 {
        rt.worker_threads(o.threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd-load: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(run(o));
    // Do not wait for stray tasks (e.g. tonic connection tasks).
    rt.shutdown_timeout(Duration::from_secs(1));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1e9").is_err());
    }

    #[test]
    fn replies() {
        let ok = |b: &[u8]| parse_reply(b).unwrap().unwrap();
        assert!(matches!(ok(b"+OK\r\n"), (Reply::Simple(s), 5) if s == b"OK"));
        assert!(matches!(ok(b"-TRYAGAIN x\r\n"), (Reply::Error(e), 13) if e == b"TRYAGAIN x"));
        assert!(matches!(ok(b":42\r\n"), (Reply::Int(42), 5)));
        assert!(matches!(ok(b"$-1\r\n"), (Reply::Bulk(None), 5)));
        assert!(matches!(ok(b"$3\r\nabc\r\n"), (Reply::Bulk(Some(v)), 9) if v == b"abc"));
        // Incomplete replies ask for more bytes.
        for b in [&b""[..], b"+OK", b"+OK\r", b"$3\r\nab", b"$3\r\nabc\r"] {
            assert!(parse_reply(b).unwrap().is_none(), "{b:?}");
        }
        assert!(parse_reply(b"$3\r\nabcde").is_err());
        assert!(parse_reply(b"*1\r\n").is_err());
        assert!(parse_reply(b"$x\r\n").is_err());
    }

    #[test]
    fn keys_and_rng() {
        assert_eq!(key(123), b"k000123");
        let mut r = Rng(1);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
        }
    }

    #[test]
    fn own_cpu_ticks() {
        assert!(cpu_ticks("self").is_some());
        assert!(cpu_ticks("0").is_none());
    }
}
