//! The set workload (unique adds, then a final read of every set) and
//! `check_set`:
//!
//! - on a 3-node cluster in the fault lab, while the leader of the sets'
//!   group is SIGKILLed and restarted (after a hold, and at once) and cut
//!   off from the other nodes, no acknowledged add may be lost and nothing
//!   never added may appear. Needs root, `ip` and `nft`; without them it
//!   prints why and skips (`CAIRN_LAB_REQUIRED=1` makes that a failure).
//!   `CAIRN_LAB_SEED=S` replaces the default seed of the fault schedule.
//! - must-fail, on one cairn node on loopback (no root needed): a saboteur
//!   deletes acknowledged elements behind the workload's back, and the
//!   checker must report them lost. The checker's own must-fail cases on
//!   hand-written histories are in `cairn-check`'s
//!   `tests/checker.rs::set_detects_lost_and_unexpected_elements`.
//!
//! The tests of this file run one at a time ([`common::serial`]).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_check::{check_set, Call, History, Outcome, SetReport, SetVerdict, Value};
use cairn_lab::cluster::WorkloadSpec;
use cairn_lab::nemesis::{Fault, Role, Schedule};
use cairn_lab::workload::{self, set_element_key, Kind};
use common::{each_fault_once, lab, loopback_server, run_under_nemesis, serial, start_cluster};

/// Seed of a test: `CAIRN_LAB_SEED` or the test's default.
fn seed(default: u64) -> u64 {
    std::env::var("CAIRN_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The final read of `key`: the successful `ReadAll` invoked last.
fn final_read(history: &History, key: &str) -> Option<usize> {
    history
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            o.key == key && o.call == Call::ReadAll && matches!(o.outcome, Outcome::Ok(_))
        })
        .max_by_key(|(i, o)| (o.invoke_ns, *i))
        .map(|(i, _)| i)
}

fn count(history: &History, f: impl Fn(&Outcome) -> bool) -> usize {
    history.ops.iter().filter(|o| f(&o.outcome)).count()
}

/// Removes from `history` the final read's copy of one element of `key`
/// whose add was acknowledged before that read began, and adds an id that
/// was never attempted; the checker must then report both.
fn must_fail_on_tampered_copy(history: &History, key: &str) {
    let fi = final_read(history, key).expect("no final read");
    let read_start = history.ops[fi].invoke_ns;
    let victim = history
        .ops
        .iter()
        .find_map(|o| match (&o.call, &o.outcome, o.complete_ns) {
            (Call::AddElement(x), Outcome::Ok(_), Some(done))
                if o.key == key && done < read_start =>
            {
                Some(*x)
            }
            _ => None,
        })
        .expect("no add acknowledged before the final read");
    let never = 1
        + history
            .ops
            .iter()
            .filter_map(|o| match o.call {
                Call::AddElement(x) => Some(x),
                _ => None,
            })
            .max()
            .unwrap_or(0)
        + 1000;
    let mut tampered = history.clone();
    let Outcome::Ok(Value::Set(members)) = &mut tampered.ops[fi].outcome else {
        panic!("final read without members");
    };
    assert!(members.contains(&victim), "{victim} not in the final read");
    members.retain(|&x| x != victim);
    members.push(never);
    let report = check_set(&tampered).unwrap();
    assert_eq!(report.verdict, SetVerdict::Invalid);
    assert_eq!(report.keys[key].lost, vec![victim]);
    assert_eq!(report.keys[key].unexpected, vec![never]);
}

/// Asserts every set key of `history` is valid and has a final read.
fn assert_valid(report: &SetReport, seed: u64) {
    assert_eq!(
        report.verdict,
        SetVerdict::Valid,
        "seed {seed}: {:#?}",
        report
            .keys
            .iter()
            .filter(|(_, r)| r.verdict != SetVerdict::Valid)
            .collect::<Vec<_>>()
    );
    for (key, r) in &report.keys {
        assert!(r.final_read.is_some(), "{key}: no final read");
        assert!(r.acknowledged > 0, "{key}: no acknowledged add");
    }
}

/// Faults aimed at the leader of the sets' group: SIGKILL + restart after
/// a hold, SIGKILL + restart at once (it comes back believing it leads),
/// and isolation from the other nodes, each once in a seeded order.
fn leader_schedule(seed: u64) -> Schedule {
    each_fault_once(
        seed,
        vec![
            Fault::KillRestart(Role::Leader),
            Fault::CrashRestart(Role::Leader),
            Fault::IsolateLeader,
        ],
        0,
    )
}

