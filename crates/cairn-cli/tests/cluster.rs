//! Real `cairn server` processes forming a 3-node Raft cluster on
//! loopback: acknowledged writes survive leaders being SIGKILLed (and the
//! whole cluster being killed, in durable mode), replicas converge to
//! identical state digests, and failover time is measured.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------- a minimal blocking RESP client ----------

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    fn send(&mut self, argv: &[&[u8]]) -> std::io::Result<()> {
        let mut b = format!("*{}\r\n", argv.len()).into_bytes();
        for a in argv {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&b)
    }

    fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_string();
        let (t, rest) = line.split_at(1);
        let bad = || std::io::Error::other(format!("bad reply line {line:?}"));
        Ok(match t {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut v = vec![0; n as usize + 2];
                    self.r.read_exact(&mut v)?;
                    v.truncate(n as usize);
                    Reply::Bulk(Some(v))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    // A null array (EXEC after a WATCH'ed change).
                    return Ok(Reply::Bulk(None));
                }
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read()?);
                }
                Reply::Array(items)
            }
            "=" => {
                // RESP3 verbatim never arrives on RESP2; tolerate anyway.
                let n: usize = rest.parse().map_err(|_| bad())?;
                let mut v = vec![0; n + 2];
                self.r.read_exact(&mut v)?;
                Reply::Bulk(Some(v[4..n].to_vec()))
            }
            _ => return Err(bad()),
        })
    }

    fn cmd(&mut self, argv: &[&[u8]]) -> std::io::Result<Reply> {
        self.send(argv)?;
        self.read()
    }
}

fn text(r: &Reply) -> String {
    match r {
        Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Reply::Simple(s) | Reply::Error(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

// ---------- the cluster ----------

/// A RESP port P and its default peer port P + 10000, both free now and
/// below the kernel's ephemeral range (`cairn_check::ports`).
fn free_port_pair() -> (u16, u16) {
    let p = cairn_check::ports::free_port_with(&[0, 10000]);
    (p, p + 10000)
}

/// A base RESP port P for `cairn dev --nodes 3`: for each node i,
/// P + i + every offset in `offsets` is free (0 is the RESP port, 10000
/// the peer port, 100 a TLS port).
fn free_dev_base(offsets: &[u16]) -> u16 {
    let all: Vec<u16> = (0..3)
        .flat_map(|i| offsets.iter().map(move |&o| i + o))
        .collect();
    cairn_check::ports::free_port_with(&all)
}

/// Spawns `cmd` (a `cairn dev`) with stdout piped, returns the child and
/// its banner up to the "Ctrl-C" line, and keeps draining stdout (a
/// closed pipe would make the nodes' and the supervisor's writes fail).
fn spawn_with_banner(cmd: &mut Command) -> (std::process::Child, String) {
    let mut dev = cmd.stdout(Stdio::piped()).spawn().expect("spawn cairn dev");
    let (btx, brx) = std::sync::mpsc::channel();
    let stdout = dev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = btx.send(l);
        }
    });
    let mut banner = String::new();
    while let Ok(l) = brx.recv_timeout(Duration::from_secs(30)) {
        banner.push_str(&l);
        banner.push('\n');
        if l.starts_with("Ctrl-C") {
            break;
        }
    }
    (dev, banner)
}

/// Raft timings: the defaults with a release binary (CAIRN_BIN), so the
/// failover times printed are the defaults'; generous ones for an
/// unoptimized build on 2 busy cores, where a loop iteration (apply,
/// fsync, sends) takes longer.
fn raft_timing() -> Vec<&'static str> {
    if std::env::var_os("CAIRN_BIN").is_some() {
        Vec::new()
    } else {
        vec![
            "--heartbeat-interval",
            "250",
            "--election-timeout-min",
            "1000",
            "--election-timeout-max",
            "2000",
        ]
    }
}

/// One cluster at a time: these tests each run 3 processes and a load,
/// and the machine may have 2 cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until the node on `port` reports `cluster_state:ok`.
fn wait_cluster_ok(port: u16, deadline: Instant) {
    loop {
        let ok = Conn::open(port)
            .and_then(|mut c| c.cmd(&[b"CLUSTER", b"INFO"]))
            .map(|r| text(&r).contains("cluster_state:ok"))
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "port {port} never became ok");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct TestCluster {
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    peers: String,
    nodes: Vec<Option<Child>>,
    durability: &'static str,
    /// More arguments for node i (none when absent).
    extra: Vec<Vec<String>>,
}

impl TestCluster {
    fn new(n: usize, durability: &'static str) -> TestCluster {
        let c = TestCluster::start_all(n, durability, Vec::new());
        c.wait_ok();
        c
    }

    /// Starts `n` nodes, node i with `extra[i]` added to its arguments,
    /// without waiting for them.
    fn start_all(n: usize, durability: &'static str, extra: Vec<Vec<String>>) -> TestCluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port_pair().0).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = TestCluster {
            ports,
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            peers,
            nodes: (0..n).map(|_| None).collect(),
            durability,
            extra,
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    fn start(&mut self, i: usize) {
        // CAIRN_BIN: a release build for faster runs (scripts/test.sh sets it).
        let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
        let mut child = Command::new(bin)
            .args(["server", "--threads", "1", "--log"])
            .arg(std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .args(["--port", &self.ports[i].to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--cluster-peers", &self.peers])
            .args(["--cluster-groups", "16"])
            .args(raft_timing())
            .args(["--durability", self.durability])
            .args(["--dir", &self.dirs[i].path().to_string_lossy()])
            .args(self.extra.get(i).into_iter().flatten())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        // Forward the node's log to the test output, prefixed.
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node {}] {l}", i + 1);
            }
        });
        self.nodes[i] = Some(child);
    }

    /// Starts one more node (empty directory, the member list plus
    /// itself); it joins only once added with CLUSTER ADDNODE.
    fn add_process(&mut self) -> usize {
        let p = free_port_pair().0;
        let i = self.ports.len();
        self.ports.push(p);
        self.dirs.push(tempfile::tempdir().unwrap());
        self.peers.push_str(&format!(",{}=127.0.0.1:{p}", i + 1));
        self.nodes.push(None);
        self.start(i);
        i
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Waits until every live node reports every group with a leader.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in self.live() {
            wait_cluster_ok(self.ports[i], deadline);
        }
    }

    /// The node currently leading the group of `key`'s slot, as `i`.
    fn leader_of(&self, key: &[u8]) -> Option<usize> {
        for i in self.live() {
            let Ok(mut c) = Conn::open(self.ports[i]) else {
                continue;
            };
            let Ok(Reply::Int(slot)) = c.cmd(&[b"CLUSTER", b"KEYSLOT", key]) else {
                continue;
            };
            let Ok(Reply::Array(ranges)) = c.cmd(&[b"CLUSTER", b"SLOTS"]) else {
                continue;
            };
            for r in ranges {
                let Reply::Array(items) = r else { continue };
                let (Some(Reply::Int(a)), Some(Reply::Int(b)), Some(Reply::Array(node))) =
                    (items.first(), items.get(1), items.get(2))
                else {
                    continue;
                };
                if *a <= slot && slot <= *b {
                    if let Some(Reply::Int(port)) = node.get(1) {
                        return self.ports.iter().position(|p| *p as i64 == *port);
                    }
                }
            }
        }
        None
    }

    /// Waits until all live replicas report the same applied index and
    /// digest for every group; returns the digests.
    fn converged_digests(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ds: Vec<Option<String>> = self
                .live()
                .into_iter()
                .map(|i| {
                    Conn::open(self.ports[i])
                        .and_then(|mut c| c.cmd(&[b"CLUSTER", b"DIGEST"]))
                        .ok()
                        .map(|r| text(&r))
                })
                .collect();
            if ds.iter().all(|d| d.is_some() && *d == ds[0]) {
                return ds[0].clone().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not converge: {ds:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reads every key on node `i`'s own replica (READONLY) and checks
    /// the values.
    fn check_replica(&self, i: usize, expect: &BTreeMap<String, String>) {
        let mut c = Conn::open(self.ports[i]).unwrap();
        assert_eq!(c.cmd(&[b"READONLY"]).unwrap(), Reply::Simple("OK".into()));
        let keys: Vec<(&String, &String)> = expect.iter().collect();
        for chunk in keys.chunks(500) {
            for (k, _) in chunk {
                c.send(&[b"GET", k.as_bytes()]).unwrap();
            }
            for (k, v) in chunk {
                let r = c.read().unwrap();
                assert_eq!(
                    r,
                    Reply::Bulk(Some(v.as_bytes().to_vec())),
                    "node {}: acknowledged write of {k} lost",
                    i + 1
                );
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Writes unique keys from `threads` connections until `total` writes
/// are acknowledged; retries a key after -TRYAGAIN/-UNKNOWN or a broken
/// connection (SET of a unique key to a fixed value is idempotent).
/// -UNKNOWN answers `write_load` got (tests run one at a time).
static UNKNOWN_REPLIES: AtomicUsize = AtomicUsize::new(0);

fn write_load(
    ports: Vec<u16>,
    threads: usize,
    total: usize,
    stop: Arc<AtomicBool>,
) -> BTreeMap<String, String> {
    let acked = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (ports, acked, out, stop) =
                (ports.clone(), acked.clone(), out.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut node = t % ports.len();
                let mut conn: Option<Conn> = None;
                let mut i = 0u64;
                let deadline = Instant::now() + Duration::from_secs(300);
                while acked.load(SeqCst) < total && !stop.load(SeqCst) {
                    assert!(Instant::now() < deadline, "write load did not finish");
                    let key = format!("w{t}:{i}");
                    let val = format!("v{i}");
                    if conn.is_none() {
                        conn = Conn::open(ports[node]).ok();
                        if conn.is_none() {
                            node = (node + 1) % ports.len();
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    }
                    let c = conn.as_mut().unwrap();
                    match c.cmd(&[b"SET", key.as_bytes(), val.as_bytes()]) {
                        Ok(Reply::Simple(s)) if s == "OK" => {
                            acked.fetch_add(1, SeqCst);
                            out.lock().unwrap().insert(key, val);
                            i += 1;
                        }
                        Ok(Reply::Error(e)) => {
                            assert!(
                                e.starts_with("TRYAGAIN") || e.starts_with("UNKNOWN"),
                                "unexpected error {e}"
                            );
                            if e.starts_with("UNKNOWN") {
                                UNKNOWN_REPLIES.fetch_add(1, SeqCst);
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Ok(other) => panic!("unexpected reply {other:?}"),
                        Err(_) => {
                            conn = None;
                            node = (node + 1) % ports.len();
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer panicked");
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// Rounds of 32 pipelined SETs through node `port` until `stop`; returns
/// the acknowledged writes. Retryable errors count as not written
/// (-UNKNOWN ones are counted in `UNKNOWN_REPLIES`).
fn pipelined_load(port: u16, tag: &str, stop: Arc<AtomicBool>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut conn = Conn::open(port).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        assert!(Instant::now() < deadline, "pipelined load did not stop");
        let kvs: Vec<(String, String)> = (0..32)
            .map(|j| (format!("{tag}:{i}:{j}"), format!("p{i}.{j}")))
            .collect();
        for (k, v) in &kvs {
            conn.send(&[b"SET", k.as_bytes(), v.as_bytes()]).unwrap();
        }
        for (k, v) in kvs {
            match conn.read().unwrap() {
                Reply::Simple(s) if s == "OK" => {
                    out.insert(k, v);
                }
                Reply::Error(e) if e.starts_with("UNKNOWN") => {
                    UNKNOWN_REPLIES.fetch_add(1, SeqCst);
                }
                Reply::Error(e) if e.starts_with("TRYAGAIN") => {}
                other => panic!("unexpected reply {other:?}"),
            }
        }
        i += 1;
    }
    out
}

/// Kills the leader of `key`'s group and measures the time until a write
/// to that group succeeds through another node.
fn kill_leader_and_time_failover(c: &mut TestCluster, key: &[u8]) -> (usize, Duration) {
    let leader = c.leader_of(key).expect("a leader");
    let other = c.live().into_iter().find(|&i| i != leader).unwrap();
    c.kill(leader);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = Conn::open(c.ports[other]) {
            while Instant::now() < deadline {
                match conn.cmd(&[b"SET", key, b"probe"]) {
                    Ok(Reply::Simple(_)) => return (leader, t0.elapsed()),
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        }
        assert!(Instant::now() < deadline, "no failover within 30 s");
    }
}

#[test]
fn leaders_killed_during_50k_writes_lose_no_acknowledged_write() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.ports.clone();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || write_load(ports, 24, 50_000, stop))
    };
    let mut failovers = Vec::new();
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        if load.is_finished() {
            break;
        }
        let key = format!("probe{round}");
        let (killed, took) = kill_leader_and_time_failover(&mut c, key.as_bytes());
        failovers.push(took);
        std::thread::sleep(Duration::from_millis(300));
        c.start(killed);
    }
    let expect = load.join().expect("load");
    stop.store(true, SeqCst);
    assert!(
        expect.len() >= 50_000,
        "only {} writes acknowledged",
        expect.len()
    );
    assert!(
        !failovers.is_empty(),
        "no leader was killed during the load"
    );
    c.wait_ok();
    let digests = c.converged_digests();
    for i in 0..3 {
        c.check_replica(i, &expect);
    }
    failovers.sort();
    eprintln!(
        "50k writes: {} acknowledged; {} leader kills; failover times {:?} (p50 {:?}); digests equal:\n{digests}",
        expect.len(),
        failovers.len(),
        failovers,
        failovers[failovers.len() / 2]
    );
}

#[test]
fn durable_cluster_killed_entirely_keeps_every_acknowledged_write() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let expect = write_load(c.ports.clone(), 8, 3000, Arc::new(AtomicBool::new(false)));
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.start(i);
    }
    c.wait_ok();
    // Linearizable reads through node 1 (forwarded where it does not lead).
    let mut conn = Conn::open(c.ports[0]).unwrap();
    for (k, v) in &expect {
        assert_eq!(
            conn.cmd(&[b"GET", k.as_bytes()]).unwrap(),
            Reply::Bulk(Some(v.as_bytes().to_vec())),
            "{k} lost after the whole cluster was killed"
        );
    }
    c.converged_digests();
    for i in 0..3 {
        c.check_replica(i, &expect);
    }
}

#[test]
fn volatile_cluster_survives_a_minority_and_the_lost_node_catches_up() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "volatile");
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.ports.clone();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || write_load(ports, 8, 6000, stop))
    };
    std::thread::sleep(Duration::from_millis(800));
    let victim = c.leader_of(b"x").unwrap();
    c.kill(victim);
    let expect = load.join().unwrap();
    stop.store(true, SeqCst);
    for i in c.live() {
        c.check_replica(i, &expect);
    }
    // The lost node comes back with nothing and catches up from the others.
    c.start(victim);
    c.wait_ok();
    c.converged_digests();
    c.check_replica(victim, &expect);
}

/// Pipelined commands of one key, sent to the key's leader or to a node
/// that proxies them to it, keep their order: the last SET wins, APPENDs come out in
/// sequence, and a GET in the pipeline sees every write before it.
#[test]
fn pipelined_commands_through_a_proxy_keep_their_order() {
    let _serial = serial();
    let c = TestCluster::new(3, "durable");
    let leader = c.leader_of(b"ord").unwrap();
    let proxy = (leader + 1) % 3;
    for round in 0..20 {
        // Through the proxy, and (odd rounds) straight to the leader.
        let node = if round % 2 == 0 { proxy } else { leader };
        let mut conn = Conn::open(c.ports[node]).unwrap();
        let n = 50;
        for i in 0..n {
            let v = format!("{round}:{i}");
            conn.send(&[b"SET", b"ord", v.as_bytes()]).unwrap();
            conn.send(&[b"APPEND", b"seq", format!("{i},").as_bytes()])
                .unwrap();
            if i % 10 == 9 {
                conn.send(&[b"GET", b"ord"]).unwrap();
            }
        }
        conn.send(&[b"GET", b"seq"]).unwrap();
        conn.send(&[b"DEL", b"seq"]).unwrap();
        let mut len = 0;
        for i in 0..n {
            assert_eq!(conn.read().unwrap(), Reply::Simple("OK".into()));
            len += format!("{i},").len() as i64;
            assert_eq!(
                conn.read().unwrap(),
                Reply::Int(len),
                "APPEND {i} out of order"
            );
            if i % 10 == 9 {
                let got = text(&conn.read().unwrap());
                assert_eq!(got, format!("{round}:{i}"), "GET saw another write");
            }
        }
        let want: String = (0..n).map(|i| format!("{i},")).collect();
        assert_eq!(text(&conn.read().unwrap()), want);
        assert_eq!(conn.read().unwrap(), Reply::Int(1));
    }
}

/// A 3-node durable cluster with `key` set to "1" through its leader;
/// returns the cluster, the key's leader and another node (a proxy).
fn cluster_with_key(key: &[u8]) -> (TestCluster, usize, usize) {
    let c = TestCluster::new(3, "durable");
    let leader = c.leader_of(key).unwrap();
    let mut conn = Conn::open(c.ports[leader]).unwrap();
    assert_eq!(
        conn.cmd(&[b"SET", key, b"1"]).unwrap(),
        Reply::Simple("OK".into())
    );
    (c, leader, (leader + 1) % 3)
}

/// A write with an arity, syntax or range error is answered by the node
/// that receives it (or by the leader it forwards to) and never reaches
/// the log: no replica's applied index moves.
#[test]
fn invalid_writes_are_answered_without_being_proposed() {
    let _serial = serial();
    let (c, leader, proxy) = cluster_with_key(b"v");
    let mut conn = Conn::open(c.ports[leader]).unwrap();
    let before = c.converged_digests();
    let bad: &[(&[&[u8]], &str)] = &[
        (&[b"SET", b"v", b"2", b"BOGUS"], "ERR syntax error"),
        (&[b"SET", b"v", b"2", b"NX", b"XX"], "ERR syntax error"),
        (
            &[b"SET", b"v", b"2", b"EX", b"0"],
            "ERR invalid expire time in 'set' command",
        ),
        (
            &[b"EXPIRE", b"v", b"9223372036854775807"],
            "ERR invalid expire time in 'expire' command",
        ),
        (
            &[b"INCRBY", b"v", b"one"],
            "ERR value is not an integer or out of range",
        ),
        (
            &[b"GETEX", b"v", b"PERSIST", b"EX", b"5"],
            "ERR syntax error",
        ),
    ];
    for node in [leader, proxy] {
        let mut conn = Conn::open(c.ports[node]).unwrap();
        for (argv, want) in bad {
            match conn.cmd(argv).unwrap() {
                Reply::Error(e) => assert_eq!(e, *want, "{argv:?} via node {}", node + 1),
                other => panic!("{argv:?}: {other:?}"),
            }
        }
    }
    assert_eq!(c.converged_digests(), before, "an invalid write was logged");
    assert_eq!(text(&conn.cmd(&[b"GET", b"v"]).unwrap()), "1");
}

/// A proxy whose leader goes silent (SIGSTOP) does not wait out its
/// forward timeout (10 s): once its own replica of the group knows a new
/// leader, a forwarded read is asked again of the new leader and a
/// forwarded write is answered -UNKNOWN (it may still have been logged).
#[test]
fn a_proxy_gives_up_on_a_paused_leader_once_another_is_elected() {
    let _serial = serial();
    let (c, leader, proxy) = cluster_with_key(b"p");
    let mut conn = Conn::open(c.ports[proxy]).unwrap();
    let pid = c.nodes[leader].as_ref().unwrap().id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t = Instant::now();
    conn.send(&[b"SET", b"p", b"2"]).unwrap();
    conn.send(&[b"GET", b"p"]).unwrap();
    let w = conn.read().unwrap();
    let r = conn.read().unwrap();
    let took = t.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    match &w {
        Reply::Simple(s) if s == "OK" => {}
        Reply::Error(e) if e.starts_with("UNKNOWN") => {}
        other => panic!("forwarded write: {other:?}"),
    }
    let r = text(&r);
    assert!(r == "1" || r == "2", "forwarded read: {r}");
    // Election timeouts here are under a second; the forward timeout is 10 s.
    assert!(
        took < Duration::from_secs(6),
        "the proxy waited {took:?} for a paused leader"
    );
}

/// A volatile node that had acknowledged every entry and comes back empty
/// while nothing is written: the leaders that kept their leadership still
/// believe it holds everything (no append would ever be sent), so only
/// the restarted node can notice and say so. CI caught this once.
#[test]
fn volatile_node_restarted_after_the_writes_stop_catches_up() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "volatile");
    let stop = Arc::new(AtomicBool::new(false));
    let expect = write_load(c.ports.clone(), 4, 600, stop);
    c.converged_digests();
    // Not the leader of "x": most groups keep their leaders and their
    // stale belief about the victim.
    let leader = c.leader_of(b"x").unwrap();
    let victim = (leader + 1) % 3;
    c.kill(victim);
    std::thread::sleep(Duration::from_millis(300));
    c.start(victim);
    c.wait_ok();
    c.converged_digests();
    c.check_replica(victim, &expect);
}

#[test]
fn redis_cluster_clients_work_against_a_cairn_cluster() {
    let _serial = serial();
    let c = TestCluster::new(3, "volatile");
    // The `redis` crate's cluster client: reads CLUSTER SLOTS, routes by
    // slot, follows -MOVED.
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}", c.ports[0])])
            .unwrap();
    let mut conn = client.get_connection().expect("cluster connection");
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut conn)
            .expect("SET through the cluster client");
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(v, i);
    }
    // Multi-key commands within one hashtag are atomic in one group.
    let _: () = redis::cmd("MSET")
        .arg("{u1}:a")
        .arg("1")
        .arg("{u1}:b")
        .arg("2")
        .query(&mut conn)
        .unwrap();
    let got: Vec<String> = redis::cmd("MGET")
        .arg("{u1}:a")
        .arg("{u1}:b")
        .query(&mut conn)
        .unwrap();
    assert_eq!(got, vec!["1", "2"]);
    let n: i64 = redis::cmd("INCRBY")
        .arg("ctr")
        .arg(5)
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, 5);
    // A plain connection to a node that does not lead a key's group is
    // proxied; a cluster-aware one gets -MOVED.
    let leader = c.leader_of(b"key:7").unwrap();
    let other = (leader + 1) % 3;
    let mut plain = Conn::open(c.ports[other]).unwrap();
    assert_eq!(
        plain.cmd(&[b"GET", b"key:7"]).unwrap(),
        Reply::Bulk(Some(b"7".to_vec()))
    );
    let mut aware = Conn::open(c.ports[other]).unwrap();
    let _ = aware.cmd(&[b"CLUSTER", b"SLOTS"]).unwrap();
    match aware.cmd(&[b"GET", b"key:7"]).unwrap() {
        Reply::Error(e) => assert!(
            e.starts_with("MOVED ") && e.ends_with(&format!(":{}", c.ports[leader])),
            "{e}"
        ),
        other => panic!("expected -MOVED, got {other:?}"),
    }
    // Keys of different groups in one command: -CROSSSLOT.
    match plain.cmd(&[b"MSET", b"a", b"1", b"b", b"2"]).unwrap() {
        Reply::Error(e) => assert!(e.starts_with("CROSSSLOT"), "{e}"),
        other => panic!("expected -CROSSSLOT, got {other:?}"),
    }
    // redis-cli -c (when installed) follows the redirections too.
    if let Ok(out) = Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &c.ports[other].to_string(),
            "SET",
            "key:7",
            "seven",
        ])
        .output()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &c.ports[other].to_string(), "GET", "key:7"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "seven");
    }
}

