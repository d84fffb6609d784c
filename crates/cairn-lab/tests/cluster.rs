//! Fault-lab tests on a 3-node cairn cluster (Raft): one node per lab
//! host, workloads in the client host spread over every node, a seeded
//! nemesis aimed at the leader of the workload's group, and the histories
//! checked for linearizability. Needs root, `ip` and `nft`; without them
//! the tests print why and skip (`CAIRN_LAB_REQUIRED=1` makes that a
//! failure). The tests of this file run one at a time ([`common::serial`]).
//!
//! Seeds: each test has a fixed default seed; `CAIRN_LAB_SEED=S` replaces
//! it (the schedule is printed either way, and the same seed gives the same
//! schedule).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cairn_check::{Budget, History, Report, Verdict};
use cairn_lab::campaign::explain;
use cairn_lab::cluster::{Cluster, ClusterSpec, WorkloadSpec};
use cairn_lab::nemesis::{Event, Fault, Role, Schedule, ScheduleSpec, Step};
use cairn_lab::Lab;
use common::{cairn_binary, check_histories, lab, serial, TOOL};

/// Seed of a test: `CAIRN_LAB_SEED` or the test's default.
fn seed(default: u64) -> u64 {
    std::env::var("CAIRN_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn spec(unsafe_stale_reads: bool) -> ClusterSpec {
    let mut s = ClusterSpec::new(cairn_binary(), TOOL);
    s.unsafe_stale_reads = unsafe_stale_reads;
    s
}

/// What one scenario run produced.
struct RunResult {
    /// (kind, history, report) per workload.
    checked: Vec<(String, History, Report)>,
    /// Workload summaries (their JSON line).
    summaries: Vec<String>,
    /// What the nemesis did and saw.
    events: Vec<Event>,
}

impl RunResult {
    fn verdicts(&self) -> Vec<(String, Verdict)> {
        self.checked
            .iter()
            .map(|(k, _, r)| (k.clone(), r.verdict))
            .collect()
    }

    fn any(&self, v: Verdict) -> bool {
        self.checked.iter().any(|(_, _, r)| r.verdict == v)
    }

    fn explain(&self) -> String {
        self.checked
            .iter()
            .map(|(k, h, r)| format!("== {k}: {:?}\n{}", r.verdict, explain(r, h)))
            .collect()
    }
}

/// Starts a 3-node durable cluster in a fresh lab, runs `workloads` (all
/// on one hash tag, hence one group) while `schedule` hits that group's
/// leader, heals, and checks every history. Panics on any harness or
/// cluster failure (a node dying on its own included); returns the
/// verdicts for the caller to judge.
fn run_scenario(
    lab: &Lab,
    cluster_spec: ClusterSpec,
    workloads: &[WorkloadSpec],
    schedule: &Schedule,
    tail_ms: u64,
) -> RunResult {
    let t0 = Instant::now();
    let cluster = Cluster::start(lab, cluster_spec, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    eprintln!("cluster ready after {:?}", t0.elapsed());
    eprint!("{}", schedule.describe());
    let key = workloads[0].first_key();
    eprintln!(
        "leader probe before the run: {}",
        cluster.leader_probe(&key).unwrap().raw
    );
    let duration_ms = schedule.end_ms() + tail_ms;
    let mut procs = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let mut w = w.clone();
        w.duration_ms = duration_ms;
        let out = lab.dir().join(format!("history-{i}-{}.jsonl", w.kind));
        let p = cluster.spawn_workload(&w, &out).unwrap();
        procs.push((w, p, out));
    }
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let events = std::thread::scope(|s| {
        let nemesis = s.spawn(|| schedule.run(&cluster, &key, start, &stop));
        let mut statuses = Vec::new();
        for (_, p, _) in &procs {
            statuses.push(
                lab.wait_timeout(
                    *p,
                    Duration::from_millis(duration_ms) + Duration::from_secs(60),
                )
                .unwrap(),
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let events = nemesis.join().expect("nemesis panicked");
        for ((w, p, _), st) in procs.iter().zip(&statuses) {
            let st = st.unwrap_or_else(|| panic!("{} workload did not finish", w.kind));
            assert!(
                st.success(),
                "{} workload failed: {st}: {}",
                w.kind,
                lab.log(*p)
            );
        }
        events.expect("nemesis failed")
    });
    eprintln!("nemesis did {} things", events.len());
    let crashed = cluster.crashed();
    assert!(crashed.is_empty(), "nodes died on their own: {crashed:?}");
    // The cluster must recover once everything is healed.
    cluster
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no recovery after the nemesis: {e}"));
    match cluster.compare_replicas(Duration::from_secs(20)).unwrap() {
        None => eprintln!("replicas converged: equal applied index and digest in every group"),
        Some(d) => {
            assert!(!d.starts_with("DIVERGED"), "{d}");
            eprintln!("note: {d}");
        }
    }
    let mut checked = Vec::new();
    let mut summaries = Vec::new();
    for (kind, summary, history, report) in check_histories(lab, &procs, &Budget::default(), 100) {
        checked.push((kind, history, report));
        summaries.push(summary);
    }
    eprintln!("scenario took {:?}", t0.elapsed());
    RunResult {
        checked,
        summaries,
        events,
    }
}

fn workload(kind: &str, tag: &str, processes: usize, read_percent: u8, seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        kind: kind.into(),
        keys: 3,
        key_prefix: format!("{{{tag}}}{}:", &kind[..1]),
        processes,
        timeout_ms: 1000,
        duration_ms: 0,
        think_ms: 5,
        read_percent,
        ops_per_key: 200,
        seed,
    }
}

/// Faults of test (a): leader isolation, leader SIGKILL + restart (same
/// data dir), leader pause longer than the election timeout, plus a
/// one-way cut and packet loss, each once in a seeded order.
fn leader_faults_schedule(seed: u64) -> Schedule {
    Schedule::generate(
        seed,
        &ScheduleSpec {
            faults: vec![
                Fault::IsolateLeader,
                Fault::KillRestart(Role::Leader),
                Fault::Pause(Role::Leader),
                Fault::OneWay { from_leader: true },
                Fault::Loss(20),
            ],
            each_once: true,
            warmup_ms: 2000,
            hold_ms: (3000, 4500),
            // Election timeout max is 2 s.
            pause_min_ms: 3500,
            gap_ms: (2000, 3000),
            total_ms: 0,
        },
    )
}

/// Register and counter workloads (6 clients each, half reads) on one
/// group under `schedule`; both histories must be linearizable.
fn register_and_counter(lab: &Lab, seed: u64, schedule: &Schedule) -> RunResult {
    let r = run_scenario(
        lab,
        spec(false),
        &[
            workload("register", "t", 6, 50, seed),
            workload("counter", "t", 6, 50, seed + 1),
        ],
        schedule,
        3000,
    );
    assert!(
        r.checked
            .iter()
            .all(|(_, _, rep)| rep.verdict == Verdict::Linearizable),
        "seed {seed}: {:?}\n{}",
        r.verdicts(),
        r.explain()
    );
    r
}

#[test]
fn register_and_counter_survive_leader_isolation_kill_and_pause() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let seed = seed(7);
    eprintln!("seed {seed}");
    let schedule = leader_faults_schedule(seed);
    let r = register_and_counter(&lab, seed, &schedule);
    // The faults bit: some operations ended indeterminate or failed.
    let info: u64 = r
        .summaries
        .iter()
        .filter_map(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .filter_map(|v| v.get("info")?.as_u64())
        .sum();
    assert!(
        info > 0,
        "the nemesis caused no indeterminate ops: {:?}",
        r.summaries
    );
}

/// Leadership transfer under load: the workload group's leader is
/// SIGKILLed and restarted (its groups elect leaders elsewhere), then
/// `CLUSTER REBALANCE` hands the groups back to their preferred nodes
/// (cairn's own transfer: requests refused and appends withheld on the
/// old leader until the followers' leases lapse, then the preferred node
/// campaigns). Histories must stay linearizable and something must move.
#[test]
fn register_and_counter_stay_linearizable_through_leadership_transfers() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let seed = seed(11);
    eprintln!("seed {seed}");
    let step = |at_ms, hold_ms, fault| Step {
        at_ms,
        hold_ms,
        fault,
        pick: seed,
    };
    let schedule = Schedule {
        seed,
        steps: vec![
            // Down longer than a failover (lease 2 s + election 1-2 s),
            // so the other nodes elect leaders for its groups.
            step(2000, 6000, Fault::KillRestart(Role::Leader)),
            // A move takes about one election timeout (2 s here).
            step(12_000, 500, Fault::Rebalance),
        ],
    };
    let r = register_and_counter(&lab, seed, &schedule);
    // Each REBALANCE answered with how many groups moved (":N").
    let moved: Vec<i64> = r
        .events
        .iter()
        .filter_map(|e| e.text.split("REBALANCE via ").nth(1))
        .filter_map(|t| t.split("-> :").nth(1)?.trim().parse().ok())
        .collect();
    assert_eq!(moved.len(), 1, "one answered rebalance: {:?}", r.events);
    assert!(moved[0] > 0, "the rebalance moved no group: {moved:?}");
}

/// The must-show schedule: the register group's leader is cut off from the
/// other nodes (clients still reach it, so some read through the isolated
/// old leader) while the majority elects a new leader and keeps writing;
/// then a follower is cut off and lags. Seeded order and timings.
fn stale_read_schedule(seed: u64) -> Schedule {
    Schedule::generate(
        seed,
        &ScheduleSpec {
            faults: vec![
                Fault::IsolateLeader,
                Fault::Halves {
                    leader_in_minority: false,
                },
            ],
            each_once: true,
            warmup_ms: 2000,
            hold_ms: (4000, 5000),
            pause_min_ms: 0,
            gap_ms: (2000, 2500),
            total_ms: 0,
        },
    )
}

/// THE MUST-SHOW: with `--unsafe-stale-reads` on every node (reads answered
/// from the local replica with no check) the same seeded schedule gives a
/// history the checker rejects, while the default (linearizable reads)
/// passes it. Several seeds are tried only if the unsafe run passes by
/// luck; every default run must pass.
#[test]
fn unsafe_stale_reads_are_caught_and_default_reads_pass_the_same_schedule() {
    let _serial = serial();
    if cairn_lab::check_available().is_err() {
        // Prints SKIPPED or fails under CAIRN_LAB_REQUIRED.
        let _ = lab(3);
        return;
    }
    const ATTEMPTS: u64 = 3;
    let first = seed(11);
    let mut verdicts = Vec::new();
    for attempt in 0..ATTEMPTS {
        let seed = first + attempt;
        let schedule = stale_read_schedule(seed);
        let w = [workload("register", "s", 9, 70, seed)];
        eprintln!("=== seed {seed}: default build (linearizable reads)");
        let safe = {
            let lab = lab(3).expect("lab");
            run_scenario(&lab, spec(false), &w, &schedule, 2000)
        };
        assert!(
            safe.checked
                .iter()
                .all(|(_, _, r)| r.verdict == Verdict::Linearizable),
            "default reads failed seed {seed}: {:?}\n{}",
            safe.verdicts(),
            safe.explain()
        );
        eprintln!("=== seed {seed}: --unsafe-stale-reads");
        let unsafe_run = {
            let lab = lab(3).expect("lab");
            run_scenario(&lab, spec(true), &w, &schedule, 2000)
        };
        eprintln!("unsafe verdicts: {:?}", unsafe_run.verdicts());
        let caught = unsafe_run.any(Verdict::NotLinearizable);
        verdicts.push((seed, safe.verdicts(), unsafe_run.verdicts()));
        if caught {
            eprintln!(
                "caught stale reads with seed {seed}:\n{}",
                unsafe_run.explain()
            );
            eprintln!("verdicts so far: {verdicts:?}");
            return;
        }
    }
    panic!("--unsafe-stale-reads was never reported NOT linearizable: {verdicts:?}");
}

/// Regression test for the stale read found by the campaign (seed
/// 20261126, round 9; see docs/VERIFICATION.md): the leader of the
/// workload's group is SIGKILLed and restarted at once, before the others'
/// election timeout. The openraft engine restored it as leader of its old term, and
/// cairn serves reads on it before it has re-learned the commit index
/// (openraft's read index is max(first log of the term, committed), and
/// `committed` restarts at the snapshot), so a read can miss acknowledged
/// writes. Fixed in cairn-cluster (no read before a restarted node has
/// re-applied its recovered log); this keeps it fixed on the raft-rs engine
/// too (a restarted node is a follower; a new leader answers no read before
/// it committed an entry of its term).
#[test]
fn restarted_leader_serves_no_stale_reads() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let seed = seed(5);
    let schedule = Schedule::generate(
        seed,
        &ScheduleSpec {
            faults: vec![Fault::CrashRestart(Role::Leader); 4],
            each_once: true,
            warmup_ms: 2000,
            hold_ms: (3000, 4000),
            pause_min_ms: 0,
            gap_ms: (100, 200),
            total_ms: 0,
        },
    );
    let r = run_scenario(
        &lab,
        spec(false),
        &[
            workload("register", "q", 9, 70, seed),
            workload("counter", "q", 6, 50, seed + 1),
        ],
        &schedule,
        2000,
    );
    assert!(
        r.checked
            .iter()
            .all(|(_, _, rep)| rep.verdict == Verdict::Linearizable),
        "seed {seed}: {:?}\n{}",
        r.verdicts(),
        r.explain()
    );
}

