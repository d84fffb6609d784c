//! The lock workload (contended acquires with WAIT, fenced increments,
//! stale holders stalling past their lease, releases, a final read of
//! every fenced counter) and `check_lock_history`:
//!
//! - on a 3-node cluster in the fault lab, while the leader of the locks'
//!   group is SIGKILLed and restarted, paused past every lease and cut off
//!   from the other nodes: holders never overlap, tokens grow, no stale
//!   write is accepted, the counters keep every acknowledged increment and
//!   double none. Then copies of the recorded history with one planted
//!   bug each must fail. Needs root, `ip` and `nft`; without them it
//!   prints why and skips (`CAIRN_LAB_REQUIRED=1` makes that a failure).
//!   `CAIRN_LAB_SEED=S` replaces the default seed of the fault schedule.
//! - on one cairn node on loopback (no root needed): the workload's run is
//!   valid and has grants and refused stale writes; and must-fail, a
//!   saboteur force-releases the locks and increments the counters
//!   unfenced behind the workload's back, and the checker must report
//!   overlapping holders and counters off their bounds. The checker's own
//!   must-fail cases on hand-written histories are in `cairn-check`'s
//!   `tests/fenced.rs`.
//!
//! The tests of this file run one at a time ([`common::serial`]).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_check::{check_lock_history, FenceOutcome, LockHistoryReport, LockVerdict};
use cairn_lab::cluster::WorkloadSpec;
use cairn_lab::nemesis::{Fault, Role, Schedule};
use cairn_lab::workload::{self, fenced_counter_key, lock_name, Kind, LockRun, LOCK_LEASE_MS};
use common::{each_fault_once, lab, loopback_server, run_under_nemesis, serial, start_cluster};

/// Seed of a test: `CAIRN_LAB_SEED` or the test's default.
fn seed(default: u64) -> u64 {
    std::env::var("CAIRN_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn outcomes(run: &LockRun, o: FenceOutcome) -> usize {
    run.history.writes.iter().filter(|w| w.outcome == o).count()
}

/// Asserts the run is valid, every counter was read, and the workload did
/// its job: grants, accepted writes and, where `need_refused`, refused
/// (stale) writes.
///
/// Under faults the work varies a lot between runs (19 to 104 grants
/// over 12 seeds; renewals make holds longer) and a stalled holder's
/// write may land in a fault and end unknown, so the cluster test asks
/// for fewer grants and no refusal: refusals are asserted on one node, where
/// nothing else decides them.
fn assert_valid_with_work(
    run: &LockRun,
    report: &LockHistoryReport,
    min_grants: usize,
    need_refused: bool,
) {
    assert_eq!(report.verdict, LockVerdict::Valid, "{report:#?}");
    for b in &report.counters {
        assert!(b.final_value.is_some(), "{} never read", b.key);
    }
    let grants = run.history.holds.len();
    let (accepted, refused) = (
        outcomes(run, FenceOutcome::Accepted),
        outcomes(run, FenceOutcome::Refused),
    );
    eprintln!(
        "{} commands ({} ok, {} fail, {} info): {grants} grants, {accepted} accepted, {refused} refused, {} unknown writes",
        run.ops,
        run.ok,
        run.fail,
        run.info,
        outcomes(run, FenceOutcome::Unknown)
    );
    assert!(grants >= min_grants, "too few grants ({grants})");
    assert!(accepted > 0, "no fenced write accepted");
    if need_refused {
        assert!(refused > 0, "no stale write was refused");
    }
}

/// Copies of `run` with one planted bug each: a grant moved into another
/// holder's hold; a write made in its holder's hold carrying an older
/// holder's token; a counter that lost an acknowledged increment. The
/// checker must reject each.
fn must_fail_on_tampered_copies(run: &LockRun) {
    let holds = &run.history.holds;
    let (a, b) = (0..holds.len())
        .flat_map(|a| (0..holds.len()).map(move |b| (a, b)))
        .find(|&(a, b)| {
            let (s, e) = holds[a].certain_interval();
            holds[a].lock == holds[b].lock && a != b && e > s + 2
        })
        .expect("no two holds of a lock, one with a certain interval");
    let mut overlap = run.history.clone();
    let ack = holds[a].acquire_ack_ns;
    overlap.holds[b].acquire_invoke_ns = ack;
    overlap.holds[b].acquire_ack_ns = ack + 1;
    overlap.holds[b].release_invoke_ns = Some(ack + 2);
    let r = check_lock_history(&overlap).unwrap();
    assert_eq!(r.verdict, LockVerdict::Invalid);
    assert!(!r.locks.overlaps.is_empty(), "{r:#?}");

    // An accepted write inside its own grant's certain hold, sent with
    // another grant's token: the server would have had to accept a token
    // that did not hold the lock.
    let writes = &run.history.writes;
    let (w, other) = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| w.outcome == FenceOutcome::Accepted)
        .find_map(|(i, w)| {
            let own = holds
                .iter()
                .find(|h| h.lock == w.lock && h.token == w.token)?;
            let (s, e) = own.certain_interval();
            let other = holds
                .iter()
                .find(|h| h.lock == w.lock && h.token != w.token)?;
            (s <= w.invoke_ns && w.ack_ns < e).then_some((i, other.token))
        })
        .expect("no accepted write inside its grant's certain hold");
    let mut stale = run.history.clone();
    stale.writes[w].token = other;
    let r = check_lock_history(&stale).unwrap();
    assert_eq!(r.verdict, LockVerdict::Invalid);
    assert!(!r.fenced.violations.is_empty(), "{r:#?}");

    let mut lost = run.history.clone();
    let valid = check_lock_history(&run.history).unwrap();
    let bound = valid
        .counters
        .iter()
        .find(|b| b.accepted > 0)
        .expect("no counter with an accepted write");
    lost.finals.insert(bound.key.clone(), Some(bound.low - 1));
    let r = check_lock_history(&lost).unwrap();
    assert_eq!(r.verdict, LockVerdict::Invalid, "{:#?}", r.counters);
}