/// Runs workload `kind` ("set" or "list") on 3 keys under
/// [`leader_schedule`] in a 3-node lab, waits for recovery and checks
/// the history with `check_set`, asserting it valid with 3 keys; `None`
/// where the lab cannot run (no root, `ip` or `nft`).
fn run_under_leader_faults(
    kind: &str,
    prefix: &str,
    default_seed: u64,
) -> Option<(History, SetReport, String)> {
    let lab = lab(3)?;
    let seed = seed(default_seed);
    let schedule = leader_schedule(seed);
    let cluster = start_cluster(&lab);
    let w = WorkloadSpec {
        kind: kind.into(),
        keys: 3,
        key_prefix: prefix.into(),
        processes: 6,
        timeout_ms: 1000,
        duration_ms: schedule.end_ms() + 2000,
        think_ms: 5,
        read_percent: 20,
        ops_per_key: 0,
        seed,
    };
    let key = w.first_key();
    let out = lab.dir().join(format!("history-{kind}.jsonl"));
    run_under_nemesis(&cluster, &w, &key, &schedule, 3, &out);
    cluster
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no recovery after the nemesis: {e}"));
    let history = History::from_jsonl_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let report = check_set(&history).unwrap();
    assert_valid(&report, seed);
    assert_eq!(report.keys.len(), 3, "keys: {:?}", report.keys.keys());
    Some((history, report, key))
}

#[test]
fn set_keeps_acknowledged_adds_through_leader_kill_restart_and_isolation() {
    let _serial = serial();
    let t0 = Instant::now();
    let Some((history, report, key)) = run_under_leader_faults("set", "{t}s:", 11) else {
        return;
    };
    let acked: usize = report.keys.values().map(|r| r.acknowledged).sum();
    let present: usize = report
        .keys
        .values()
        .filter_map(|r| match &history.ops[r.final_read?].outcome {
            Outcome::Ok(Value::Set(m)) => Some(m.len()),
            _ => None,
        })
        .sum();
    let (fail, info) = (
        count(&history, |o| *o == Outcome::Fail),
        count(&history, |o| *o == Outcome::Info),
    );
    eprintln!(
        "{} ops: {acked} acknowledged adds, {present} elements in the final reads, {fail} fail, {info} info; took {:?}",
        history.ops.len(),
        t0.elapsed()
    );
    assert!(acked > 100, "too few acknowledged adds ({acked})");
    // The faults bit: some adds or reads did not simply succeed.
    assert!(fail + info > 0, "no operation failed or timed out");
    must_fail_on_tampered_copy(&history, &key);
}

/// A client on loopback that deletes the element keys of ids `0..ids` of
/// every set, over and over, until `stop`: acknowledged adds vanish.
async fn saboteur(addr: &str, prefix: &str, sets: u64, ids: i64, stop: &AtomicBool) -> usize {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut deleted = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut del = redis::cmd("DEL");
        for k in 0..sets {
            for id in 0..ids {
                del.arg(set_element_key(&format!("{prefix}k{k}"), id));
            }
        }
        deleted += del.query_async::<usize>(&mut conn).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deleted
}

#[test]
fn set_checker_catches_adds_deleted_behind_the_workloads_back() {
    let _serial = serial();
    let (_server, addr) = loopback_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(workload::wait_ready(&addr, Duration::from_secs(20)))
        .unwrap();
    let cfg = workload::Config {
        targets: vec![addr.clone()],
        keys: 2,
        key_prefix: "lab:".into(),
        read_percent: 20,
        ops_per_key: 0,
        // Long enough for many saboteur passes after ids 0..20 are
        // acknowledged (they are the first ids issued).
        ops: u64::MAX,
        processes: 4,
        timeout: Duration::from_secs(2),
        duration: Some(Duration::from_millis(1500)),
        think: Duration::from_millis(1),
        seed: 5,
        kind: Kind::Set,
    };
    let stop = AtomicBool::new(false);
    let (history, deleted) = rt.block_on(async {
        let run = async {
            let r = workload::run(cfg).await;
            stop.store(true, Ordering::Relaxed);
            r
        };
        let (r, deleted) = tokio::join!(run, saboteur(&addr, "lab:", 2, 20, &stop));
        (r.unwrap().0, deleted)
    });
    assert!(deleted > 0, "the saboteur deleted nothing");
    let report = check_set(&history).unwrap();
    assert_eq!(report.verdict, SetVerdict::Invalid, "{report:#?}");
    let lost: BTreeSet<i64> = report
        .keys
        .values()
        .flat_map(|r| r.lost.iter().copied())
        .collect();
    assert!(!lost.is_empty(), "no loss reported: {report:#?}");
    assert!(
        lost.iter().all(|&x| (0..20).contains(&x)),
        "lost elements the saboteur never touched: {lost:?}"
    );
    // Ids 20.. were left alone: each set's final read has every one of
    // them whose add was acknowledged.
    for (key, r) in &report.keys {
        assert!(r.final_read.is_some(), "{key}: no final read");
        assert!(r.unexpected.is_empty(), "{key}: {:?}", r.unexpected);
    }
}