/// Cleanup with a whole cluster: nodes (one paused, one killed and
/// restarted), a running workload, nemesis rules and durable data dirs;
/// dropping the lab leaves no namespace, link, process, marker, log or
/// data folder.
#[test]
fn dropping_a_cluster_lab_leaves_nothing_behind() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let prefix = lab.prefix().to_owned();
    let cluster = Cluster::start(&lab, spec(false), Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    let out = lab.dir().join("history.jsonl");
    let mut w = workload("register", "x", 3, 50, 1);
    w.duration_ms = 600_000;
    let wl = cluster.spawn_workload(&w, &out).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill(1).unwrap();
    cluster.restart(1).unwrap();
    cluster.pause(2).unwrap();
    lab.partition_one_way(0, 1).unwrap();
    lab.loss(lab.client(), 0, 10).unwrap();
    let data: Vec<PathBuf> = (0..3).map(|i| cluster.data_dir(i)).collect();
    for d in &data {
        assert!(d.exists(), "data dir {} missing", d.display());
    }
    assert_eq!(cluster.starts(1), 2);
    let pids = lab.pids();
    assert_eq!(
        pids.len(),
        6,
        "3 nodes + 1 restart + probe + workload: {pids:?}"
    );
    let live: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(live.len() >= 4, "nodes and workload should run: {live:?}");
    assert!(lab.try_wait(wl).unwrap().is_none(), "workload ended early");
    let marker = std::path::Path::new(cairn_lab::MARKER_DIR).join(&prefix);
    assert!(marker.exists());
    let dir = lab.dir().to_owned();
    drop(cluster);

    drop(lab);

    let left: Vec<String> = cairn_lab::list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&prefix),
        "links left in the root namespace: {links}"
    );
    for pid in &live {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived the lab"
        );
    }
    assert!(!marker.exists(), "marker {} left", marker.display());
    if std::env::var_os("CAIRN_LAB_KEEP_LOGS").is_none() {
        assert!(!dir.exists(), "lab folder {} left", dir.display());
        for d in &data {
            assert!(!d.exists(), "data dir {} left", d.display());
        }
    }
}

