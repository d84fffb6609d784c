//! Latency faults ([`cairn_lab::delay`]): a userspace delayer on an
//! iptables NFQUEUE rule in a node's namespace (this kernel has no netem).
//! Needs root, `ip`, `nft` and `iptables`; without them the tests print
//! why and skip (`CAIRN_LAB_REQUIRED=1` makes that a failure). The tests of
//! this file run one at a time ([`common::serial`]).
//!
//! Round trips are measured from the lab's client host with `cairn-lab
//! wait-ready` (TCP connect + PING to a cairn node: at least two round
//! trips, each crossing the delayed host's egress once).

mod common;

use std::time::{Duration, Instant};

use cairn_check::{Budget, Verdict};
use cairn_lab::campaign::explain;
use cairn_lab::cluster::{Cluster, ClusterSpec, WorkloadSpec};
use cairn_lab::delay::{self, Delay, DelaySpec};
use cairn_lab::{Lab, LabError, ProcId};
use common::{cairn_binary, check_histories, serial, TOOL};

const PORT: u16 = 6390;

/// A lab with the delayer's tools, or `None` (reason printed) where it
/// cannot run; `CAIRN_LAB_REQUIRED=1` turns that into a failure.
fn lab(hosts: usize) -> Option<Lab> {
    match delay::check_available() {
        Err(e @ LabError::LabUnavailable(_))
            if std::env::var_os("CAIRN_LAB_REQUIRED").is_none() =>
        {
            eprintln!("SKIPPED: {e}");
            return None;
        }
        Err(e) => panic!("latency faults unavailable: {e}"),
        Ok(()) => {}
    }
    common::lab(hosts)
}

/// Starts a single cairn node on host `node` and waits until it answers
/// from the client host; returns the process and `IP:PORT`.
fn start_node(lab: &Lab, node: usize) -> (ProcId, String) {
    let ip = lab.addr(node).unwrap().to_string();
    let addr = format!("{ip}:{PORT}");
    let port = PORT.to_string();
    let args = ["server", "--bind", &ip, "--port", &port, "--log", "warn"];
    let server = lab
        .spawn(node, cairn_binary().to_str().unwrap(), &args)
        .unwrap();
    let (status, log) = lab
        .exec(
            lab.client(),
            TOOL,
            &["wait-ready", "--addr", &addr, "--timeout-ms", "15000"],
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(
        status.success(),
        "node never ready: {log}\nserver log: {}",
        lab.log(server)
    );
    (server, addr)
}

/// The shortest of `samples` connect + PING times (ms) from the client
/// host to `addr`.
fn connect_ping_ms(lab: &Lab, addr: &str, samples: usize) -> u64 {
    let mut all = Vec::new();
    for _ in 0..samples {
        let (status, log) = lab
            .exec(
                lab.client(),
                TOOL,
                &["wait-ready", "--addr", addr, "--timeout-ms", "5000"],
                Duration::from_secs(20),
            )
            .unwrap();
        assert!(status.success(), "wait-ready failed: {log}");
        let ms: u64 = log
            .split("ready after ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no time in {log:?}"));
        all.push(ms);
    }
    eprintln!("connect + PING to {addr}: {all:?} ms");
    all.into_iter().min().expect("at least one sample")
}

#[test]
fn a_delay_adds_its_latency_and_stopping_it_restores_the_round_trip() {
    let _serial = serial();
    let Some(lab) = lab(1) else { return };
    let t0 = Instant::now();
    let (server, addr) = start_node(&lab, 0);

    let before = connect_ping_ms(&lab, &addr, 5);
    assert!(before < 20, "{before} ms before any delay");

    let spec = DelaySpec {
        seed: 42,
        ..DelaySpec::new(100, 10)
    };
    let d = Delay::start(&lab, TOOL.as_ref(), 0, &spec).unwrap();
    assert_eq!(delay::nfqueue_rules(&lab, 0).unwrap().len(), 1);
    let during = connect_ping_ms(&lab, &addr, 5);
    // Two round trips at least (handshake, PING), each 100 ± 10 ms late.
    assert!(during >= 160, "{during} ms with 100 ± 10 ms of delay");
    let stats = d.stop().unwrap();
    eprintln!("delayer: {stats:?}");
    assert_eq!(stats.reason, "signal");
    assert!(stats.received > 0 && stats.released > 0, "{stats:?}");
    // Nothing left before its time (delay - jitter), nothing dropped.
    assert!(stats.hold_us_min >= 90_000, "{stats:?}");
    assert!(stats.hold_us_mean >= 90_000, "{stats:?}");
    assert_eq!(stats.dropped_loss + stats.dropped_cap, 0, "{stats:?}");
    assert_eq!(stats.verdict_errors, 0, "{stats:?}");

    assert!(delay::nfqueue_rules(&lab, 0).unwrap().is_empty());
    let after = connect_ping_ms(&lab, &addr, 5);
    assert!(after < 20, "{after} ms after the delay was removed");
    assert!(lab.try_wait(server).unwrap().is_none(), "the node died");
    eprintln!(
        "before {before} ms, during {during} ms, after {after} ms; test took {:?}",
        t0.elapsed()
    );
}

fn workload(kind: &str, seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        kind: kind.into(),
        keys: 3,
        key_prefix: format!("{{d}}{}:", &kind[..1]),
        processes: 4,
        timeout_ms: 1000,
        duration_ms: 0,
        think_ms: 5,
        read_percent: 50,
        ops_per_key: 200,
        seed,
    }
}