/// `field:value` from an INFO reply, as text (`None`: not there, or no
/// reply).
fn info_value(conn: &mut Conn, section: &[u8], field: &str) -> Option<String> {
    let t = text(&conn.cmd(&[b"INFO", section]).ok()?);
    t.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// `field:value` from an INFO reply, a number.
fn info_field(conn: &mut Conn, section: &[u8], field: &str) -> u64 {
    info_value(conn, section, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no numeric {field} in INFO {}",
                String::from_utf8_lossy(section)
            )
        })
}

/// Replicated eviction: cluster-wide maxmemory and policy set once
/// through the meta group reach every node; writes past the limit make
/// each group's leader commit CAIRN.EVICT, so every replica evicts the
/// same keys (equal digests), memory stays near the limit on every node,
/// and nothing is refused. With noeviction, the same cluster answers -OOM.
#[test]
fn replicated_eviction_keeps_a_full_cluster_under_maxmemory() {
    let _serial = serial();
    let c = TestCluster::new(3, "durable");
    let mut conn = Conn::open(c.ports[0]).unwrap();
    for (k, v) in [("maxmemory", "1mb"), ("maxmemory-policy", "allkeys-lru")] {
        let r = conn
            .cmd(&[b"CLUSTER", b"SETTING", k.as_bytes(), v.as_bytes()])
            .unwrap();
        assert_eq!(r, Reply::Simple("OK".into()), "{k}");
    }
    for bad in [&["maxmemory-policy", "bogus"][..], &["port", "1"]] {
        let r = conn
            .cmd(&[b"CLUSTER", b"SETTING", bad[0].as_bytes(), bad[1].as_bytes()])
            .unwrap();
        assert!(matches!(r, Reply::Error(_)), "{bad:?}: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for &p in &c.ports {
        let mut n = Conn::open(p).unwrap();
        while info_field(&mut n, b"memory", "maxmemory") != 1 << 20 {
            assert!(Instant::now() < deadline, "setting never reached port {p}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The meta group's first leader seeds the members within a
        // reconciler tick or two of the cluster forming.
        // A follower applies the second setting a moment after the
        // leader answered (the next frame to it carries the commit).
        loop {
            let meta = text(&n.cmd(&[b"CLUSTER", b"META"]).unwrap());
            if meta.contains("setting:maxmemory-policy allkeys-lru")
                && meta.matches(" joined").count() == 3
            {
                break;
            }
            assert!(Instant::now() < deadline, "members never seeded: {meta}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // ~2.5 MB of values into a 1 MB cluster, pipelined through node 1.
    let value = vec![b'v'; 200];
    for chunk in 0..25 {
        for i in 0..500 {
            let k = format!("evict:{chunk}:{i}");
            conn.send(&[b"SET", k.as_bytes(), &value]).unwrap();
        }
        for _ in 0..500 {
            let r = conn.read().unwrap();
            assert_eq!(r, Reply::Simple("OK".into()), "a write was refused");
        }
    }
    c.converged_digests();
    for &p in &c.ports {
        let mut n = Conn::open(p).unwrap();
        let used = info_field(&mut n, b"memory", "used_memory_dataset");
        let evicted = info_field(&mut n, b"stats", "evicted_keys");
        assert!(evicted > 3_000, "port {p}: only {evicted} keys evicted");
        assert!(
            used < 2 << 20,
            "port {p}: {used} bytes used with maxmemory 1mb"
        );
    }
    let r = conn
        .cmd(&[b"CLUSTER", b"SETTING", b"maxmemory-policy", b"noeviction"])
        .unwrap();
    assert_eq!(r, Reply::Simple("OK".into()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Fill up to the limit if eviction left room, then expect -OOM.
        let r = conn
            .cmd(&[b"SET", b"one-more", &vec![b'x'; 100_000]])
            .unwrap();
        if let Reply::Error(e) = &r {
            assert!(e.starts_with("OOM"), "{e}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "noeviction never refused a write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replacing a node without downtime: while clients write through nodes 2
/// and 3, node 4 starts empty and is added (CLUSTER ADDNODE), then node 1
/// is removed (CLUSTER DELNODE) and stopped. No write gets more than the
/// retryable -TRYAGAIN/-UNKNOWN, writes keep being acknowledged during the
/// change, and node 4's replica holds every acknowledged write.
#[test]
fn a_node_is_replaced_under_load_without_downtime() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let stop = Arc::new(AtomicBool::new(false));
    let ports = vec![c.ports[1], c.ports[2]];
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || write_load(ports, 6, usize::MAX, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let n4 = c.add_process();
    let mut admin = Conn::open(c.ports[1]).unwrap();
    let add = format!("127.0.0.1:{}", c.ports[n4]);
    let r = admin
        .cmd(&[b"CLUSTER", b"ADDNODE", b"4", add.as_bytes()])
        .unwrap();
    assert_eq!(r, Reply::Simple("OK".into()), "ADDNODE");
    let r = admin.cmd(&[b"CLUSTER", b"DELNODE", b"1"]).unwrap();
    assert_eq!(r, Reply::Simple("OK".into()), "DELNODE");
    c.kill(0);
    let before = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, SeqCst);
    let expect = load.join().unwrap();
    assert!(
        expect.len() > 200,
        "only {} writes acknowledged",
        expect.len()
    );
    eprintln!(
        "{} writes acknowledged while node 4 replaced node 1 ({:?} after the removal)",
        expect.len(),
        before.elapsed()
    );
    let meta = text(&admin.cmd(&[b"CLUSTER", b"META"]).unwrap());
    assert!(
        meta.contains("member:4 ") && !meta.contains("member:1 "),
        "{meta}"
    );
    c.converged_digests();
    c.check_replica(n4, &expect);
    // Every group has a leader among the remaining nodes and takes writes.
    c.wait_ok();
    for i in 0..64 {
        let key = format!("after:{i}");
        let r = admin.cmd(&[b"SET", key.as_bytes(), b"1"]).unwrap();
        assert_eq!(r, Reply::Simple("OK".into()), "{key}");
    }
}

/// `cairn dev --nodes 3 --port P`, the README's run command: three nodes
/// on P..P+2 form a cluster, a plain client's write through one node is
/// read back through another, the data lives in a temporary directory,
/// and SIGINT (Ctrl-C) stops every node and removes that directory.
#[test]
fn cairn_dev_runs_a_local_cluster_and_ctrl_c_stops_it() {
    let _g = serial();
    // Three consecutive free RESP ports whose peer ports (+10000) are free too.
    let base = free_dev_base(&[0, 10000]);
    let tmp = tempfile::tempdir().unwrap();
    let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let (mut dev, banner) = spawn_with_banner(
        Command::new(&bin)
            .args(["dev", "--nodes", "3", "--port", &base.to_string()])
            .env("TMPDIR", tmp.path()),
    );
    for i in 0..3 {
        assert!(
            banner.contains(&format!("redis-cli -p {}", base + i)),
            "banner does not say how to connect to node {}:\n{banner}",
            i + 1
        );
    }
    let data: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(data.len(), 1, "one temporary data directory: {data:?}");
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for &p in &ports {
        wait_cluster_ok(p, deadline);
    }
    let mut c1 = Conn::open(ports[0]).unwrap();
    assert_eq!(
        c1.cmd(&[b"SET", b"dev-key", b"dev-value"]).unwrap(),
        Reply::Simple("OK".into())
    );
    let mut c3 = Conn::open(ports[2]).unwrap();
    assert_eq!(
        c3.cmd(&[b"GET", b"dev-key"]).unwrap(),
        Reply::Bulk(Some(b"dev-value".to_vec()))
    );
    // Ctrl-C: every node stops, the temporary directory goes.
    unsafe { libc::kill(dev.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = dev.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = dev.kill();
            panic!("cairn dev still runs 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "cairn dev exited with {status}");
    for &p in &ports {
        assert!(
            TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still accepts connections after Ctrl-C"
        );
    }
    assert!(!data[0].exists(), "{} was not removed", data[0].display());
}

/// `cairn dev --nodes 3 --tls` as a process: its banner gives the
/// redis-cli --tls line, the nodes form a cluster over mutual TLS (no
/// other way: the peers' certificates come from its own `cert dev`), a
/// SET with `redis-cli --tls` on node 1's TLS port is read with a GET on
/// node 3's, and Ctrl-C stops it all.
#[test]
fn cairn_dev_tls_runs_a_tls_cluster_redis_cli_tls_reaches() {
    let _g = serial();
    // RESP ports P..P+2 with their TLS (+100) and peer (+10000) ports free.
    let base = free_dev_base(&[0, 100, 10000]);
    let tmp = tempfile::tempdir().unwrap();
    let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let (mut dev, banner) = spawn_with_banner(
        Command::new(&bin)
            .args(["dev", "--nodes", "3", "--tls", "--groups", "8"])
            .args(["--port", &base.to_string()])
            .arg("--dir")
            .arg(tmp.path()),
    );
    let certs = tmp.path().join("certs");
    let f = |n: &str| certs.join(n).to_string_lossy().into_owned();
    let tls_line = format!(
        "redis-cli -p {} --tls --cacert {} --cert {} --key {}",
        base + 100,
        f("ca.crt"),
        f("client.crt"),
        f("client.key")
    );
    assert!(banner.contains(&tls_line), "no `{tls_line}` in:\n{banner}");
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..3 {
        wait_cluster_ok(base + i, deadline);
    }
    let cli = |port: u16, args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--tls"])
            .args(["--cacert", &f("ca.crt"), "--cert", &f("client.crt")])
            .args(["--key", &f("client.key")])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        cli(base + 100, &["SET", "dev-tls-key", "dev-tls-value"]),
        "OK"
    );
    assert_eq!(cli(base + 102, &["GET", "dev-tls-key"]), "dev-tls-value");
    for i in 0..3 {
        assert_eq!(
            cluster_info_field(base + i, "cairn_peer_auth").as_deref(),
            Some("tls+secret"),
            "node {}",
            i + 1
        );
    }
    unsafe { libc::kill(dev.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = dev.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = dev.kill();
            panic!("cairn dev --tls still runs 30 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "cairn dev exited with {status}");
}

#[test]
fn cairn_dev_refuses_a_bad_group_count_before_starting_anything() {
    let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .args(["dev", "--nodes", "3", "--groups", "3"])
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run cairn dev");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--groups must be a power of two"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "printed a banner: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "created a data directory"
    );
}

/// Threads of process `pid` named `name` (from /proc/PID/task/*/comm).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .map(|c| c.trim() == name)
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn raft_threads_sets_the_raft_runtime_size() {
    let _g = serial();
    let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    for (flag, want) in [(None, 2), (Some("3"), 3)] {
        let port = free_port_pair().0;
        let mut cmd = Command::new(&bin);
        cmd.args(["server", "--threads", "1", "--log", "warn"])
            .args(["--port", &port.to_string(), "--node-id", "1"])
            .args(["--cluster-peers", &format!("1=127.0.0.1:{port}")])
            .args(["--cluster-groups", "4", "--durability", "volatile"])
            .stderr(Stdio::null());
        if let Some(n) = flag {
            cmd.args(["--raft-threads", n]);
        }
        let mut child = cmd.spawn().expect("spawn cairn");
        wait_cluster_ok(port, Instant::now() + Duration::from_secs(30));
        let n = threads_named(child.id(), "cairn-raft");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(n, want, "cairn-raft threads with --raft-threads {flag:?}");
    }
}

/// Groups led by each node (by RESP port), as node `i`'s CLUSTER SLOTS says.
fn leaders_by_port(port: u16) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    let Ok(Reply::Array(ranges)) =
        Conn::open(port).and_then(|mut c| c.cmd(&[b"CLUSTER", b"SLOTS"]))
    else {
        return out;
    };
    for r in ranges {
        let Reply::Array(items) = r else { continue };
        if let Some(Reply::Array(node)) = items.get(2) {
            if let Some(Reply::Int(p)) = node.get(1) {
                *out.entry(*p).or_default() += 1;
            }
        }
    }
    out
}

#[test]
fn cluster_rebalance_spreads_leaders_again_after_a_restart_without_losing_writes() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    // Node 1 down and back: the groups it led elected leaders elsewhere.
    c.kill(0);
    std::thread::sleep(Duration::from_millis(1500));
    c.start(0);
    c.wait_ok();
    let before = leaders_by_port(c.ports[1]);
    let n1 = c.ports[0] as i64;
    assert!(
        before.get(&n1).copied().unwrap_or(0) < 5,
        "node 1 still leads its share after a restart: {before:?}"
    );
    // Writes from 6 plain clients run through the rebalance.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (ports, stop) = (c.ports.clone(), stop.clone());
        std::thread::spawn(move || write_load(ports, 6, usize::MAX, stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    let moved = Conn::open(c.ports[2])
        .unwrap()
        .cmd(&[b"CLUSTER", b"REBALANCE"])
        .unwrap();
    let Reply::Int(moved) = moved else {
        panic!("CLUSTER REBALANCE answered {moved:?}")
    };
    assert!(moved >= 1, "nothing moved: {before:?}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, SeqCst);
    let expect = load.join().expect("load");
    // 16 groups over 3 nodes, group g preferring the (g mod 3)-th node:
    // 6, 5 and 5 — as every node sees it once it has heard the leaders.
    let want: BTreeMap<i64, usize> = [(0, 6), (1, 5), (2, 5)]
        .into_iter()
        .map(|(i, n)| (c.ports[i] as i64, n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..3 {
        loop {
            let got = leaders_by_port(c.ports[i]);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} sees leaders {got:?}, want {want:?} (moved {moved})",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Balanced already: nothing to move.
    let again = Conn::open(c.ports[0])
        .unwrap()
        .cmd(&[b"CLUSTER", b"REBALANCE"])
        .unwrap();
    assert_eq!(again, Reply::Int(0));
    assert!(
        expect.len() > 100,
        "only {} writes acknowledged",
        expect.len()
    );
    c.converged_digests();
    for i in 0..3 {
        c.check_replica(i, &expect);
    }
    eprintln!(
        "rebalance: moved {moved} groups from {before:?}; {} writes acknowledged meanwhile, all on every replica",
        expect.len()
    );
}

/// The automatic rebalancer: with `cluster-auto-rebalance no` a restarted
/// node stays without its groups; switched back on, it takes them back by
/// itself (6, 5, 5) once the cluster settled, while writes go on and none
/// is lost.
#[test]
fn leaders_come_back_on_their_own_after_a_restart_unless_switched_off() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let set = |c: &TestCluster, v: &str| {
        let r = Conn::open(c.ports[1])
            .unwrap()
            .cmd(&[
                b"CLUSTER",
                b"SETTING",
                b"cluster-auto-rebalance",
                v.as_bytes(),
            ])
            .unwrap();
        assert_eq!(r, Reply::Simple("OK".into()));
    };
    set(&c, "no");
    c.kill(0);
    std::thread::sleep(Duration::from_millis(1500));
    c.start(0);
    c.wait_ok();
    let stop = Arc::new(AtomicBool::new(false));
    UNKNOWN_REPLIES.store(0, SeqCst);
    let load = {
        let (ports, stop) = (c.ports.clone(), stop.clone());
        std::thread::spawn(move || write_load(ports, 4, usize::MAX, stop))
    };
    let piped: Vec<_> = (1..3)
        .map(|i| {
            let (port, stop) = (c.ports[i], stop.clone());
            std::thread::spawn(move || pipelined_load(port, &format!("pl{i}"), stop))
        })
        .collect();
    // Longer than the settle time (5 s): nothing may move.
    std::thread::sleep(Duration::from_secs(7));
    let n1 = c.ports[0] as i64;
    let off = leaders_by_port(c.ports[1]);
    assert!(
        off.get(&n1).copied().unwrap_or(0) < 5,
        "leaders moved while switched off: {off:?}"
    );
    set(&c, "yes");
    let want: BTreeMap<i64, usize> = [(0, 6), (1, 5), (2, 5)]
        .into_iter()
        .map(|(i, n)| (c.ports[i] as i64, n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let got = leaders_by_port(c.ports[2]);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "leaders {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, SeqCst);
    let mut expect = load.join().expect("load");
    assert!(expect.len() > 100, "only {} writes", expect.len());
    for p in piped {
        let got = p.join().expect("pipelined load");
        assert!(got.len() > 100, "only {} pipelined writes", got.len());
        expect.extend(got);
    }
    // A transfer is planned: the old leader hands over what it proposed
    // and proxies re-ask the new leader for the rest, so no client write
    // ends in -UNKNOWN.
    let unknown = UNKNOWN_REPLIES.load(SeqCst);
    eprintln!(
        "{} writes, {unknown} -UNKNOWN while about 5 leaders moved",
        expect.len()
    );
    assert_eq!(
        unknown, 0,
        "writes answered -UNKNOWN during planned transfers"
    );
    c.converged_digests();
    for i in 0..3 {
        c.check_replica(i, &expect);
    }
}

/// Sends `argv` through node `i` until it gets a reply that is not a
/// retryable error (TRYAGAIN, a closed connection); other errors are
/// replies.
fn until_answered_or_error(c: &TestCluster, i: usize, argv: &[&[u8]]) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = Conn::open(c.ports[i]) {
            match conn.cmd(argv) {
                Ok(Reply::Error(e))
                    if e.starts_with("TRYAGAIN") || e.starts_with("CLUSTERDOWN") => {}
                Err(_) => {}
                Ok(r) => return r,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{argv:?} not answered within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `argv` through node `i` until it gets a reply that is not an
/// error (failover in progress: TRYAGAIN, a closed connection...).
fn until_answered(c: &TestCluster, i: usize, argv: &[&[u8]]) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = Conn::open(c.ports[i]) {
            match conn.cmd(argv) {
                Ok(Reply::Error(_)) | Err(_) => {}
                Ok(r) => return r,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{argv:?} not answered within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Locks in a durable 3-node cluster, through a proxy node: one holder at
/// a time, the grant survives its group's leader being killed (same
/// holder, same token), later grants get larger tokens, and a lease that
/// is not renewed is ended by the new leader's clock.
#[test]
fn locks_keep_their_holder_across_a_leader_kill_and_tokens_keep_increasing() {
    let _serial = serial();
    let (mut c, leader, other) = cluster_with_key(b"jobs");
    let t1 = match until_answered(&c, other, &[b"LOCK.ACQUIRE", b"jobs", b"a", b"60000"]) {
        Reply::Int(t) => t,
        r => panic!("not granted: {r:?}"),
    };
    assert_eq!(
        until_answered(&c, other, &[b"LOCK.ACQUIRE", b"jobs", b"b", b"60000"]),
        Reply::Bulk(None)
    );
    c.kill(leader);
    // The new leader knows the grant: b still waits, a still holds t1.
    assert_eq!(
        until_answered(&c, other, &[b"LOCK.ACQUIRE", b"jobs", b"b", b"60000"]),
        Reply::Bulk(None)
    );
    match until_answered(&c, other, &[b"LOCK.INFO", b"jobs"]) {
        Reply::Array(f) => {
            assert_eq!(f.get(1), Some(&Reply::Bulk(Some(b"a".to_vec()))), "{f:?}");
            assert_eq!(f.get(3), Some(&Reply::Int(t1)), "{f:?}");
        }
        r => panic!("LOCK.INFO: {r:?}"),
    }
    let t = t1.to_string();
    assert_eq!(
        until_answered(&c, other, &[b"LOCK.RELEASE", b"jobs", b"a", t.as_bytes()]),
        Reply::Int(1)
    );
    let t2 = match until_answered(&c, other, &[b"LOCK.ACQUIRE", b"jobs", b"b", b"300"]) {
        Reply::Int(t) => t,
        r => panic!("not granted: {r:?}"),
    };
    assert!(t2 > t1, "token {t2} after {t1}");
    // Fencing: the released holder's token no longer writes; b's does.
    let (old, cur) = (t1.to_string(), t2.to_string());
    let stale = [
        &b"SET"[..],
        b"{jobs}:data",
        b"a",
        b"FENCE",
        b"jobs",
        old.as_bytes(),
    ];
    match until_answered_or_error(&c, other, &stale) {
        Reply::Error(e) => assert!(e.starts_with("FENCED"), "{e}"),
        r => panic!("stale fenced write accepted: {r:?}"),
    }
    let fresh = [
        &b"SET"[..],
        b"{jobs}:data",
        b"b",
        b"FENCE",
        b"jobs",
        cur.as_bytes(),
    ];
    assert_eq!(
        until_answered(&c, other, &fresh),
        Reply::Simple("OK".into())
    );
    // b never renews: its 300 ms lease ends by the leader's clock.
    let t0 = Instant::now();
    let t3 = loop {
        match until_answered(&c, other, &[b"LOCK.ACQUIRE", b"jobs", b"c", b"60000"]) {
            Reply::Int(t) => break t,
            _ => {
                assert!(t0.elapsed() < Duration::from_secs(10), "lease never ended");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "lease ended early: {:?}",
        t0.elapsed()
    );
    assert!(t3 > t2);
    eprintln!("tokens {t1} {t2} {t3}; expired after {:?}", t0.elapsed());
}

/// WAIT in a cluster: a waiter connected to a follower is handed the lock
/// as soon as the holder releases it through another node; the queue
/// survives the group's leader being killed, and the new leader's expiry
/// of the holder's lease hands the lock to the waiter; a wait that runs
/// out leaves the queue.
#[test]
fn lock_waiters_get_the_lock_on_release_and_across_a_leader_kill() {
    let _serial = serial();
    let (mut c, leader, other) = cluster_with_key(b"q");
    let third = 3 - leader - other;
    let ta = match until_answered(&c, leader, &[b"LOCK.ACQUIRE", b"q", b"a", b"60000"]) {
        Reply::Int(t) => t,
        r => panic!("{r:?}"),
    };
    let port = c.ports[other];
    let wait = |owner: &'static [u8], wait: &'static [u8]| {
        std::thread::spawn(move || {
            let mut conn = Conn::open(port).unwrap();
            let r = conn.cmd(&[b"LOCK.ACQUIRE", b"q", owner, b"60000", b"WAIT", wait]);
            (r.unwrap(), Instant::now())
        })
    };
    let waiters = |c: &TestCluster| match until_answered(c, third, &[b"LOCK.INFO", b"q"]) {
        Reply::Array(f) => match f.get(9) {
            Some(Reply::Int(n)) => *n,
            r => panic!("{r:?}"),
        },
        r => panic!("{r:?}"),
    };
    let b = wait(b"b", b"20000");
    while waiters(&c) < 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = ta.to_string();
    let released = Instant::now();
    assert_eq!(
        until_answered(&c, third, &[b"LOCK.RELEASE", b"q", b"a", t.as_bytes()]),
        Reply::Int(1)
    );
    let (rb, at) = b.join().unwrap();
    let tb = match rb {
        Reply::Int(t) => t,
        r => panic!("{r:?}"),
    };
    assert!(tb > ta);
    eprintln!("cluster hand-off {:?}", at.duration_since(released));
    // A wait that runs out: null, and nobody left queued.
    let (rd, _) = wait(b"d", b"300").join().unwrap();
    assert_eq!(rd, Reply::Bulk(None));
    assert_eq!(waiters(&c), 0);
    // b holds with a short lease it will not renew; e waits on the
    // follower while the group's leader is killed.
    let t = tb.to_string();
    assert_eq!(
        until_answered(
            &c,
            other,
            &[b"LOCK.RENEW", b"q", b"b", t.as_bytes(), b"1500"]
        ),
        Reply::Int(1)
    );
    let e = wait(b"e", b"20000");
    while waiters(&c) < 1 {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.kill(leader);
    let (re, _) = e.join().unwrap();
    match re {
        Reply::Int(te) => assert!(te > tb, "{te} after {tb}"),
        r => panic!("the waiter did not get the lock after failover: {r:?}"),
    }
}

/// One successful grant as a client saw it.
#[derive(Clone, Debug)]
struct Grant {
    lock: usize,
    owner: usize,
    token: i64,
    /// When the acquire was sent, and when its grant arrived.
    sent: Instant,
    got: Instant,
    /// Until when the client may act on it: the acquire's send time plus
    /// 90% of the lease, or the release's send time if earlier.
    valid_until: Instant,
}

/// One fenced write: lock, token, sent, answered, accepted.
#[derive(Clone, Debug)]
struct FencedWrite {
    lock: usize,
    token: i64,
    sent: Instant,
    done: Instant,
    accepted: bool,
}

/// Locks under faults, checked from the clients' records: 8 clients
/// contend on 2 locks (acquire with WAIT through random nodes, a fenced
/// write, sometimes a stall past the lease before it, release) while the
/// locks' group leader is killed and restarted and a node is paused past
/// the lease. Checked: no two grants of a lock overlap in the clients'
/// validity windows; a grant answered before another was asked for has a
/// smaller token; fenced writes accepted in real-time order never go back
/// to an older token (a stale holder's write was refused); and the work
/// got done (grants and refused stale writes both happened).
#[test]
fn locks_stay_exclusive_and_fenced_under_leader_kills_and_pauses() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let names: [&[u8]; 2] = [b"{fl0}", b"{fl1}"];
    let data: [&[u8]; 2] = [b"{fl0}:data", b"{fl1}:data"];
    let lease = Duration::from_millis(1000);
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.ports.clone();
    let mut clients = Vec::new();
    for id in 0..8usize {
        let (stop, ports) = (stop.clone(), ports.clone());
        clients.push(std::thread::spawn(move || {
            let owner = format!("c{id}");
            let mut grants = Vec::new();
            let mut writes = Vec::new();
            let mut n = id;
            while !stop.load(SeqCst) {
                n += 1;
                let lock = n % 2;
                let Ok(mut conn) = Conn::open(ports[n % ports.len()]) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let sent = Instant::now();
                let r = conn.cmd(&[
                    b"LOCK.ACQUIRE",
                    names[lock],
                    owner.as_bytes(),
                    b"1000",
                    b"WAIT",
                    b"2000",
                ]);
                let token = match r {
                    Ok(Reply::Int(t)) => t,
                    _ => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                let got = Instant::now();
                let mut g = Grant {
                    lock,
                    owner: id,
                    token,
                    sent,
                    got,
                    valid_until: sent + lease * 9 / 10,
                };
                // Now and then a holder stalls past its lease (a GC
                // pause) before writing: its write must be refused if
                // another took the lock meanwhile.
                if n % 7 == 0 {
                    std::thread::sleep(lease + Duration::from_millis(300));
                }
                let t = token.to_string();
                let ws = Instant::now();
                let w = conn.cmd(&[
                    b"SET",
                    data[lock],
                    t.as_bytes(),
                    b"FENCE",
                    names[lock],
                    t.as_bytes(),
                ]);
                let accepted = matches!(&w, Ok(Reply::Simple(s)) if s == "OK");
                if matches!(&w, Ok(Reply::Simple(_)) | Ok(Reply::Error(_))) {
                    let refused = matches!(&w, Ok(Reply::Error(e)) if e.starts_with("FENCED"));
                    if accepted || refused {
                        writes.push(FencedWrite {
                            lock,
                            token,
                            sent: ws,
                            done: Instant::now(),
                            accepted,
                        });
                    }
                }
                let rs = Instant::now();
                g.valid_until = g.valid_until.min(rs);
                let _ = conn.cmd(&[b"LOCK.RELEASE", names[lock], owner.as_bytes(), t.as_bytes()]);
                grants.push(g);
            }
            (grants, writes)
        }));
    }
    // The nemesis: kill the locks' leader and restart it; pause a node
    // for longer than the lease.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    for round in 0..3 {
        if let Some(l) = c.leader_of(names[round % 2]) {
            c.kill(l);
            std::thread::sleep(Duration::from_millis(1500));
            c.start(l);
        }
        std::thread::sleep(Duration::from_secs(2));
        let victim = round % 3;
        if let Some(p) = c.nodes[victim].as_ref().map(|ch| ch.id() as i32) {
            unsafe { libc::kill(p, libc::SIGSTOP) };
            std::thread::sleep(Duration::from_millis(1500));
            unsafe { libc::kill(p, libc::SIGCONT) };
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, SeqCst);
    let (mut grants, mut writes) = (Vec::new(), Vec::new());
    for h in clients {
        let (g, w) = h.join().unwrap();
        grants.extend(g);
        writes.extend(w);
    }
    eprintln!(
        "{} grants, {} fenced writes ({} refused) in {:?}",
        grants.len(),
        writes.len(),
        writes.iter().filter(|w| !w.accepted).count(),
        t0.elapsed()
    );
    assert!(
        grants.len() > 50,
        "too little work: {} grants",
        grants.len()
    );
    assert!(
        writes.iter().any(|w| !w.accepted),
        "no stale write was ever refused"
    );
    for lock in 0..2 {
        let mut gs: Vec<&Grant> = grants.iter().filter(|g| g.lock == lock).collect();
        gs.sort_by_key(|g| g.got);
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                if a.token == b.token {
                    // The same grant seen twice: its owner asked again
                    // while holding it (a release lost to a failover);
                    // that renews it with the same token. Never another
                    // owner's.
                    assert_eq!(
                        a.owner, b.owner,
                        "lock {lock}: one token granted to two owners"
                    );
                    continue;
                }
                // A grant answered before another was asked for has the
                // smaller token.
                if a.got < b.sent {
                    assert!(
                        a.token < b.token,
                        "lock {lock}: tokens went back: {a:?} then {b:?}"
                    );
                }
                if b.got < a.sent {
                    assert!(
                        b.token < a.token,
                        "lock {lock}: tokens went back: {b:?} then {a:?}"
                    );
                }
                // Validity windows [got, valid_until] never overlap.
                let overlap = a.got < b.valid_until && b.got < a.valid_until;
                assert!(!overlap, "lock {lock}: grants overlap: {a:?} and {b:?}");
            }
        }
        // Accepted fenced writes in real-time order never go back to an
        // older token.
        let ws: Vec<&FencedWrite> = writes
            .iter()
            .filter(|w| w.lock == lock && w.accepted)
            .collect();
        for a in &ws {
            for b in &ws {
                if a.done < b.sent {
                    assert!(
                        a.token <= b.token,
                        "lock {lock}: a stale write was accepted: {a:?} then {b:?}"
                    );
                }
            }
        }
    }
}

/// MULTI/EXEC/WATCH in a durable 3-node cluster: one client per node
/// (so two of them go through proxies) moves units from `{tx}right` to
/// `{tx}left` with WATCH retry loops while the group's leader is killed.
/// Every read sees both keys of a transaction or neither (one log entry),
/// no acknowledged transaction is lost and none applies twice: the final
/// count lies between the acknowledged ones and those plus the ones whose
/// outcome was unknown. Keys of two groups are refused at queue time.
#[test]
fn transactions_stay_atomic_and_counted_across_a_leader_kill() {
    let _serial = serial();
    let mut c = TestCluster::new(3, "durable");
    let num = |r: &Reply| match r {
        Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).parse::<i64>().unwrap(),
        Reply::Bulk(None) => 0,
        other => panic!("{other:?}"),
    };
    // CROSSSLOT at queue time, through any node.
    {
        let mut conn = Conn::open(c.ports[0]).unwrap();
        let mut other = None;
        for i in 0..64 {
            let k = format!("other-{i}");
            if c.leader_of(k.as_bytes()).is_some() {
                let g1 = conn.cmd(&[b"CLUSTER", b"KEYSLOT", k.as_bytes()]).unwrap();
                let g2 = conn.cmd(&[b"CLUSTER", b"KEYSLOT", b"{tx}left"]).unwrap();
                // 16 groups: slots 1024 apart are in different groups.
                if let (Reply::Int(a), Reply::Int(b)) = (g1, g2) {
                    if a / 1024 != b / 1024 {
                        other = Some(k);
                        break;
                    }
                }
            }
        }
        let other = other.expect("a key of another group");
        assert_eq!(conn.cmd(&[b"MULTI"]).unwrap(), Reply::Simple("OK".into()));
        conn.cmd(&[b"SET", b"{tx}left", b"0"]).unwrap();
        let r = conn.cmd(&[b"SET", other.as_bytes(), b"0"]).unwrap();
        assert!(
            matches!(&r, Reply::Error(e) if e.starts_with("CROSSSLOT")),
            "{r:?}"
        );
        let r = conn.cmd(&[b"EXEC"]).unwrap();
        assert!(
            matches!(&r, Reply::Error(e) if e.starts_with("EXECABORT")),
            "{r:?}"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.ports.clone();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (stop, port) = (stop.clone(), ports[i]);
            std::thread::spawn(move || {
                let (mut acked, mut unknown, mut aborted, mut torn) = (0i64, 0i64, 0u64, 0u64);
                let deadline = Instant::now() + Duration::from_secs(40);
                let mut conn: Option<Conn> = None;
                while !stop.load(SeqCst) && Instant::now() < deadline && acked < 5000 {
                    let Some(cn) = conn.as_mut() else {
                        conn = Conn::open(port).ok();
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let step = (|| -> std::io::Result<Option<Reply>> {
                        if let Reply::Error(_) = cn.cmd(&[b"WATCH", b"{tx}left", b"{tx}right"])? {
                            return Ok(None);
                        }
                        let Reply::Array(v) = cn.cmd(&[b"MGET", b"{tx}left", b"{tx}right"])? else {
                            return Ok(None);
                        };
                        let (l, r) = (num(&v[0]), num(&v[1]));
                        if l != -r {
                            torn += 1;
                        }
                        cn.cmd(&[b"MULTI"])?;
                        cn.cmd(&[b"SET", b"{tx}left", (l + 1).to_string().as_bytes()])?;
                        cn.cmd(&[b"SET", b"{tx}right", (r - 1).to_string().as_bytes()])?;
                        cn.cmd(&[b"EXEC"]).map(Some)
                    })();
                    match step {
                        Ok(Some(Reply::Array(_))) => acked += 1,
                        Ok(Some(Reply::Bulk(None))) => aborted += 1,
                        // Nothing was applied: retry.
                        Ok(Some(Reply::Error(e))) if e.starts_with("TRYAGAIN") => {
                            let _ = cn.cmd(&[b"DISCARD"]);
                        }
                        Ok(Some(Reply::Error(e))) if e.starts_with("UNKNOWN") => unknown += 1,
                        Ok(Some(other)) => panic!("EXEC answered {other:?}"),
                        Ok(None) => {
                            let _ = cn.cmd(&[b"UNWATCH"]);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        // The link broke: EXEC may have been sent.
                        Err(_) => {
                            unknown += 1;
                            conn = None;
                        }
                    }
                }
                (acked, unknown, aborted, torn)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let leader = c.leader_of(b"{tx}left").expect("a leader");
    c.kill(leader);
    std::thread::sleep(Duration::from_millis(1500));
    c.start(leader);
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, SeqCst);
    let results: Vec<_> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    c.wait_ok();
    let acked: i64 = results.iter().map(|r| r.0).sum();
    let unknown: i64 = results.iter().map(|r| r.1).sum();
    let torn: u64 = results.iter().map(|r| r.3).sum();
    eprintln!("transactions (acked, unknown, aborted, torn reads) per client: {results:?}");
    assert_eq!(torn, 0, "a read saw half a transaction");
    assert!(
        acked >= 30,
        "too few transactions went through: {results:?}"
    );
    let mut conn = Conn::open(c.ports[(leader + 1) % 3]).unwrap();
    let Reply::Array(v) =
        until_answered(&c, (leader + 1) % 3, &[b"MGET", b"{tx}left", b"{tx}right"])
    else {
        panic!("MGET")
    };
    let (l, r) = (num(&v[0]), num(&v[1]));
    assert_eq!(l, -r, "the keys moved apart");
    assert!(
        acked <= l && l <= acked + unknown,
        "{l} units moved, {acked} acknowledged, {unknown} unknown"
    );
    let _ = conn.cmd(&[b"PING"]);
    c.converged_digests();
}

/// A semaphore in a 3-node cluster, through every node: permits shared up
/// to the limit; a holder whose lease is not renewed is ended by the
/// leader's clock (the expiry names its owner) and the waiter queued
/// through another node is admitted at once, with a larger token; SEM.INFO
/// agrees on every node.
#[test]
fn a_semaphore_admits_a_waiter_when_a_holders_lease_ends() {
    let _serial = serial();
    let c = TestCluster::new(3, "durable");
    let name: &[u8] = b"{sem}pool";
    let token = |r: Reply| match r {
        Reply::Int(t) => t,
        other => panic!("not a token: {other:?}"),
    };
    let ta = token(until_answered(
        &c,
        0,
        &[b"SEM.ACQUIRE", name, b"a", b"1", b"2", b"400"],
    ));
    let tb = token(until_answered(
        &c,
        1,
        &[b"SEM.ACQUIRE", name, b"b", b"1", b"2", b"60000"],
    ));
    assert!(tb > ta);
    let port = c.ports[2];
    let waiter = std::thread::spawn(move || {
        let mut conn = Conn::open(port).unwrap();
        let sent = Instant::now();
        let r = conn
            .cmd(&[
                b"SEM.ACQUIRE",
                b"{sem}pool",
                b"c",
                b"1",
                b"2",
                b"60000",
                b"WAIT",
                b"20000",
            ])
            .unwrap();
        (r, sent.elapsed())
    });
    let (r, took) = waiter.join().unwrap();
    let tc = token(r);
    assert!(tc > tb, "{tc} after {tb}");
    assert!(
        took < Duration::from_secs(5),
        "admitted {took:?} after asking (lease 400 ms)"
    );
    for i in 0..3 {
        let Reply::Array(f) = until_answered(&c, i, &[b"SEM.INFO", name]) else {
            panic!("SEM.INFO")
        };
        assert_eq!(f[1], Reply::Int(2), "limit on node {}", i + 1);
        assert_eq!(f[3], Reply::Int(2), "used on node {}", i + 1);
    }
    // a's token is dead; b's and c's fence.
    for (t, ok) in [(ta, false), (tb, true), (tc, true)] {
        let r = until_answered_or_error(&c, 0, &[b"LOCK.FENCE", name, t.to_string().as_bytes()]);
        assert_eq!(matches!(r, Reply::Simple(_)), ok, "token {t}: {r:?}");
    }
    c.converged_digests();
}

/// INFO counts what a node forwards and redirects: a plain client's
/// write through a non-leader is forwarded, a cluster-aware client (one
/// that asked CLUSTER SLOTS) is redirected, and the leader does neither.
#[test]
fn forwarded_and_redirected_requests_are_counted() {
    let _serial = serial();
    let (c, leader, proxy) = cluster_with_key(b"fw");
    let mut p = Conn::open(c.ports[proxy]).unwrap();
    let mut l = Conn::open(c.ports[leader]).unwrap();
    let before = info_field(&mut p, b"cluster", "cairn_requests_forwarded");
    for _ in 0..5 {
        assert_eq!(
            p.cmd(&[b"SET", b"fw", b"1"]).unwrap(),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            l.cmd(&[b"SET", b"fw", b"1"]).unwrap(),
            Reply::Simple("OK".into())
        );
    }
    assert_eq!(
        info_field(&mut p, b"cluster", "cairn_requests_forwarded"),
        before + 5
    );
    assert_eq!(
        info_field(&mut l, b"cluster", "cairn_requests_forwarded"),
        0
    );
    let mut aware = Conn::open(c.ports[proxy]).unwrap();
    assert!(matches!(
        aware.cmd(&[b"CLUSTER", b"SLOTS"]).unwrap(),
        Reply::Array(_)
    ));
    let r = aware.cmd(&[b"SET", b"fw", b"2"]).unwrap();
    assert!(
        matches!(&r, Reply::Error(e) if e.starts_with("MOVED")),
        "{r:?}"
    );
    assert_eq!(info_field(&mut p, b"cluster", "cairn_moved_replies"), 1);
    assert_eq!(
        info_field(&mut p, b"cluster", "cairn_requests_forwarded"),
        before + 5
    );
}

/// Hash writes are replicated like string writes: through the leader or
/// a proxy they reach every replica (equal digests, which cover every
/// field), invalid ones are answered without being proposed, hash reads
/// work inside a transaction, and after the leader dies the new one
/// holds the same fields.
#[test]
fn hash_writes_replicate_and_survive_a_leader_change() {
    let _serial = serial();
    let (mut c, leader, proxy) = cluster_with_key(b"{hk}:s");
    let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
    for (node, argv, want) in [
        (
            leader,
            &[&b"HSET"[..], b"{hk}", b"a", b"1", b"b", b"2"][..],
            Reply::Int(2),
        ),
        (proxy, &[b"HSET", b"{hk}", b"c", b"3"], Reply::Int(1)),
        (proxy, &[b"HINCRBY", b"{hk}", b"a", b"41"], Reply::Int(42)),
        (leader, &[b"HDEL", b"{hk}", b"b", b"nope"], Reply::Int(1)),
        (proxy, &[b"HSETNX", b"{hk}", b"c", b"9"], Reply::Int(0)),
        (
            proxy,
            &[b"HINCRBYFLOAT", b"{hk}", b"f", b"1.5"],
            bulk("1.5"),
        ),
        (proxy, &[b"HGET", b"{hk}", b"a"], bulk("42")),
    ] {
        assert_eq!(until_answered_or_error(&c, node, argv), want, "{argv:?}");
    }
    let before = c.converged_digests();
    for (argv, want) in [
        (
            &[&b"HSET"[..], b"{hk}", b"a", b"1", b"b"][..],
            "ERR wrong number of arguments for 'hset' command",
        ),
        (
            &[b"HINCRBY", b"{hk}", b"a", b"x"],
            "ERR value is not an integer or out of range",
        ),
        (
            &[b"HINCRBYFLOAT", b"{hk}", b"a", b"inf"],
            "ERR value is NaN or Infinity",
        ),
        (
            &[b"HSET", b"{hk}:s", b"f", b"v"],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
    ] {
        match until_answered_or_error(&c, proxy, argv) {
            Reply::Error(e) => assert_eq!(e, want, "{argv:?}"),
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    // The WRONGTYPE write was proposed (a data error, decided at apply:
    // the applied index moves) but changed nothing: the state digests
    // (group, applied index, digest per line) stay.
    assert_eq!(digest_state(&c.converged_digests()), digest_state(&before));
    let mut conn = Conn::open(c.ports[proxy]).unwrap();
    for argv in [
        &[&b"MULTI"[..]][..],
        &[b"HSET", b"{hk}", b"t", b"1"],
        &[b"HLEN", b"{hk}"],
        &[b"EXEC"],
    ] {
        conn.send(argv).unwrap();
    }
    let replies: Vec<Reply> = (0..4).map(|_| conn.read().unwrap()).collect();
    assert_eq!(
        replies[3],
        Reply::Array(vec![Reply::Int(1), Reply::Int(4)]),
        "{replies:?}"
    );
    let all = until_answered(&c, proxy, &[b"HGETALL", b"{hk}"]);
    let digests = c.converged_digests();
    let leader = c.leader_of(b"{hk}").expect("a leader");
    c.kill(leader);
    let other = c.live().into_iter().find(|&i| i != leader).unwrap();
    assert_eq!(until_answered(&c, other, &[b"HGETALL", b"{hk}"]), all);
    assert!(!digests.is_empty());
}

/// INFO cluster field `name` of the node on `port`.
fn cluster_info_field(port: u16, name: &str) -> Option<String> {
    info_value(&mut Conn::open(port).ok()?, b"cluster", name)
}

/// Peer authentication with real processes: nodes 1 and 2 share the
/// cluster secret, node 3 has another. The two form the cluster and take
/// writes; node 3 never gets a leader for anything (it cannot vote, be
/// voted for or receive an append), both sides count refused handshakes;
/// restarted with the right secret, node 3 joins and serves the data.
#[test]
fn a_node_with_the_wrong_cluster_secret_cannot_join_until_it_has_the_right_one() {
    let _serial = serial();
    let secrets = tempfile::tempdir().unwrap();
    let good = secrets.path().join("good");
    let bad = secrets.path().join("bad");
    std::fs::write(&good, "the right secret, 0123456789\n").unwrap();
    std::fs::write(&bad, "some other secret, 987654321\n").unwrap();
    let arg = |p: &std::path::Path| {
        vec![
            "--cluster-secret-file".to_string(),
            p.to_string_lossy().into_owned(),
        ]
    };
    let mut c = TestCluster::start_all(3, "volatile", vec![arg(&good), arg(&good), arg(&bad)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_cluster_ok(c.ports[0], deadline);
    wait_cluster_ok(c.ports[1], deadline);
    let mut conn = Conn::open(c.ports[0]).unwrap();
    for i in 0..50 {
        let k = format!("k{i}");
        let r = conn.cmd(&[b"SET", k.as_bytes(), b"v"]).unwrap();
        assert_eq!(text(&r), "OK");
    }
    // Node 3 stays cut off: no leader known for any group, for a while.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let without = cluster_info_field(c.ports[2], "cairn_groups_without_leader").unwrap();
        let groups = cluster_info_field(c.ports[2], "cairn_groups").unwrap();
        assert_eq!(
            without, groups,
            "node 3 learned a leader without the secret"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = |i: usize| {
        cluster_info_field(c.ports[i], "cairn_peer_auth_failures")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(refused(2) > 0, "node 3 counted no refused handshake");
    assert!(
        refused(0) + refused(1) > 0,
        "nodes 1 and 2 counted no refused handshake"
    );
    assert_eq!(
        cluster_info_field(c.ports[0], "cairn_peer_auth").as_deref(),
        Some("secret")
    );

    // The right secret: node 3 joins and serves what was written.
    c.kill(2);
    c.extra[2] = arg(&good);
    c.start(2);
    c.wait_ok();
    let mut conn3 = Conn::open(c.ports[2]).unwrap();
    for i in 0..50 {
        let k = format!("k{i}");
        let r = conn3.cmd(&[b"GET", k.as_bytes()]).unwrap();
        assert_eq!(r, Reply::Bulk(Some(b"v".to_vec())), "{k} through node 3");
    }
}

/// The (group, digest) of each line of CLUSTER DIGEST, without the
/// applied index (which a proposed no-op write moves).
fn digest_state(d: &str) -> Vec<(String, String)> {
    d.lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?.to_string(), w.nth(1)?.to_string()))
        })
        .collect()
}

/// Sets on a 3-node durable cluster: writes through the leader and a
/// proxy (SPOP's draws included) converge to equal digests on every
/// replica, invalid ones are answered before proposing, multi-key
/// commands need one group, set commands work inside MULTI/EXEC, and
/// after the leader is killed another node answers with the same members.
#[test]
fn set_writes_replicate_and_survive_a_leader_change() {
    let _serial = serial();
    let (mut c, leader, proxy) = cluster_with_key(b"{sk}:s");
    let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut sadd_big: Vec<&[u8]> = vec![b"SADD", b"{sk}:big"];
    sadd_big.extend(members.iter().map(|m| m.as_bytes()));
    assert_eq!(
        until_answered_or_error(&c, leader, &sadd_big),
        Reply::Int(200)
    );
    for (node, argv, want) in [
        (
            leader,
            &[&b"SADD"[..], b"{sk}", b"1", b"2", b"3"][..],
            Reply::Int(3),
        ),
        (proxy, &[b"SADD", b"{sk}", b"x", b"2"], Reply::Int(1)),
        (leader, &[b"SREM", b"{sk}", b"1", b"nope"], Reply::Int(1)),
        (proxy, &[b"SMOVE", b"{sk}", b"{sk}:d", b"x"], Reply::Int(1)),
        (proxy, &[b"SADD", b"{sk}:o", b"2", b"9"], Reply::Int(2)),
        (
            proxy,
            &[b"SUNIONSTORE", b"{sk}:u", b"{sk}", b"{sk}:o"],
            Reply::Int(3),
        ),
        (
            leader,
            &[b"SINTERSTORE", b"{sk}:i", b"{sk}", b"{sk}:o"],
            Reply::Int(1),
        ),
        (
            proxy,
            &[b"SDIFFSTORE", b"{sk}:f", b"{sk}:u", b"{sk}:o"],
            Reply::Int(1),
        ),
        (proxy, &[b"SISMEMBER", b"{sk}:d", b"x"], Reply::Int(1)),
        (
            proxy,
            &[b"SINTERCARD", b"2", b"{sk}", b"{sk}:o", b"LIMIT", b"5"],
            Reply::Int(1),
        ),
        (proxy, &[b"SCARD", b"{sk}:u"], Reply::Int(3)),
        (proxy, &[b"OBJECT", b"ENCODING", b"{sk}:u"], bulk("intset")),
        (leader, &[b"SPOP", b"{sk}:big"], Reply::Int(-1)),
        (proxy, &[b"SPOP", b"{sk}:big", b"50"], Reply::Int(-1)),
        (proxy, &[b"SCARD", b"{sk}:big"], Reply::Int(149)),
    ] {
        let got = until_answered_or_error(&c, node, argv);
        if want == Reply::Int(-1) {
            // A random draw: any member, the same on every replica (the
            // digests below).
            assert!(!matches!(got, Reply::Error(_)), "{argv:?}: {got:?}");
        } else {
            assert_eq!(got, want, "{argv:?}");
        }
    }
    let before = c.converged_digests();
    for (argv, want) in [
        (
            &[&b"SADD"[..], b"{sk}"][..],
            "ERR wrong number of arguments for 'sadd' command",
        ),
        (
            &[b"SPOP", b"{sk}", b"-1"],
            "ERR value is out of range, must be positive",
        ),
        (&[b"SPOP", b"{sk}", b"1", b"2"], "ERR syntax error"),
        (
            &[b"SADD", b"{sk}:s", b"v"],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (
            &[b"SUNIONSTORE", b"a", b"b"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"SMOVE", b"a", b"b", b"x"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"SINTERCARD", b"2", b"a", b"b"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"SINTERCARD", b"0", b"a"],
            "ERR numkeys should be greater than 0",
        ),
    ] {
        match until_answered_or_error(&c, proxy, argv) {
            Reply::Error(e) => assert_eq!(e, want, "{argv:?}"),
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    // The WRONGTYPE write was proposed and changed nothing; the others
    // were never proposed: the state digests stay.
    assert_eq!(digest_state(&c.converged_digests()), digest_state(&before));
    let mut conn = Conn::open(c.ports[proxy]).unwrap();
    for argv in [
        &[&b"MULTI"[..]][..],
        &[b"SADD", b"{sk}", b"t"],
        &[b"SPOP", b"{sk}:big"],
        &[b"SCARD", b"{sk}"],
        &[b"EXEC"],
    ] {
        conn.send(argv).unwrap();
    }
    let replies: Vec<Reply> = (0..5).map(|_| conn.read().unwrap()).collect();
    match &replies[4] {
        Reply::Array(r) if r.len() == 3 => {
            assert_eq!(r[0], Reply::Int(1));
            assert!(matches!(r[1], Reply::Bulk(Some(_))), "{r:?}");
            assert_eq!(r[2], Reply::Int(3));
        }
        other => panic!("{other:?}"),
    }
    let all = until_answered(&c, proxy, &[b"SMEMBERS", b"{sk}:big"]);
    let digests = c.converged_digests();
    assert!(!digests.is_empty());
    let leader = c.leader_of(b"{sk}").expect("a leader");
    c.kill(leader);
    let other = c.live().into_iter().find(|&i| i != leader).unwrap();
    assert_eq!(until_answered(&c, other, &[b"SMEMBERS", b"{sk}:big"]), all);
    assert_eq!(
        until_answered(&c, other, &[b"SMEMBERS", b"{sk}"]),
        Reply::Array(vec![bulk("2"), bulk("3"), bulk("t")])
    );
    // The new leader's SPOP draws like the others would.
    assert!(matches!(
        until_answered(&c, other, &[b"SPOP", b"{sk}:big", b"3"]),
        Reply::Array(ref a) if a.len() == 3
    ));
    assert!(!c.converged_digests().is_empty());
}

/// Bitmaps on a 3-node durable cluster: SETBIT, BITFIELD and BITOP
/// writes through the leader and a proxy converge to equal digests;
/// reads (GETBIT, BITCOUNT, BITPOS, LCS, BITFIELD_RO and a BITFIELD of
/// GETs only) and invalid writes never reach the log (no applied index
/// moves); BITOP and LCS need one group; a READONLY connection reads a
/// replica with a GET-only BITFIELD; transactions hold bit commands; the
/// bits survive a leader change.
#[test]
fn bitmap_writes_replicate_and_bitfield_gets_are_reads() {
    let _serial = serial();
    let (mut c, leader, proxy) = cluster_with_key(b"{bk}");
    let int = Reply::Int;
    let arr = Reply::Array;
    for (node, argv, want) in [
        (leader, &[&b"SETBIT"[..], b"{bk}:a", b"7", b"1"][..], int(0)),
        (proxy, &[b"SETBIT", b"{bk}:a", b"100", b"1"], int(0)),
        (
            proxy,
            &[
                b"BITFIELD",
                b"{bk}:b",
                b"SET",
                b"u8",
                b"0",
                b"255",
                b"INCRBY",
                b"i5",
                b"8",
                b"20",
            ],
            arr(vec![int(0), int(-12)]),
        ),
        (
            leader,
            &[b"BITOP", b"XOR", b"{bk}:x", b"{bk}:a", b"{bk}:b"],
            int(13),
        ),
        // "1" is the byte 0x31: its first bit is clear.
        (proxy, &[b"SETBIT", b"{bk}", b"0", b"1"], int(0)),
    ] {
        assert_eq!(until_answered_or_error(&c, node, argv), want, "{argv:?}");
    }
    let before = c.converged_digests();
    for node in [leader, proxy] {
        for (argv, want) in [
            (&[&b"GETBIT"[..], b"{bk}:a", b"100"][..], int(1)),
            (&[b"BITCOUNT", b"{bk}:x"], int(10)),
            (&[b"BITPOS", b"{bk}:x", b"0"], int(7)),
            (&[b"LCS", b"{bk}:a", b"{bk}:x", b"LEN"], int(11)),
            (
                &[b"BITFIELD", b"{bk}:b", b"GET", b"u8", b"0"],
                arr(vec![int(255)]),
            ),
            (
                &[
                    b"BITFIELD",
                    b"{bk}:b",
                    b"OVERFLOW",
                    b"SAT",
                    b"GET",
                    b"i5",
                    b"8",
                ],
                arr(vec![int(-12)]),
            ),
            (
                &[b"BITFIELD_RO", b"{bk}:b", b"GET", b"i5", b"8"],
                arr(vec![int(-12)]),
            ),
        ] {
            assert_eq!(until_answered_or_error(&c, node, argv), want, "{argv:?}");
        }
        for (argv, want) in [
            (
                &[&b"SETBIT"[..], b"{bk}:a", b"1", b"2"][..],
                "ERR bit is not an integer or out of range",
            ),
            (
                &[b"SETBIT", b"{bk}:a", b"-1", b"1"],
                "ERR bit offset is not an integer or out of range",
            ),
            (
                &[b"BITFIELD", b"{bk}:a", b"SET", b"i8", b"0", b"x"],
                "ERR value is not an integer or out of range",
            ),
            (
                &[b"BITFIELD", b"{bk}:a", b"GET", b"u64", b"0"],
                "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
            ),
            (
                &[b"BITFIELD_RO", b"{bk}:a", b"SET", b"i8", b"0", b"1"],
                "ERR BITFIELD_RO only supports the GET subcommand",
            ),
            (
                &[b"BITOP", b"NOT", b"{bk}:d", b"{bk}:a", b"{bk}:b"],
                "ERR BITOP NOT must be called with a single source key.",
            ),
            (
                &[b"BITOP", b"AND", b"a", b"b"],
                "CROSSSLOT Keys in request don't hash to the same slot",
            ),
            (
                &[b"LCS", b"a", b"b"],
                "CROSSSLOT Keys in request don't hash to the same slot",
            ),
        ] {
            match until_answered_or_error(&c, node, argv) {
                Reply::Error(e) => assert_eq!(e, want, "{argv:?}"),
                other => panic!("{argv:?}: {other:?}"),
            }
        }
    }
    assert_eq!(
        c.converged_digests(),
        before,
        "a read or an invalid write was proposed"
    );
    // A replica's own copy, through READONLY.
    let follower = c
        .live()
        .into_iter()
        .find(|&i| i != leader)
        .expect("a follower");
    let mut ro = Conn::open(c.ports[follower]).unwrap();
    assert_eq!(ro.cmd(&[b"READONLY"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(
        ro.cmd(&[
            b"BITFIELD",
            b"{bk}:b",
            b"GET",
            b"u8",
            b"0",
            b"GET",
            b"u4",
            b"8"
        ])
        .unwrap(),
        arr(vec![int(255), int(10)])
    );
    assert_eq!(ro.cmd(&[b"GETBIT", b"{bk}:a", b"7"]).unwrap(), int(1));
    assert_eq!(
        ro.cmd(&[b"LCS", b"{bk}:a", b"{bk}:x", b"LEN"]).unwrap(),
        int(11)
    );
    // Transactions hold bit commands.
    let mut conn = Conn::open(c.ports[proxy]).unwrap();
    for argv in [
        &[&b"MULTI"[..]][..],
        &[b"SETBIT", b"{bk}:m", b"1", b"1"],
        &[b"BITFIELD", b"{bk}:m", b"GET", b"u8", b"0"],
        &[b"BITCOUNT", b"{bk}:m"],
        &[b"LCS", b"{bk}:m", b"{bk}:m", b"LEN"],
        &[b"EXEC"],
    ] {
        conn.send(argv).unwrap();
    }
    let replies: Vec<Reply> = (0..6).map(|_| conn.read().unwrap()).collect();
    assert_eq!(
        replies[5],
        arr(vec![int(0), arr(vec![int(64)]), int(1), int(1)])
    );
    let x = until_answered(&c, proxy, &[b"GET", b"{bk}:x"]);
    assert!(!c.converged_digests().is_empty());
    let leader = c.leader_of(b"{bk}").expect("a leader");
    c.kill(leader);
    let other = c.live().into_iter().find(|&i| i != leader).unwrap();
    assert_eq!(until_answered(&c, other, &[b"GET", b"{bk}:x"]), x);
    assert_eq!(
        until_answered(&c, other, &[b"SETBIT", b"{bk}:x", b"7", b"1"]),
        int(0)
    );
    assert_eq!(
        until_answered(&c, other, &[b"BITCOUNT", b"{bk}:x"]),
        int(11)
    );
    assert!(!c.converged_digests().is_empty());
}

/// Polls `f` every 100 ms until it is true (at most 20 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Users are cluster-wide (docs/design/acl.md): made on node 1 through
/// the meta group, they log in on node 3 with their permissions; deleted
/// on node 3, they are gone on node 1.
#[test]
fn a_user_made_on_one_node_authenticates_on_every_node() {
    let _serial = serial();
    let c = TestCluster::new(3, "volatile");
    let ok = Reply::Simple("OK".into());
    let mut a = Conn::open(c.ports[0]).unwrap();
    let made = a.cmd(&[
        b"ACL", b"SETUSER", b"carol", b"on", b">pw", b"~c*", b"+get", b"+set",
    ]);
    assert_eq!(made.unwrap(), ok);
    // Installed here before the reply: a login right after it works.
    let mut a2 = Conn::open(c.ports[0]).unwrap();
    assert_eq!(a2.cmd(&[b"AUTH", b"carol", b"pw"]).unwrap(), ok);
    let bad = a.cmd(&[b"ACL", b"SETUSER", b"carol", b"+nosuch"]).unwrap();
    assert!(
        text(&bad).contains("Unknown command or category name in ACL"),
        "{bad:?}"
    );
    let mut on_c = None;
    eventually("carol logs in on node 3", || {
        let mut conn = Conn::open(c.ports[2]).unwrap();
        let logged_in = conn.cmd(&[b"AUTH", b"carol", b"pw"]).unwrap() == ok;
        if logged_in {
            on_c = Some(conn);
        }
        logged_in
    });
    let mut conn = on_c.unwrap();
    // Her permissions came along: a key of hers (wherever its leader is)...
    assert_eq!(conn.cmd(&[b"SET", b"c1", b"v"]).unwrap(), ok);
    assert_eq!(
        conn.cmd(&[b"GET", b"c1"]).unwrap(),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    // ...but no other key and no other command.
    let denied = conn.cmd(&[b"SET", b"x", b"v"]).unwrap();
    assert!(text(&denied).starts_with("NOPERM"), "{denied:?}");
    let denied = conn.cmd(&[b"DEL", b"c1"]).unwrap();
    assert!(text(&denied).contains("'del' command"), "{denied:?}");
    let mut admin_c = Conn::open(c.ports[2]).unwrap();
    let deleted = admin_c.cmd(&[b"ACL", b"DELUSER", b"carol", b"carol", b"nobody"]);
    assert_eq!(deleted.unwrap(), Reply::Int(1));
    eventually("carol is gone on node 1", || {
        let mut conn = Conn::open(c.ports[0]).unwrap();
        text(&conn.cmd(&[b"AUTH", b"carol", b"pw"]).unwrap()).starts_with("WRONGPASS")
    });
    let load = a.cmd(&[b"ACL", b"LOAD"]).unwrap();
    assert!(
        text(&load).contains("not supported in cluster mode"),
        "{load:?}"
    );
}

/// Waits until node `i` reports `n` blocked clients (INFO clients).
fn wait_blocked(c: &TestCluster, i: usize, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let blocked = match until_answered(c, i, &[b"INFO", b"clients"]) {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b)
                .lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(-1),
            _ => -1,
        };
        if blocked == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i}: {blocked} blocked, want {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lists on a durable 3-node cluster: writes through the leader and a
/// proxy converge to equal digests; BLPOP blocked on one node is woken
/// by an RPUSH sent to another, and its pop is a replicated write; and
/// after the leader is killed, a client still blocked on a surviving
/// node is served by a push the new leader commits.
#[test]
fn list_writes_replicate_and_blpop_is_woken_across_nodes() {
    let _serial = serial();
    let (mut c, leader, proxy) = cluster_with_key(b"{lk}:s");
    let third = 3 - leader - proxy;
    let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
    for (node, argv, want) in [
        (
            leader,
            &[&b"RPUSH"[..], b"{lk}", b"a", b"b", b"c"][..],
            Reply::Int(3),
        ),
        (proxy, &[b"LPUSH", b"{lk}", b"z"], Reply::Int(4)),
        (proxy, &[b"LPOP", b"{lk}"], bulk("z")),
        (
            third,
            &[b"LMOVE", b"{lk}", b"{lk}:d", b"RIGHT", b"LEFT"],
            bulk("c"),
        ),
        (
            proxy,
            &[b"LSET", b"{lk}", b"0", b"A"],
            Reply::Simple("OK".into()),
        ),
        (
            leader,
            &[b"LINSERT", b"{lk}", b"AFTER", b"A", b"m"],
            Reply::Int(3),
        ),
        (
            proxy,
            &[b"LRANGE", b"{lk}", b"0", b"-1"],
            Reply::Array(vec![bulk("A"), bulk("m"), bulk("b")]),
        ),
        (
            third,
            &[b"LMPOP", b"2", b"{lk}:none", b"{lk}:d", b"LEFT"],
            Reply::Array(vec![bulk("{lk}:d"), Reply::Array(vec![bulk("c")])]),
        ),
    ] {
        assert_eq!(until_answered_or_error(&c, node, argv), want, "{argv:?}");
    }
    for (argv, want) in [
        (
            &[&b"LPUSH"[..], b"{lk}:s", b"x"][..],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (&[b"BLPOP", b"{lk}", b"-1"], "ERR timeout is negative"),
        (
            &[b"LMPOP", b"0", b"{lk}", b"LEFT"],
            "ERR numkeys should be greater than 0",
        ),
    ] {
        match until_answered_or_error(&c, proxy, argv) {
            Reply::Error(e) => assert_eq!(e, want, "{argv:?}"),
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    // A blocking pop that finds an element answers at once; one that
    // times out answers null.
    assert_eq!(
        until_answered(&c, proxy, &[b"BRPOP", b"{lk}", b"0"]),
        Reply::Array(vec![bulk("{lk}"), bulk("b")])
    );
    assert_eq!(
        until_answered_or_error(&c, third, &[b"BLPOP", b"{lk}:none", b"0.2"]),
        Reply::Bulk(None)
    );
    // Blocked on the proxy, woken by a push sent to the third node.
    let mut waiter = Conn::open(c.ports[proxy]).unwrap();
    waiter.send(&[b"BLPOP", b"{lk}:q", b"0"]).unwrap();
    wait_blocked(&c, proxy, 1);
    assert_eq!(
        until_answered(&c, third, &[b"RPUSH", b"{lk}:q", b"job"]),
        Reply::Int(1)
    );
    assert_eq!(
        waiter.read().unwrap(),
        Reply::Array(vec![bulk("{lk}:q"), bulk("job")])
    );
    wait_blocked(&c, proxy, 0);
    assert_eq!(
        until_answered(&c, leader, &[b"EXISTS", b"{lk}:q"]),
        Reply::Int(0)
    );
    let digests = c.converged_digests();
    assert!(!digests.is_empty());
    // The leader goes while a client is blocked on the proxy: the push
    // the new leader commits wakes it, and its pop goes through the log.
    waiter
        .send(&[b"BLMOVE", b"{lk}:f", b"{lk}:g", b"LEFT", b"RIGHT", b"0"])
        .unwrap();
    wait_blocked(&c, proxy, 1);
    let all = until_answered(&c, proxy, &[b"LRANGE", b"{lk}", b"0", b"-1"]);
    c.kill(leader);
    assert_eq!(
        until_answered(&c, third, &[b"RPUSH", b"{lk}:f", b"after"]),
        Reply::Int(1)
    );
    assert_eq!(waiter.read().unwrap(), bulk("after"));
    assert_eq!(
        until_answered(&c, third, &[b"LRANGE", b"{lk}:g", b"0", b"-1"]),
        Reply::Array(vec![bulk("after")])
    );
    assert_eq!(
        until_answered(&c, third, &[b"LRANGE", b"{lk}", b"0", b"-1"]),
        all
    );
    assert_eq!(
        until_answered(&c, third, &[b"EXISTS", b"{lk}:f"]),
        Reply::Int(0)
    );
}

/// Sorted sets on a 3-node durable cluster: writes through the leader, a
/// proxy and the third node converge to equal digests, scores come back
/// in Redis' form (RESP2 bulk strings, `%.17g`), replies made in RESP3
/// through the log are flattened for a RESP2 client as Redis does
/// (ZPOPMIN with a count, WITHSCORES inside MULTI), invalid writes are
/// answered before proposing, multi-key commands need one group, and a
/// BZPOPMIN blocked on one node is woken by a ZADD through another, also
/// across a leader kill.
#[test]
fn zset_writes_replicate_and_bzpopmin_is_woken_across_nodes() {
    let _serial = serial();
    let (mut c, leader, proxy) = cluster_with_key(b"{zk}:s");
    let third = 3 - leader - proxy;
    let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
    let arr = |items: &[&str]| Reply::Array(items.iter().map(|s| bulk(s)).collect());
    let pairs: Vec<String> = (0..300)
        .flat_map(|i| [(i % 7).to_string(), format!("m{i}")])
        .collect();
    let mut zadd_big: Vec<&[u8]> = vec![b"ZADD", b"{zk}:big"];
    zadd_big.extend(pairs.iter().map(|m| m.as_bytes()));
    assert_eq!(
        until_answered_or_error(&c, leader, &zadd_big),
        Reply::Int(300)
    );
    for (node, argv, want) in [
        (
            leader,
            &[&b"ZADD"[..], b"{zk}", b"1", b"a", b"2", b"b", b"3", b"c"][..],
            Reply::Int(3),
        ),
        (
            proxy,
            &[b"ZINCRBY", b"{zk}", b"0.1", b"a"],
            bulk("1.1000000000000001"),
        ),
        (
            third,
            &[b"ZADD", b"{zk}", b"GT", b"CH", b"5", b"b", b"0", b"c"],
            Reply::Int(1),
        ),
        (
            proxy,
            &[b"ZPOPMIN", b"{zk}", b"2"],
            arr(&["a", "1.1000000000000001", "c", "3"]),
        ),
        (
            proxy,
            &[b"ZADD", b"{zk}:o", b"2", b"b", b"9", b"z"],
            Reply::Int(2),
        ),
        (
            leader,
            &[
                b"ZUNIONSTORE",
                b"{zk}:u",
                b"2",
                b"{zk}",
                b"{zk}:o",
                b"WEIGHTS",
                b"1",
                b"2",
            ],
            Reply::Int(2),
        ),
        (
            third,
            &[b"ZRANGE", b"{zk}:u", b"0", b"-1", b"WITHSCORES"],
            arr(&["b", "9", "z", "18"]),
        ),
        (
            proxy,
            &[b"ZRANGESTORE", b"{zk}:r", b"{zk}:big", b"0", b"199"],
            Reply::Int(200),
        ),
        (
            proxy,
            &[b"OBJECT", b"ENCODING", b"{zk}:r"],
            bulk("skiplist"),
        ),
        (
            leader,
            &[b"ZREMRANGEBYSCORE", b"{zk}:big", b"(4", b"+inf"],
            Reply::Int(85),
        ),
        (
            third,
            &[b"ZMPOP", b"2", b"{zk}:none", b"{zk}:o", b"MAX"],
            Reply::Array(vec![bulk("{zk}:o"), Reply::Array(vec![arr(&["z", "9"])])]),
        ),
        (proxy, &[b"ZCARD", b"{zk}:big"], Reply::Int(215)),
        (
            proxy,
            &[b"ZINTERCARD", b"2", b"{zk}:big", b"{zk}:r"],
            Reply::Int(200),
        ),
    ] {
        assert_eq!(until_answered_or_error(&c, node, argv), want, "{argv:?}");
    }
    let before = c.converged_digests();
    for (argv, want) in [
        (
            &[&b"ZADD"[..], b"{zk}", b"1"][..],
            "ERR wrong number of arguments for 'zadd' command",
        ),
        (
            &[b"ZADD", b"{zk}", b"NX", b"XX", b"1", b"a"],
            "ERR XX and NX options at the same time are not compatible",
        ),
        (
            &[b"ZADD", b"{zk}", b"nan", b"a"],
            "ERR value is not a valid float",
        ),
        (
            &[b"ZINCRBY", b"{zk}", b"x", b"a"],
            "ERR value is not a valid float",
        ),
        (
            &[b"ZREMRANGEBYSCORE", b"{zk}", b"x", b"1"],
            "ERR min or max is not a float",
        ),
        (
            &[b"ZPOPMIN", b"{zk}", b"-1"],
            "ERR value is out of range, must be positive",
        ),
        (&[b"BZPOPMIN", b"{zk}", b"-1"], "ERR timeout is negative"),
        (
            &[b"ZADD", b"{zk}:s", b"1", b"v"],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (
            &[b"ZUNIONSTORE", b"a", b"1", b"b"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"ZRANGESTORE", b"a", b"b", b"0", b"1"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"ZINTERCARD", b"2", b"a", b"b"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"BZMPOP", b"0", b"2", b"a", b"b", b"MIN"],
            "CROSSSLOT Keys in request don't hash to the same slot",
        ),
        (
            &[b"ZUNIONSTORE", b"{zk}:d", b"0", b"{zk}"],
            "ERR at least 1 input key is needed for 'zunionstore' command",
        ),
    ] {
        match until_answered_or_error(&c, proxy, argv) {
            Reply::Error(e) => assert_eq!(e, want, "{argv:?}"),
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    // The WRONGTYPE write was proposed and changed nothing; the others
    // were never proposed: the state digests stay.
    assert_eq!(digest_state(&c.converged_digests()), digest_state(&before));
    let mut conn = Conn::open(c.ports[proxy]).unwrap();
    for argv in [
        &[&b"MULTI"[..]][..],
        &[b"ZADD", b"{zk}:t", b"1", b"x", b"2", b"y"],
        &[b"ZRANGE", b"{zk}:t", b"0", b"-1", b"WITHSCORES"],
        &[b"ZPOPMAX", b"{zk}:t", b"1"],
        &[b"ZSCORE", b"{zk}:t", b"x"],
        &[b"EXEC"],
    ] {
        conn.send(argv).unwrap();
    }
    let replies: Vec<Reply> = (0..6).map(|_| conn.read().unwrap()).collect();
    assert_eq!(
        replies[5],
        Reply::Array(vec![
            Reply::Int(2),
            arr(&["x", "1", "y", "2"]),
            arr(&["y", "2"]),
            bulk("1"),
        ])
    );
    // A blocking pop that finds a member answers at once; one that
    // times out answers null.
    assert_eq!(
        until_answered(&c, proxy, &[b"BZPOPMIN", b"{zk}:t", b"0"]),
        arr(&["{zk}:t", "x", "1"])
    );
    assert_eq!(
        until_answered_or_error(&c, third, &[b"BZPOPMAX", b"{zk}:none", b"0.2"]),
        Reply::Bulk(None)
    );
    // Blocked on the proxy, woken by a ZADD sent to the third node.
    let mut waiter = Conn::open(c.ports[proxy]).unwrap();
    waiter.send(&[b"BZPOPMIN", b"{zk}:q", b"0"]).unwrap();
    wait_blocked(&c, proxy, 1);
    assert_eq!(
        until_answered(&c, third, &[b"ZADD", b"{zk}:q", b"4", b"job"]),
        Reply::Int(1)
    );
    assert_eq!(waiter.read().unwrap(), arr(&["{zk}:q", "job", "4"]));
    wait_blocked(&c, proxy, 0);
    assert_eq!(
        until_answered(&c, leader, &[b"EXISTS", b"{zk}:q"]),
        Reply::Int(0)
    );
    assert!(!c.converged_digests().is_empty());
    // The leader goes while a client is blocked on the proxy: the ZADD
    // the new leader commits wakes it, and its pop goes through the log.
    waiter
        .send(&[b"BZMPOP", b"0", b"1", b"{zk}:f", b"MAX", b"COUNT", b"2"])
        .unwrap();
    wait_blocked(&c, proxy, 1);
    let all = until_answered(
        &c,
        proxy,
        &[b"ZRANGE", b"{zk}:big", b"0", b"-1", b"WITHSCORES"],
    );
    c.kill(leader);
    assert_eq!(
        until_answered(
            &c,
            third,
            &[b"ZADD", b"{zk}:f", b"1", b"lo", b"2", b"hi", b"3", b"top"]
        ),
        Reply::Int(3)
    );
    assert_eq!(
        waiter.read().unwrap(),
        Reply::Array(vec![
            bulk("{zk}:f"),
            Reply::Array(vec![arr(&["top", "3"]), arr(&["hi", "2"])])
        ])
    );
    assert_eq!(
        until_answered(&c, third, &[b"ZRANGE", b"{zk}:f", b"0", b"-1"]),
        arr(&["lo"])
    );
    assert_eq!(
        until_answered(
            &c,
            third,
            &[b"ZRANGE", b"{zk}:big", b"0", b"-1", b"WITHSCORES"]
        ),
        all
    );
}

/// `cairn dev --tls`'s setup with real processes: three nodes with TLS
/// (no cluster secret: mutual TLS authenticates the peers) form the
/// cluster, a write through one node's plain port is read with redis-cli
/// --tls on another's TLS port, INFO says the peers use TLS, and a plain
/// HELLO on a peer port gets nothing back.
#[test]
fn a_tls_cluster_talks_mutual_tls_between_nodes() {
    let _serial = serial();
    let certs = tempfile::tempdir().unwrap();
    cairn_server::tls::write_dev_certs(certs.path(), &[]).unwrap();
    let f = |n: &str| certs.path().join(n).to_string_lossy().into_owned();
    let tls_ports: Vec<u16> = (0..3).map(|_| free_port_pair().0).collect();
    let extra = tls_ports
        .iter()
        .map(|p| {
            vec![
                "--tls-port".to_string(),
                p.to_string(),
                "--tls-cert-file".into(),
                f("node.crt"),
                "--tls-key-file".into(),
                f("node.key"),
                "--tls-ca-cert-file".into(),
                f("ca.crt"),
            ]
        })
        .collect();
    let c = TestCluster::start_all(3, "volatile", extra);
    c.wait_ok();
    let mut conn = Conn::open(c.ports[0]).unwrap();
    assert_eq!(
        text(&conn.cmd(&[b"SET", b"tk", b"over-tls"]).unwrap()),
        "OK"
    );
    let out = Command::new("redis-cli")
        .args(["-p", &tls_ports[2].to_string(), "--tls"])
        .args([
            "--cacert",
            &f("ca.crt"),
            "--cert",
            &f("client.crt"),
            "--key",
            &f("client.key"),
        ])
        .args(["GET", "tk"])
        .output()
        .expect("redis-cli");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over-tls",
        "{out:?}"
    );
    for p in &c.ports {
        assert_eq!(
            cluster_info_field(*p, "cairn_peer_auth").as_deref(),
            Some("tls")
        );
    }
    // Plain bytes (what a HELLO frame would start with) on node 2's peer
    // port.
    let mut s = TcpStream::connect(("127.0.0.1", c.ports[1] + 10000)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut frame = vec![0, 0, 0, 24, 1, 0, 0, 6];
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.extend_from_slice(&2u64.to_be_bytes());
    std::io::Write::write_all(&mut s, &frame).unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut got);
    // A TLS server answers garbage with a TLS alert at most, never a frame.
    assert!(
        got.len() < 16 || got[0] == 0x15,
        "peer port answered plain text: {got:?}"
    );
}

/// The audit log in cluster mode is the cluster's: records made on any
/// node reach every node's file through the meta group, in one order, so
/// the files are identical and verify; a node that loses its file (or
/// its whole disk's copy of it) gets it back from the cluster's log.
#[test]
fn the_audit_log_is_replicated_to_every_node_and_comes_back_after_a_node_loses_it() {
    let _serial = serial();
    let logs = tempfile::tempdir().unwrap();
    let file = |i: usize| logs.path().join(format!("audit-{}.log", i + 1));
    let extra = (0..3)
        .map(|i| {
            vec![
                "--audit-log".to_string(),
                file(i).to_string_lossy().into_owned(),
            ]
        })
        .collect();
    let mut c = TestCluster::start_all(3, "durable", extra);
    c.wait_ok();
    // One failed login per node, one admin command on node 2.
    for i in 0..3 {
        let user = format!("intruder-{}", i + 1);
        let r = until_answered_or_error(&c, i, &[b"AUTH", user.as_bytes(), b"not-the-password"]);
        assert!(
            matches!(r, Reply::Error(ref e) if e.starts_with("WRONGPASS")),
            "{r:?}"
        );
    }
    let r = until_answered_or_error(&c, 1, &[b"CONFIG", b"GET", b"maxmemory"]);
    assert!(matches!(r, Reply::Array(_)), "{r:?}");
    // Waits until every live node's file is the same and holds `needles`
    // (the test's own CLUSTER INFO polls are audited too: counts vary).
    let same_files = |c: &TestCluster, needles: &[&str]| -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts: Vec<Option<String>> = c
                .live()
                .into_iter()
                .map(|i| info_value(&mut Conn::open(c.ports[i]).ok()?, b"stats", "audit_records"))
                .collect();
            let texts: Vec<String> = c
                .live()
                .into_iter()
                .map(|i| std::fs::read_to_string(file(i)).unwrap_or_default())
                .collect();
            let lines = texts[0].lines().count().to_string();
            if counts.iter().all(|n| n.as_ref() == Some(&lines))
                && texts.iter().all(|t| *t == texts[0])
                && needles.iter().all(|n| texts[0].contains(n))
            {
                return texts[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "audit logs did not converge on {needles:?}: {counts:?}\n{texts:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let text = same_files(
        &c,
        &[
            r#""node":1,"event":"auth","user":"intruder-1""#,
            r#""node":2,"event":"auth","user":"intruder-2""#,
            r#""node":3,"event":"auth","user":"intruder-3""#,
            r#""node":2,"event":"command","user":"default","client":"#,
            r#""command":"config|get""#,
        ],
    );
    assert!(!text.contains("not-the-password"), "a password was logged");
    let verify = |i: usize| {
        let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
        let out = Command::new(bin)
            .args(["audit", "verify"])
            .arg(file(i))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for i in 0..3 {
        let (ok, out) = verify(i);
        assert!(
            ok && out.starts_with("ok: records 1.."),
            "node {}: {out}",
            i + 1
        );
    }
    // Node 1 dies and its audit file is lost; node 1's own records live
    // on in the others' files, and the cluster keeps auditing.
    c.kill(0);
    std::fs::remove_file(file(0)).unwrap();
    let r = until_answered_or_error(&c, 2, &[b"AUTH", b"intruder-4", b"nope"]);
    assert!(matches!(r, Reply::Error(_)), "{r:?}");
    same_files(&c, &[r#""user":"intruder-1""#, r#""user":"intruder-4""#]);
    // Back, node 1 writes its file again from the cluster's log.
    c.start(0);
    c.wait_ok();
    let text = same_files(&c, &[r#""user":"intruder-1""#, r#""user":"intruder-4""#]);
    let (ok, out) = verify(0);
    assert!(ok && out.starts_with("ok: records 1.."), "{out}");
    // An edited record in one node's copy: verify names it.
    let edited = text.replacen("intruder-2", "intruder-9", 1);
    std::fs::write(file(0), edited).unwrap();
    let (ok, _) = verify(0);
    assert!(!ok, "an edited record passed verify");
}

/// Hash field deadlines in a cluster: set through a proxy, the same on
/// every replica (digests), hidden from readers everywhere once passed,
/// and removed through the log by the leader's active expiry, the key
/// with its last field.
#[test]
fn hash_field_deadlines_replicate_and_expire_through_the_log() {
    let _serial = serial();
    let (c, _leader, proxy) = cluster_with_key(b"{hf}:s");
    let ints = |r: Reply| match r {
        Reply::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Reply::Int(n) => n,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    until_answered(&c, proxy, &[b"HSET", b"{hf}", b"a", b"1", b"b", b"2"]);
    until_answered(&c, proxy, &[b"HSET", b"{hf}:gone", b"only", b"1"]);
    let r = until_answered(
        &c,
        proxy,
        &[b"HPEXPIRE", b"{hf}", b"1500", b"FIELDS", b"2", b"a", b"zz"],
    );
    assert_eq!(ints(r), vec![1, -2]);
    let r = until_answered(
        &c,
        proxy,
        &[b"HPEXPIRE", b"{hf}:gone", b"1500", b"FIELDS", b"1", b"only"],
    );
    assert_eq!(ints(r), vec![1]);
    // Every replica holds the deadline (the digest covers it).
    c.converged_digests();
    for i in c.live() {
        let mut conn = Conn::open(c.ports[i]).unwrap();
        conn.cmd(&[b"READONLY"]).unwrap();
        let t = ints(
            conn.cmd(&[b"HPTTL", b"{hf}", b"FIELDS", b"1", b"a"])
                .unwrap(),
        );
        assert!(t[0] > 0 && t[0] <= 1500, "node {}: {t:?}", i + 1);
    }
    // Past it: the key without its last field is deleted by the log on
    // every replica, and the other hash keeps only b.
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in c.live() {
        let mut conn = Conn::open(c.ports[i]).unwrap();
        conn.cmd(&[b"READONLY"]).unwrap();
        loop {
            let gone = conn.cmd(&[b"EXISTS", b"{hf}:gone"]).unwrap() == Reply::Int(0);
            let left = conn.cmd(&[b"HKEYS", b"{hf}"]).unwrap();
            if gone && left == Reply::Array(vec![Reply::Bulk(Some(b"b".to_vec()))]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: fields not expired: {left:?}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let digests = c.converged_digests();
    assert!(!digests.is_empty());
    let r = until_answered(&c, proxy, &[b"HTTL", b"{hf}", b"FIELDS", b"2", b"a", b"b"]);
    assert_eq!(ints(r), vec![-2, -1]);
}

/// Per slot range (its first slot), the node ports CLUSTER SLOTS lists.
type SlotMap = Vec<(i64, Vec<i64>)>;

/// A node's CLUSTER SLOTS: per slot range, the node ports listed (leader
/// first).
fn slots_by_port(port: u16) -> Option<SlotMap> {
    let Ok(Reply::Array(ranges)) = Conn::open(port).ok()?.cmd(&[b"CLUSTER", b"SLOTS"]) else {
        return None;
    };
    let mut out = Vec::new();
    for r in ranges {
        let Reply::Array(items) = r else { return None };
        let Some(Reply::Int(first)) = items.first() else {
            return None;
        };
        let mut ports = Vec::new();
        for node in &items[2..] {
            let Reply::Array(n) = node else { return None };
            let Some(Reply::Int(p)) = n.get(1) else {
                return None;
            };
            ports.push(*p);
        }
        out.push((*first, ports));
    }
    Some(out)
}

/// Sharding (docs/design/sharding.md): five real nodes started with
/// `--replication-factor 3` place each of 16 groups on three of them,
/// balanced (9 or 10 groups each, leading 3 or 4 once the rebalancer has
/// moved leaders to the placement's choice), and every node shows the same
/// slot map with three replicas per range; a key written through one node is read
/// through every node (a node outside its group forwards), and each key
/// lives on exactly three nodes (the others dropped their replicas:
/// DBSIZE over all nodes is 3× the keys). CLUSTER WEIGHT 5 0 drains node
/// 5 (every group moves off it, its DBSIZE drops to 0, keys still read);
/// then killing another node keeps every group writable (each loses at
/// most one of three replicas).
#[test]
fn five_nodes_with_replication_factor_3_place_route_and_drop_replicas() {
    let _g = serial();
    let rf = vec!["--replication-factor".to_string(), "3".to_string()];
    let mut c = TestCluster::start_all(5, "durable", vec![rf; 5]);
    c.wait_ok();
    let deadline = Instant::now() + Duration::from_secs(120);
    let map = loop {
        let maps: Vec<Option<SlotMap>> = c.ports.iter().map(|&p| slots_by_port(p)).collect();
        let settled = maps.iter().all(|m| {
            m.as_ref()
                .is_some_and(|m| m.len() == 16 && m.iter().all(|(_, ps)| ps.len() == 3))
        }) && maps.iter().all(|m| m == &maps[0]);
        if settled {
            break maps[0].clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "placement never settled: {maps:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut per_node: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, ports) in &map {
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), 3, "three different nodes: {ports:?}");
        for p in ports {
            *per_node.entry(*p).or_insert(0) += 1;
        }
    }
    assert_eq!(per_node.len(), 5, "{per_node:?}");
    assert!(
        per_node.values().all(|&n| n == 9 || n == 10),
        "{per_node:?}"
    );
    // Leaders move to the placement's preferred ones (the automatic
    // rebalancer, after its settle period): 16 groups, 3 or 4 each.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut leads: BTreeMap<i64, usize> = BTreeMap::new();
        if let Some(m) = slots_by_port(c.ports[0]) {
            for (_, ports) in &m {
                if let Some(&l) = ports.first() {
                    *leads.entry(l).or_insert(0) += 1;
                }
            }
        }
        if leads.len() == 5 && leads.values().all(|&n| n == 3 || n == 4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leaders never balanced: {leads:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // `cairn cluster status` reads the same from INFO cluster.
    let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
    let out = Command::new(&bin)
        .args([
            "cluster",
            "status",
            "--port",
            &c.ports[2].to_string(),
            "--watch",
        ])
        .output()
        .expect("cairn cluster status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("replication factor 3"), "{text}");
    assert!(
        text.contains(&format!(
            "[{}] 16/16 groups placed, settled",
            "#".repeat(30)
        )),
        "{text}"
    );
    let keys: Vec<String> = (0..300).map(|i| format!("shard-key-{i}")).collect();
    let mut c1 = Conn::open(c.ports[0]).unwrap();
    for k in &keys {
        assert_eq!(
            c1.cmd(&[b"SET", k.as_bytes(), k.as_bytes()]).unwrap(),
            Reply::Simple("OK".into())
        );
    }
    for &p in &c.ports {
        let mut conn = Conn::open(p).unwrap();
        for k in keys.iter().step_by(7) {
            assert_eq!(
                conn.cmd(&[b"GET", k.as_bytes()]).unwrap(),
                Reply::Bulk(Some(k.as_bytes().to_vec())),
                "{k} through port {p}"
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total: i64 = c
            .ports
            .iter()
            .map(
                |&p| match Conn::open(p).and_then(|mut x| x.cmd(&[b"DBSIZE"])) {
                    Ok(Reply::Int(n)) => n,
                    _ => 0,
                },
            )
            .sum();
        if total == 3 * keys.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys over all nodes: {total}, want {}",
            3 * keys.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bad weights are refused with nothing changed; weight 0 drains node
    // 5: every group moves off it, and it drops their data.
    let mut c3 = Conn::open(c.ports[2]).unwrap();
    for (argv, want) in [
        (
            &[&b"CLUSTER"[..], b"WEIGHT", b"5", b"x"][..],
            "ERR weight must be",
        ),
        (
            &[b"CLUSTER", b"WEIGHT", b"5", b"1001"],
            "ERR weight must be",
        ),
        (&[b"CLUSTER", b"WEIGHT", b"0", b"1"], "ERR invalid node id"),
        (
            &[b"CLUSTER", b"WEIGHT", b"9", b"1"],
            "ERR cluster change failed",
        ),
        (
            &[b"CLUSTER", b"WEIGHT", b"5"],
            "ERR wrong number of arguments",
        ),
        (&[b"CLUSTER", b"WEIGHT", b"5", b"-1"], "ERR weight must be"),
        // Joining a member twice with another address, removing a node
        // that is not a member: refused, nothing moved.
        (
            &[b"CLUSTER", b"ADDNODE", b"2", b"127.0.0.1:1@2"],
            "ERR cluster change failed: refused: node 2 is already a member",
        ),
        (&[b"CLUSTER", b"DELNODE", b"9"], "ERR cluster change failed"),
        (
            &[b"CLUSTER", b"SETTING", b"replica-repair-timeout", b"-1"],
            "ERR Invalid argument",
        ),
        (
            &[b"CLUSTER", b"SETTING", b"replication-factor", b"0"],
            "ERR Invalid argument",
        ),
    ] {
        match c3.cmd(argv).unwrap() {
            Reply::Error(e) => assert!(e.starts_with(want), "{argv:?}: {e}"),
            r => panic!("{argv:?}: {r:?}"),
        }
    }
    // `cairn cluster rebalance`: bad values refused, nothing set; then
    // paused, the drain below is stored but moves nothing until resumed.
    let rebalance = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(["cluster", "rebalance", "--port", &c.ports[1].to_string()])
            .args(args)
            .output()
            .expect("cairn cluster rebalance");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for bad in [&["--throttle", "fast"][..], &["--max-moves", "0"]] {
        let (ok, text) = rebalance(bad);
        assert!(!ok && text.contains("Invalid argument"), "{bad:?}: {text}");
    }
    let (ok, text) = rebalance(&["--pause", "--throttle", "20mb", "--max-moves", "2"]);
    assert!(ok, "{text}");
    let (ok, text) = rebalance(&[]);
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "rebalance PAUSED: up to 2 groups at a time, throttled to 20.0 MiB/s per node"
        ),
        "{text}"
    );
    assert!(
        text.contains("left: 0 replicas to copy, 0 to remove"),
        "{text}"
    );
    assert_eq!(
        c3.cmd(&[b"CLUSTER", b"WEIGHT", b"5", b"0"]).unwrap(),
        Reply::Simple("OK".into())
    );
    let drained = c.ports[4] as i64;
    std::thread::sleep(Duration::from_secs(3));
    let map = slots_by_port(c.ports[0]).unwrap_or_default();
    let on5 = map.iter().filter(|(_, ps)| ps.contains(&drained)).count();
    assert!(on5 >= 9, "groups moved off node 5 while paused: {map:?}");
    let (ok, text) = rebalance(&["--status"]);
    assert!(ok, "{text}");
    let left = text
        .split_once("left: ")
        .and_then(|(_, r)| r.split_once(" replicas to copy"))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    assert!(
        left.is_some_and(|n| n >= on5),
        "{on5} groups on node 5 to copy elsewhere: {text}"
    );
    let (ok, text) = rebalance(&["--resume"]);
    assert!(ok && text.contains("rebalance-paused set to no"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let map = slots_by_port(c.ports[0]).unwrap_or_default();
        let gone = map.len() == 16
            && map
                .iter()
                .all(|(_, ps)| ps.len() == 3 && !ps.contains(&drained));
        let empty = matches!(
            Conn::open(c.ports[4]).and_then(|mut x| x.cmd(&[b"DBSIZE"])),
            Ok(Reply::Int(0))
        );
        if gone && empty {
            break;
        }
        assert!(Instant::now() < deadline, "node 5 never drained: {map:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for k in keys.iter().step_by(11) {
        assert_eq!(
            c3.cmd(&[b"GET", k.as_bytes()]).unwrap(),
            Reply::Bulk(Some(k.as_bytes().to_vec())),
            "{k} after the drain"
        );
    }
    // The drain copied node 5's replicas, no more than the minimum.
    let (ok, text) = rebalance(&["--watch", "--timeout", "60"]);
    assert!(ok, "{text}");
    assert!(text.contains("settled: nothing left to move"), "{text}");
    let plan = text
        .lines()
        .find_map(|l| l.split_once("): ")?.1.strip_suffix(')'))
        .and_then(|p| {
            let (copies, rest) = p.split_once(" replicas to copy, minimum ")?;
            let minimum = rest.split_once(' ')?.0;
            Some((
                copies.parse::<usize>().ok()?,
                minimum.parse::<usize>().ok()?,
            ))
        });
    let (copies, minimum) = plan.unwrap_or_else(|| panic!("no plan line: {text}"));
    assert_eq!(minimum, on5, "the minimum is node 5's replicas: {text}");
    assert!(copies * 10 <= minimum * 11, "copies within 1.1x: {text}");
    c.kill(3);
    let mut c2 = Conn::open(c.ports[1]).unwrap();
    for k in keys.iter().step_by(5) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c2.cmd(&[b"SET", k.as_bytes(), b"after-kill"]).unwrap() {
                Reply::Simple(s) if s == "OK" => break,
                r => assert!(Instant::now() < deadline, "{k}: {r:?}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