/// Diagnostic, not run by default: start and stop a cluster many times
/// (`CAIRN_LAB_STARTS`, default 20) to catch nodes that stop answering at
/// start-up; on failure the lab folder (logs, gdb stacks) is kept.
/// `cargo test -p cairn-lab --test cluster -- --ignored repeated_starts`
#[test]
#[ignore = "diagnostic: ~20 cluster starts (~2 min); run on demand"]
fn repeated_starts() {
    let _serial = serial();
    let n: usize = std::env::var("CAIRN_LAB_STARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for i in 0..n {
        let Some(lab) = lab(3) else { return };
        let t = Instant::now();
        let cluster = Cluster::start(&lab, spec(false), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("start {i}: {e}"));
        // A little traffic through every node, then a leader check.
        let out = lab.dir().join("h.jsonl");
        let mut w = workload("register", "z", 6, 50, i as u64);
        w.duration_ms = 1500;
        let p = cluster.spawn_workload(&w, &out).unwrap();
        let st = lab.wait_timeout(p, Duration::from_secs(60)).unwrap();
        assert!(st.is_some_and(|s| s.success()), "workload: {}", lab.log(p));
        cluster
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("start {i}, after traffic: {e}"));
        eprintln!("start {i}: ok in {:?}", t.elapsed());
    }
}