/// Holds a 100 ± 50 ms delay on `node` for `hold`, returning its counters.
fn delay_node(cluster: &Cluster<'_>, node: usize, seed: u64, hold: Duration) -> delay::DelayStats {
    let spec = DelaySpec {
        seed,
        ..DelaySpec::new(100, 50)
    };
    let d = Delay::on_node(cluster, node, &spec).unwrap();
    eprintln!("delaying n{} by 100 ± 50 ms", node + 1);
    std::thread::sleep(hold);
    let stats = d.stop().unwrap();
    eprintln!("n{}: {stats:?}", node + 1);
    stats
}

#[test]
fn register_and_counter_stay_linearizable_with_a_slow_follower_then_a_slow_leader() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let t0 = Instant::now();
    let cluster = Cluster::start(
        &lab,
        ClusterSpec::new(cairn_binary(), TOOL),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    eprintln!("cluster ready after {:?}", t0.elapsed());
    let kinds = ["register", "counter"];
    let mut procs = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let mut w = workload(kind, 7 + i as u64);
        w.duration_ms = 10_000;
        let out = lab.dir().join(format!("history-{kind}.jsonl"));
        procs.push((w.clone(), cluster.spawn_workload(&w, &out).unwrap(), out));
    }
    let key = procs[0].0.first_key();
    std::thread::sleep(Duration::from_millis(1500));
    let leader = cluster.leader_of(&key).unwrap().unwrap_or(0);
    let follower = (leader + 1) % cluster.nodes();
    let slow_follower = delay_node(&cluster, follower, 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(500));
    // The leader may have changed: aim at the current one.
    let leader = cluster.leader_of(&key).unwrap().unwrap_or(leader);
    let slow_leader = delay_node(&cluster, leader, 2, Duration::from_secs(3));
    for stats in [&slow_follower, &slow_leader] {
        assert!(stats.released > 0, "nothing was delayed: {stats:?}");
        assert!(stats.hold_us_min >= 50_000, "{stats:?}");
    }

    for (w, p, _) in &procs {
        let status = lab
            .wait_timeout(*p, Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("{} workload did not finish", w.kind));
        assert!(
            status.success(),
            "{} workload failed: {status}: {}",
            w.kind,
            lab.log(*p)
        );
    }
    for (kind, _, history, report) in check_histories(&lab, &procs, &Budget::default(), 20) {
        assert_eq!(
            report.verdict,
            Verdict::Linearizable,
            "{kind}\n{}",
            explain(&report, &history)
        );
    }
    let crashed = cluster.crashed();
    assert!(crashed.is_empty(), "nodes died: {crashed:?}");
    eprintln!("test took {:?}", t0.elapsed());
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry (the lab reaps what it waits for).
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn delays_leave_no_rule_or_process_and_a_dead_delayer_lets_packets_pass() {
    let _serial = serial();
    let Some(lab) = lab(1) else { return };
    let (_server, addr) = start_node(&lab, 0);
    let tool = std::path::Path::new(TOOL);

    // Dropped while running: rule, queue and process go.
    let d = Delay::start(&lab, tool, 0, &DelaySpec::new(100, 0)).unwrap();
    let (pid, queue) = (d.pid().unwrap(), d.queue());
    let rules = delay::nfqueue_rules(&lab, 0).unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(
        rules[0].contains(&format!("cairn-delay-{queue}")),
        "{rules:?}"
    );
    assert!(delay::bound_queues(&lab, 0).unwrap().contains(&queue));
    assert!(alive(pid));
    drop(d);
    assert!(!alive(pid), "delayer {pid} survived its Delay");
    assert!(delay::nfqueue_rules(&lab, 0).unwrap().is_empty());
    assert!(!delay::bound_queues(&lab, 0).unwrap().contains(&queue));

    // SIGKILLed delayer: its rule stays until Drop, but with no listener
    // the bypass lets packets through undelayed (no black hole).
    let only_client = DelaySpec {
        to: vec![lab.client()],
        ..DelaySpec::new(300, 0)
    };
    let d = Delay::start(&lab, tool, 0, &only_client).unwrap();
    let rules = delay::nfqueue_rules(&lab, 0).unwrap();
    assert!(rules[0].contains("-d 10.213.0.250/32"), "{rules:?}");
    // One delay per host at a time.
    assert!(Delay::start(&lab, tool, 0, &DelaySpec::new(10, 0)).is_err());
    lab.kill(d.proc()).unwrap();
    assert!(!d.is_running());
    assert_eq!(delay::nfqueue_rules(&lab, 0).unwrap().len(), 1);
    let bypassed = connect_ping_ms(&lab, &addr, 3);
    assert!(bypassed < 20, "{bypassed} ms through a dead delayer's rule");
    drop(d);
    assert!(delay::nfqueue_rules(&lab, 0).unwrap().is_empty());

    // Lifetime bound: the delayer exits on its own and says why.
    let short = DelaySpec {
        lifetime_ms: 1000,
        ..DelaySpec::new(50, 0)
    };
    let d = Delay::start(&lab, tool, 0, &short).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.is_running(), "delayer outlived its 1 s lifetime");
    let stats = d.stop().unwrap();
    assert_eq!(stats.reason, "lifetime");
    assert!(delay::nfqueue_rules(&lab, 0).unwrap().is_empty());
    assert!(delay::bound_queues(&lab, 0).unwrap().is_empty());

    // Bad specs start nothing.
    let bad = DelaySpec {
        to: vec![0],
        ..DelaySpec::new(10, 0)
    };
    assert!(Delay::start(&lab, tool, 0, &bad).is_err());
    assert!(Delay::start(&lab, tool, 0, &DelaySpec::new(delay::DELAY_MS_MAX + 1, 0)).is_err());
    assert!(delay::nfqueue_rules(&lab, 0).unwrap().is_empty());
}