/// The list workload (`RPUSH` of unique ids, `LRANGE` reads) under the
/// same leader faults as the set test: no acknowledged push lost, nothing
/// never pushed read, and no element read twice (a push applied twice).
#[test]
fn list_keeps_acknowledged_pushes_once_through_leader_kill_restart_and_isolation() {
    let _serial = serial();
    let t0 = Instant::now();
    let Some((history, report, key)) = run_under_leader_faults("list", "{t}l:", 12) else {
        return;
    };
    for (key, r) in &report.keys {
        assert!(
            r.duplicated.is_empty(),
            "{key}: read twice {:?}",
            r.duplicated
        );
    }
    let acked: usize = report.keys.values().map(|r| r.acknowledged).sum();
    let (fail, info) = (
        count(&history, |o| *o == Outcome::Fail),
        count(&history, |o| *o == Outcome::Info),
    );
    eprintln!(
        "{} ops: {acked} acknowledged pushes, {fail} fail, {info} info; took {:?}",
        history.ops.len(),
        t0.elapsed()
    );
    assert!(acked > 100, "too few acknowledged pushes ({acked})");
    assert!(fail + info > 0, "no operation failed or timed out");
    must_fail_on_tampered_copy(&history, &key);
}

/// Must-fail for the list workload on one loopback node: a saboteur
/// pushes ids 0..5 of every list a second time while the workload runs;
/// the checker must report them duplicated (and nothing lost).
#[test]
fn list_checker_catches_a_push_applied_twice() {
    let _serial = serial();
    let (_server, addr) = loopback_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(workload::wait_ready(&addr, Duration::from_secs(20)))
        .unwrap();
    let cfg = workload::Config {
        targets: vec![addr.clone()],
        keys: 2,
        key_prefix: "labl:".into(),
        read_percent: 20,
        ops_per_key: 0,
        ops: u64::MAX,
        processes: 4,
        timeout: Duration::from_secs(2),
        duration: Some(Duration::from_millis(1500)),
        think: Duration::from_millis(1),
        seed: 6,
        kind: Kind::List,
    };
    let stop = AtomicBool::new(false);
    let (history, pushed) = rt.block_on(async {
        let run = async {
            let r = workload::run(cfg).await;
            stop.store(true, Ordering::Relaxed);
            r
        };
        let dup = async {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            // Once ids 0..5 exist (the first issued), push each again onto
            // the list that holds it.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut pushed = 0;
            'wait: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for k in 0..2 {
                    let key = format!("labl:k{k}");
                    let items: Vec<String> = redis::cmd("LRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    for id in ["0", "1", "2", "3", "4"] {
                        if items.iter().any(|x| x == id) {
                            let _: i64 = redis::cmd("RPUSH")
                                .arg(&key)
                                .arg(id)
                                .query_async(&mut conn)
                                .await
                                .unwrap();
                            pushed += 1;
                        }
                    }
                }
                if pushed > 0 {
                    break 'wait;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pushed
        };
        let (r, pushed) = tokio::join!(run, dup);
        (r.unwrap().0, pushed)
    });
    assert!(pushed > 0, "the saboteur pushed nothing again");
    let report = check_set(&history).unwrap();
    assert_eq!(report.verdict, SetVerdict::Invalid, "{report:#?}");
    let dups: BTreeSet<i64> = report
        .keys
        .values()
        .flat_map(|r| r.duplicated.iter().copied())
        .collect();
    assert!(!dups.is_empty(), "no duplicate reported: {report:#?}");
    assert!(dups.iter().all(|&x| (0..5).contains(&x)), "{dups:?}");
    for (key, r) in &report.keys {
        assert!(r.lost.is_empty(), "{key}: lost {:?}", r.lost);
        assert!(r.unexpected.is_empty(), "{key}: {:?}", r.unexpected);
    }
}
