//! cairn-client against real 3-node clusters (separate `cairn server`
//! processes on loopback): keyed requests reach leaders directly, stale
//! reads spread over replicas, the lock guard survives a leader kill and
//! reports loss within a lease when the cluster is unreachable, and a
//! node killed under load loses no acknowledged write.
//!
//! Set CAIRN_BIN to a release binary for faster runs, CAIRN_TEST_LOG to
//! see the nodes' logs.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::strategy::{LoadSignal, RoundRobin, Weighted};
use cairn_client::{Client, ClientConfig, Cmd, Error, LockOptions, LockStatus, ReadFrom, TxResult};

/// One cluster per test at a time: each runs 3 servers and a load on a
/// machine that may have 2 cores.
fn one_at_a_time() -> Serial {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// A RESP port whose peer port (RESP + 10000) is free too.
fn free_port() -> u16 {
    cairn_check::ports::free_port_with(&[0, 10000])
}

/// Three `cairn server` processes; killed (and resumed first, if
/// stopped) on drop.
struct Nodes {
    ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    procs: Vec<Option<Child>>,
}

impl Nodes {
    fn start() -> Nodes {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut n = Nodes {
            dirs: (0..3)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect(),
            procs: (0..3).map(|_| None).collect(),
            ports,
        };
        for i in 0..3 {
            n.spawn(i);
        }
        n.wait_ok(&[0, 1, 2]);
        n
    }

    fn spawn(&mut self, i: usize) {
        let peers: Vec<String> = (0..3)
            .map(|j| format!("{}=127.0.0.1:{}", j + 1, self.ports[j]))
            .collect();
        let log = std::env::var("CAIRN_TEST_LOG").ok();
        let bin = std::env::var("CAIRN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cairn").into());
        let child = Command::new(bin)
            .args(["server", "--threads", "1", "--cluster-groups", "16"])
            .args(["--port", &self.ports[i].to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--cluster-peers", &peers.join(",")])
            .args(["--durability", "durable", "--dir"])
            .arg(self.dirs[i].path())
            // Elections paced for a debug build on two busy cores.
            .args(["--heartbeat-interval", "250"])
            .args([
                "--election-timeout-min",
                "1000",
                "--election-timeout-max",
                "2000",
            ])
            .args(["--log", log.as_deref().unwrap_or("error")])
            .stderr(if log.is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("spawn cairn");
        self.procs[i] = Some(child);
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn seeds(&self) -> Vec<String> {
        (0..3).map(|i| self.addr(i)).collect()
    }

    fn index_of(&self, addr: &str) -> usize {
        (0..3)
            .find(|&i| self.addr(i) == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node"))
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.procs[i] {
            // SAFETY: kill(2) on a child process this test owns.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    fn signal_all(&self, sig: i32) {
        (0..3).for_each(|i| self.signal(i, sig));
    }

    /// A plain connection to node `i` (the `redis` crate, so this harness
    /// does not lean on the client under test).
    fn conn(&self, i: usize) -> Option<redis::Connection> {
        let c = redis::Client::open(format!("redis://{}", self.addr(i))).ok()?;
        let conn = c.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(conn)
    }

    fn info_field(&self, i: usize, section: &str, field: &str) -> u64 {
        let mut c = self.conn(i).expect("connect for INFO");
        let text: String = redis::cmd("INFO").arg(section).query(&mut c).expect("INFO");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
    }

    /// Waits until each of `live` reports every group with a leader.
    fn wait_ok(&self, live: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for &i in live {
            loop {
                let ok = self.conn(i).is_some_and(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut c)
                        .is_ok_and(|t| t.contains("cluster_state:ok"))
                });
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} never reported cluster_state:ok"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.signal_all(libc::SIGCONT);
        for i in 0..3 {
            self.kill(i);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

type Serial = std::sync::MutexGuard<'static, ()>;

/// A fresh cluster (one at a time), a runtime, and a client configured by
/// `cfg` from the nodes' addresses. Bind all four in this order: they
/// drop in reverse, the serial lock last.
fn setup(
    cfg: impl FnOnce(&Nodes) -> ClientConfig,
) -> (Serial, Nodes, tokio::runtime::Runtime, Client) {
    let one = one_at_a_time();
    let nodes = Nodes::start();
    let rt = runtime();
    let client = rt.block_on(Client::connect(cfg(&nodes))).expect("connect");
    (one, nodes, rt, client)
}

fn all_seeds(n: &Nodes) -> ClientConfig {
    ClientConfig::new(n.seeds())
}

/// Requests the servers proxied or redirected, summed over the nodes.
fn detours(n: &Nodes) -> u64 {
    (0..3)
        .map(|i| {
            n.info_field(i, "cluster", "cairn_requests_forwarded")
                + n.info_field(i, "cluster", "cairn_moved_replies")
        })
        .sum()
}

#[test]
fn keyed_requests_go_straight_to_leaders_after_warm_up() {
    // One seed is enough: the client learns the rest.
    let (_one, nodes, rt, client) = setup(|n| ClientConfig::new([n.addr(0)]));
    let run = |from: usize, count: usize| {
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..32 {
                let c = client.clone();
                tasks.spawn(async move {
                    for i in (from + t..from + count).step_by(32) {
                        let key = format!("key:{}", i % 4000);
                        if i % 2 == 0 {
                            c.set(&key, "v", None).await.expect("SET");
                        } else {
                            c.get::<Vec<u8>>(&key).await.expect("GET");
                        }
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("task");
            }
        })
    };
    run(0, 1000); // warm-up: connections to every leader
    let before = detours(&nodes);
    let requests = 20_000;
    run(1000, requests);
    let after = detours(&nodes);
    let share = (after - before) as f64 / requests as f64;
    println!(
        "{requests} requests after warm-up: {} proxied or redirected ({:.3}%); client {:?}",
        after - before,
        share * 100.0,
        client.stats()
    );
    assert!(
        share < 0.01,
        "{} of {requests} requests took a detour",
        after - before
    );
}

#[test]
fn stale_reads_spread_over_every_replica() {
    let (_one, nodes, rt, client) =
        setup(|n| ClientConfig::new(n.seeds()).strategy(RoundRobin::default()));
    rt.block_on(client.set("stale:k", "v", None)).expect("SET");
    let hits = |i| nodes.info_field(i, "stats", "keyspace_hits");
    let before: Vec<u64> = (0..3).map(hits).collect();
    let reads = 600;
    rt.block_on(async {
        let get = Cmd::new("GET")
            .arg("stale:k")
            .read_from(ReadFrom::AnyReplica);
        for _ in 0..reads {
            // Replicas apply asynchronously: the value may lag, never differ.
            let v: Option<Vec<u8>> = client.query(&get).await.expect("stale GET");
            assert!(v.is_none() || v.as_deref() == Some(&b"v"[..]));
        }
    });
    let served: Vec<u64> = (0..3).map(|i| hits(i) - before[i]).collect();
    println!("{reads} stale reads, round-robin, served per node: {served:?}");
    for s in &served {
        assert!(*s >= reads as u64 / 6, "a replica was left out: {served:?}");
    }
}

/// Node `addr`'s figure in `client.server_loads()`.
fn load_of(client: &Client, addr: &str) -> Option<f64> {
    client
        .server_loads()
        .into_iter()
        .find(|(a, _)| a == addr)
        .and_then(|(_, l)| l)
}

#[test]
fn server_load_weights_move_stale_reads_away_from_a_node_with_many_clients() {
    let (_one, nodes, rt, client) = setup(|n| {
        ClientConfig::new(n.seeds())
            .strategy(Weighted::by_server_load(LoadSignal::ConnectedClients))
            .server_load_interval(Duration::from_millis(100))
            .read_from(ReadFrom::AnyReplica)
    });
    rt.block_on(client.set("load:k", "v", None)).expect("SET");
    let busy = 1;
    let busy_addr = nodes.addr(busy);
    // Every node reports, and none is loaded yet.
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what}: {:?}",
                client.server_loads()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("every node reports its load", &|| {
        (0..3).all(|i| load_of(&client, &nodes.addr(i)).is_some())
    });
    assert!(load_of(&client, &busy_addr).is_some_and(|l| l < 50.0));

    // 200 idle connections to one node: its connected_clients rises.
    let idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&busy_addr).expect("idle connection"))
        .collect();
    wait_for("the client sees the idle connections", &|| {
        load_of(&client, &busy_addr).is_some_and(|l| l >= 200.0)
    });
    let loads = client.server_loads();
    for (a, l) in &loads {
        if *a != busy_addr {
            assert!(l.is_some_and(|l| l < 50.0), "{loads:?}");
        }
    }

    let served = |i| {
        nodes.info_field(i, "stats", "keyspace_hits")
            + nodes.info_field(i, "stats", "keyspace_misses")
    };
    let before: Vec<u64> = (0..3).map(served).collect();
    let reads = 600;
    rt.block_on(async {
        for _ in 0..reads {
            client.get::<Vec<u8>>("load:k").await.expect("stale GET");
        }
    });
    let got: Vec<u64> = (0..3).map(|i| served(i) - before[i]).collect();
    let share = |i: usize| got[i] as f64 / reads as f64;
    println!("loads {loads:?}; {reads} stale reads served per node: {got:?}");
    // Weights 1/(1+L) floored at a tenth of the largest: the busy node
    // gets ~5%, not the 33% an even spread gives it.
    assert!(
        share(busy) < 0.15,
        "the loaded node kept its share: {got:?}"
    );
    for i in (0..3).filter(|&i| i != busy) {
        assert!(share(i) > 0.3, "an idle node was left out: {got:?}");
    }
    drop(idle);
}

#[test]
fn least_outstanding_moves_load_away_from_a_slowed_node() {
    // The default strategy; stale reads may go to any replica.
    let (_one, nodes, rt, client) =
        setup(|n| ClientConfig::new(n.seeds()).read_from(ReadFrom::AnyReplica));
    rt.block_on(client.set("slow:k", "v", None)).expect("SET");
    let served = |i| {
        nodes.info_field(i, "stats", "keyspace_hits")
            + nodes.info_field(i, "stats", "keyspace_misses")
    };
    let before: Vec<u64> = (0..3).map(served).collect();
    // Node 2 runs 50 ms in every 200 ms: a quarter of the speed, far
    // from any election timeout.
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                nodes.signal(2, libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(150));
                nodes.signal(2, libc::SIGCONT);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..16 {
                let c = client.clone();
                tasks.spawn(async move {
                    for _ in 0..600 {
                        c.get::<Vec<u8>>("slow:k").await.expect("stale GET");
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("task");
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    nodes.signal(2, libc::SIGCONT);
    let got: Vec<u64> = (0..3).map(|i| served(i) - before[i]).collect();
    let total: u64 = got.iter().sum();
    let slow_share = got[2] as f64 / total as f64;
    println!(
        "reads served per node with node 2 slowed: {got:?} (node 2: {:.1}%)",
        slow_share * 100.0
    );
    assert!(total >= 16 * 600, "reads lost: {got:?}");
    assert!(
        slow_share < 0.2,
        "the slowed node kept {:.1}% of the reads",
        slow_share * 100.0
    );
}

fn lock_info(nodes: &Nodes, i: usize, name: &str) -> BTreeMap<String, redis::Value> {
    let mut c = nodes.conn(i).expect("connect");
    let v: Vec<redis::Value> = redis::cmd("LOCK.INFO")
        .arg(name)
        .query(&mut c)
        .expect("LOCK.INFO");
    v.chunks(2)
        .filter_map(|kv| match &kv[0] {
            redis::Value::BulkString(k) => {
                Some((String::from_utf8_lossy(k).into_owned(), kv[1].clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn lock_guard_renews_through_a_leader_kill() {
    let (_one, mut nodes, rt, client) = setup(all_seeds);
    let name = "{job}:lock";
    let lease = Duration::from_secs(8);
    let guard = rt
        .block_on(client.lock(name, LockOptions::default().lease(lease)))
        .expect("acquire")
        .expect("the lock is free");
    let leader = nodes.index_of(&client.leader_of(name.as_bytes()).expect("a leader"));
    // Kill the leader mid-lease, then watch the guard for 2.5 leases:
    // every renewal after the kill goes through the new leader.
    std::thread::sleep(lease / 2);
    nodes.kill(leader);
    let watch_until = Instant::now() + lease * 5 / 2;
    while Instant::now() < watch_until {
        assert!(
            guard.is_held(),
            "lost the lock after the leader kill: {:?}",
            guard.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let live: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let info = lock_info(&nodes, live[0], name);
    assert_eq!(
        info.get("owner"),
        Some(&redis::Value::BulkString(guard.owner().as_bytes().to_vec()))
    );
    assert_eq!(info.get("token"), Some(&redis::Value::Int(guard.token())));
    rt.block_on(client.set_fenced("{job}:data", "done", &guard))
        .expect("a fenced write with the renewed token");
    assert!(
        rt.block_on(guard.release()).expect("release"),
        "still held at release"
    );
}

#[test]
fn a_waiting_acquire_gets_the_lock_when_the_holder_releases() {
    let (_one, _nodes, rt, client) = setup(all_seeds);
    rt.block_on(async {
        let opts = LockOptions::default().lease(Duration::from_secs(10));
        let first = client
            .lock("{q}:lock", opts.clone())
            .await
            .expect("acquire")
            .expect("free");
        assert!(
            client
                .lock("{q}:lock", opts.clone())
                .await
                .expect("try")
                .is_none(),
            "held by first"
        );
        let waiter = tokio::spawn({
            let c = client.clone();
            let opts = opts.wait(Duration::from_secs(20));
            async move { c.lock("{q}:lock", opts).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = first.token();
        let fenced_before = client.set_fenced("{q}:data", "first", &first).await;
        assert!(fenced_before.is_ok(), "{fenced_before:?}");
        assert!(first.release().await.expect("release"));
        let second = waiter
            .await
            .expect("task")
            .expect("wait")
            .expect("granted after the release");
        assert!(
            second.token() > old,
            "tokens increase: {} then {}",
            old,
            second.token()
        );
        assert!(second.is_held());
        // The old token fences nothing any more.
        let stale = Cmd::new("SET")
            .arg("{q}:data")
            .arg("late")
            .arg("FENCE")
            .arg("{q}:lock")
            .arg(old);
        let r = client.execute(&stale).await;
        assert!(r.as_ref().is_err_and(|e| e.is_fenced()), "{r:?}");
        client
            .set_fenced("{q}:data", "second", &second)
            .await
            .expect("current token");
    });
}

#[test]
fn lock_guard_signals_loss_within_one_lease_when_the_cluster_is_unreachable() {
    let (_one, nodes, rt, client) = setup(all_seeds);
    let lease = Duration::from_secs(3);
    let guard = rt
        .block_on(client.lock("{cut}:lock", LockOptions::default().lease(lease)))
        .expect("acquire")
        .expect("free");
    std::thread::sleep(lease / 2); // a renewal or two behind it
    assert!(guard.is_held());
    let cut = Instant::now();
    nodes.signal_all(libc::SIGSTOP);
    let why = rt.block_on(async {
        tokio::time::timeout(lease * 2, guard.lost())
            .await
            .expect("no loss signal within two leases")
    });
    let after = cut.elapsed();
    nodes.signal_all(libc::SIGCONT);
    println!("loss signalled {after:?} after the cut (lease {lease:?}): {why}");
    assert!(
        after <= lease,
        "signalled {after:?} after the cut, lease {lease:?}"
    );
    assert!(!guard.is_held());
    assert!(matches!(guard.status(), LockStatus::Lost(_)));
}

/// What the client reported for each write.
#[derive(Default)]
struct Outcomes {
    done: Vec<String>,
    failed: Vec<String>,
    /// A few of the failures' errors, for the log.
    why: Vec<String>,
    unknown: Vec<String>,
}

#[test]
fn a_node_killed_under_load_loses_no_acknowledged_write() {
    let (_one, mut nodes, rt, client) = setup(all_seeds);
    // Readable keys, written before the load.
    rt.block_on(async {
        for i in 0..200 {
            client
                .set(format!("r:{i}"), format!("{i}"), None)
                .await
                .expect("preload");
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let read_errors = Arc::new(Mutex::new(Vec::new()));
    let load = rt.spawn({
        let (client, stop, outcomes, read_errors) = (
            client.clone(),
            stop.clone(),
            outcomes.clone(),
            read_errors.clone(),
        );
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..8 {
                let (c, stop, out) = (client.clone(), stop.clone(), outcomes.clone());
                tasks.spawn(async move {
                    for i in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let key = format!("w:{w}:{i}");
                        let r = c.set(&key, "x", None).await;
                        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                        match r {
                            Ok(()) => o.done.push(key),
                            Err(Error::OutcomeUnknown { .. }) => o.unknown.push(key),
                            Err(e) => {
                                if o.why.len() < 3 {
                                    o.why.push(e.to_string());
                                }
                                o.failed.push(key)
                            }
                        }
                    }
                });
            }
            for r in 0..4 {
                let (c, stop, errs) = (client.clone(), stop.clone(), read_errors.clone());
                tasks.spawn(async move {
                    for i in 0..1_000_000usize {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let k = (i * 7 + r) % 200;
                        match c.get::<String>(format!("r:{k}")).await {
                            Ok(Some(v)) if v == k.to_string() => {}
                            other => errs
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("r:{k}: {other:?}")),
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let victim = nodes.index_of(&client.leader_of(b"w:0:0").expect("leader"));
    nodes.kill(victim);
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(load).expect("load");

    let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    nodes.wait_ok(&live);
    let o = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    let errs = read_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    println!(
        "killed node {victim}: {} writes done, {} failed, {} unknown; {} read errors; client {:?}",
        o.done.len(),
        o.failed.len(),
        o.unknown.len(),
        errs.len(),
        client.stats()
    );
    println!("some failures: {:?}", o.why);
    assert!(
        errs.is_empty(),
        "reads surfaced errors: {:?}",
        &errs[..errs.len().min(5)]
    );
    assert!(o.done.len() > 100, "too little load to judge");
    // Check against the cluster with a fresh client.
    let check = rt
        .block_on(Client::connect(ClientConfig::new(
            live.iter().map(|&i| nodes.addr(i)),
        )))
        .expect("connect");
    rt.block_on(async {
        for k in &o.done {
            let v: Option<String> = check.get(k).await.expect("GET done key");
            assert_eq!(v.as_deref(), Some("x"), "acknowledged write {k} is missing");
        }
        for k in &o.failed {
            let v: Option<String> = check.get(k).await.expect("GET failed key");
            assert_eq!(v, None, "write {k} was reported failed but is present");
        }
    });
}

/// One WATCH/MULTI/EXEC attempt moving a unit from `{acct}:a` to
/// `{acct}:b`.
async fn move_one(client: &Client) -> TxResult {
    let mut tx = client.transaction("{acct}:a").await.expect("open");
    tx.watch(["{acct}:a", "{acct}:b"]).await.expect("WATCH");
    let get = |k: &str| Cmd::new("GET").arg(k);
    let a: i64 = tx
        .query::<Option<i64>>(&get("{acct}:a"))
        .await
        .expect("GET a")
        .unwrap_or(0);
    let b: i64 = tx
        .query::<Option<i64>>(&get("{acct}:b"))
        .await
        .expect("GET b")
        .unwrap_or(0);
    let writes = [
        Cmd::new("SET").arg("{acct}:a").arg(a - 1),
        Cmd::new("SET").arg("{acct}:b").arg(b + 1),
    ];
    tx.exec(&writes).await.expect("EXEC")
}

#[test]
fn watch_multi_exec_retry_loops_keep_the_sum_constant() {
    let (_one, _nodes, rt, client) = setup(all_seeds);
    let (tasks, moves, start) = (4, 25, 1000i64);
    let aborts = rt.block_on(async {
        client.set("{acct}:a", start, None).await.expect("SET a");
        client.set("{acct}:b", 0, None).await.expect("SET b");
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let c = client.clone();
            set.spawn(async move {
                let mut aborted = 0;
                for _ in 0..moves {
                    // Bounded: 4 tasks cannot starve one 1000 times.
                    let mut done = false;
                    for _ in 0..1000 {
                        match move_one(&c).await {
                            TxResult::Committed(r) => {
                                assert_eq!(r.len(), 2, "{r:?}");
                                done = true;
                                break;
                            }
                            TxResult::Aborted => aborted += 1,
                            other => panic!("{other:?}"),
                        }
                    }
                    assert!(done, "a move never committed");
                }
                aborted
            });
        }
        let mut aborts = 0;
        while let Some(r) = set.join_next().await {
            aborts += r.expect("task");
        }
        aborts
    });
    let a: i64 = rt.block_on(client.counter("{acct}:a")).expect("a");
    let b: i64 = rt.block_on(client.counter("{acct}:b")).expect("b");
    println!("{tasks}×{moves} moves: a={a} b={b}, {aborts} EXECs aborted by a concurrent write");
    assert_eq!(a + b, start, "units created or lost");
    assert_eq!(
        b,
        (tasks * moves) as i64,
        "every committed move counted once"
    );
}

#[test]
fn an_exec_after_a_concurrent_write_to_a_watched_key_is_aborted() {
    let (_one, _nodes, rt, client) = setup(all_seeds);
    rt.block_on(async {
        client.set("{w}:k", "before", None).await.expect("SET");
        let mut tx = client.transaction("{w}:k").await.expect("open");
        tx.watch(["{w}:k"]).await.expect("WATCH");
        // Another connection writes the watched key.
        client
            .set("{w}:k", "other", None)
            .await
            .expect("concurrent SET");
        let r = tx.exec(&[Cmd::new("SET").arg("{w}:k").arg("tx")]).await;
        assert_eq!(r.expect("EXEC"), TxResult::Aborted);
        let v: Option<String> = client.get("{w}:k").await.expect("GET");
        assert_eq!(
            v.as_deref(),
            Some("other"),
            "the aborted SET was not applied"
        );
        // Unwatched, the same connection commits.
        let r = tx.exec(&[Cmd::new("SET").arg("{w}:k").arg("tx")]).await;
        assert!(matches!(r, Ok(TxResult::Committed(_))), "{r:?}");
        // Keys of two groups: refused as a whole, nothing applied.
        let r = tx
            .exec(&[
                Cmd::new("SET").arg("{w}:k").arg("x"),
                Cmd::new("SET").arg("{elsewhere}:k").arg("x"),
            ])
            .await;
        let v: Option<String> = client.get("{w}:k").await.expect("GET");
        println!("cross-group transaction: {r:?}; {{w}}:k = {v:?}");
        assert!(r.as_ref().err().and_then(|e| e.server()).is_some(), "{r:?}");
        assert_eq!(v.as_deref(), Some("tx"));
    });
}