/// Faults aimed at the leader of the locks' group, each once in a seeded
/// order: SIGKILL + restart after a hold, SIGSTOP for longer than any
/// lease, isolation from the other nodes.
fn leader_schedule(seed: u64) -> Schedule {
    each_fault_once(
        seed,
        vec![
            Fault::KillRestart(Role::Leader),
            Fault::Pause(Role::Leader),
            Fault::IsolateLeader,
        ],
        LOCK_LEASE_MS.1 + 500,
    )
}

#[test]
fn locks_stay_exclusive_and_fenced_through_leader_kill_pause_and_isolation() {
    let _serial = serial();
    let Some(lab) = lab(3) else { return };
    let t0 = Instant::now();
    let seed = seed(13);
    let schedule = leader_schedule(seed);
    let cluster = start_cluster(&lab);
    let w = WorkloadSpec {
        kind: "lock".into(),
        keys: 2,
        key_prefix: "{t}l:".into(),
        processes: 6,
        timeout_ms: 1000,
        duration_ms: schedule.end_ms() + 2000,
        think_ms: 5,
        read_percent: 0,
        ops_per_key: 0,
        seed,
    };
    // The nemesis aims at the group of the first lock (and its counter).
    let key = lock_name(&w.key_prefix, 0);
    let out = lab.dir().join("history-lock.json");
    run_under_nemesis(&cluster, &w, &key, &schedule, 3, &out);

    let run: LockRun = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let report = check_lock_history(&run.history).unwrap();
    assert_valid_with_work(&run, &report, 10, false);
    // The faults bit: some commands did not simply succeed.
    assert!(run.info + run.fail > 0, "no command failed or timed out");
    eprintln!("took {:?}", t0.elapsed());
    must_fail_on_tampered_copies(&run);
}

fn loopback_cfg(addr: &str, duration: Duration) -> workload::Config {
    workload::Config {
        targets: vec![addr.to_owned()],
        keys: 2,
        key_prefix: "lab:".into(),
        read_percent: 0,
        ops_per_key: 0,
        ops: u64::MAX,
        processes: 6,
        timeout: Duration::from_secs(1),
        duration: Some(duration),
        think: Duration::from_millis(2),
        seed: 9,
        kind: Kind::Lock,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn lock_workload_on_one_node_is_valid_with_grants_and_refused_stale_writes() {
    let _serial = serial();
    let (_server, addr) = loopback_server();
    let rt = runtime();
    rt.block_on(workload::wait_ready(&addr, Duration::from_secs(20)))
        .unwrap();
    // 10 s, not 6: a stale write (8% of writes stall past the lease) is
    // rare, and 6 s gave 0-2 of them depending on scheduling (0 once in CI
    // after replies began to go out in bursts); 10 s gives ~5.
    let cfg = loopback_cfg(&addr, Duration::from_secs(10));
    let (run, stats) = rt.block_on(workload::run_locks(cfg)).unwrap();
    assert_eq!(stats.unexpected, 0, "{stats:?}");
    assert_eq!(run.info, 0, "nothing should time out on loopback");
    let report = check_lock_history(&run.history).unwrap();
    assert_valid_with_work(&run, &report, 30, true);
    assert_eq!(report.counters.len(), 2);
    must_fail_on_tampered_copies(&run);
}

/// A client on loopback that, until `stop`, force-releases every lock
/// (breaking mutual exclusion) and increments every counter unfenced.
async fn saboteur(addr: &str, locks: u64, stop: &AtomicBool) -> (u64, u64) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (mut released, mut increments) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for i in 0..locks {
            let lock = lock_name("lab:", i);
            let mut force = redis::cmd("LOCK.FORCERELEASE");
            force.arg(&lock);
            released += force.query_async::<u64>(&mut conn).await.unwrap();
            if released % 20 == 1 {
                let mut incr = redis::cmd("INCRBY");
                incr.arg(fenced_counter_key(&lock)).arg(1);
                incr.query_async::<i64>(&mut conn).await.unwrap();
                increments += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (released, increments)
}

#[test]
fn lock_checker_catches_force_released_locks_and_unfenced_increments() {
    let _serial = serial();
    let (_server, addr) = loopback_server();
    let rt = runtime();
    rt.block_on(workload::wait_ready(&addr, Duration::from_secs(20)))
        .unwrap();
    let cfg = loopback_cfg(&addr, Duration::from_secs(4));
    let stop = AtomicBool::new(false);
    let (run, (released, increments)) = rt.block_on(async {
        let work = async {
            let r = workload::run_locks(cfg).await;
            stop.store(true, Ordering::Relaxed);
            r
        };
        let (r, sabotage) = tokio::join!(work, saboteur(&addr, 2, &stop));
        (r.unwrap().0, sabotage)
    });
    eprintln!("saboteur: {released} forced releases, {increments} unfenced increments");
    assert!(released > 0 && increments > 0, "the saboteur did nothing");
    let report = check_lock_history(&run.history).unwrap();
    assert_eq!(report.verdict, LockVerdict::Invalid, "{report:#?}");
    assert!(
        !report.locks.overlaps.is_empty(),
        "no overlapping holders reported: {report:#?}"
    );
    assert!(
        report
            .counters
            .iter()
            .any(|b| b.verdict() == LockVerdict::Invalid),
        "no counter off its bound: {:#?}",
        report.counters
    );
}
