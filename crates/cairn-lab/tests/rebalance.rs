//! Issue 12's must-show on the fault lab (its loopback variant, which
//! runs with or without root): a cluster with replication factor 3 grows
//! from 3 to 5 nodes and shrinks to 4 while register, counter and set
//! workloads run through two of the original nodes, and a nemesis kills
//! (SIGKILL, restart on the same data) the leader of a workload's group
//! every few seconds, also during the moves. Then: every history checked
//! (linearizable; no acknowledged set element lost or invented), every
//! group back on exactly 3 replicas, none on the removed node, the
//! replicas of each group identical, and each step's copied replicas
//! (from the groups' replica sets before and after, as the nodes report
//! them) within 1.1x of the placement's theoretical minimum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_cluster::placement::{minimum_moves, Member, Placement};
use cairn_lab::loopback::LoopbackCluster;
use cairn_lab::workload::{self, Kind};

mod common;

const GROUPS: u16 = 16;
const RF: usize = 3;
/// Nodes prepared; the first three form the cluster.
const NODES: usize = 5;

/// `cairn server` arguments: replication factor 3, and the lab's timings.
fn args() -> Vec<&'static str> {
    let mut a = vec!["--replication-factor", "3"];
    a.extend(common::debug_timing());
    a
}

/// Locks the shared cluster (a panicking holder does not poison it for
/// the rest of the test).
fn lock(c: &Mutex<LoopbackCluster>) -> std::sync::MutexGuard<'_, LoopbackCluster> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One command on a fresh connection to `addr`, waiting at most `limit`;
/// the reply as text (`-...` for an error reply).
fn cmd(addr: &str, argv: &[&str], limit: Duration) -> Result<String, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(limit))
        .map_err(|e| e.to_string())?;
    let mut c = redis::cmd(argv[0]);
    for a in &argv[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(&mut con) {
        Ok(redis::Value::Okay) => Ok("OK".into()),
        Ok(redis::Value::SimpleString(s)) => Ok(s),
        Ok(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Ok(redis::Value::VerbatimString { text, .. }) => Ok(text),
        Ok(v) => Ok(format!("{v:?}")),
        Err(e) if e.is_timeout() || e.is_io_error() => Err(e.to_string()),
        Err(e) => Ok(format!("-{e}")),
    }
}

/// Which members hold a replica of each group (from their `CLUSTER
/// DIGEST`, which lists the groups held), with each replica's (applied
/// index, digest); `None` while a member does not answer.
type Replicas = BTreeMap<u16, BTreeMap<usize, (u64, String)>>;

fn replicas(c: &LoopbackCluster) -> Option<Replicas> {
    let targets = c.targets();
    let mut out: Replicas = BTreeMap::new();
    for i in (0..NODES).filter(|&i| c.is_member(i)) {
        let text = cmd(&targets[i], &["CLUSTER", "DIGEST"], Duration::from_secs(3)).ok()?;
        if text.starts_with('-') {
            return None;
        }
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(g), Some(idx), Some(d)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(g), Ok(idx)) = (g.parse::<u16>(), idx.parse::<u64>()) else {
                continue;
            };
            out.entry(g).or_default().insert(i, (idx, d.to_string()));
        }
    }
    Some(out)
}

/// The replica sets as node ids (index + 1), per group in group order.
fn placement_of(r: &Replicas) -> Placement {
    Placement {
        groups: (0..GROUPS)
            .map(|g| {
                r.get(&g)
                    .map(|m| m.keys().map(|&i| i as u64 + 1).collect())
                    .unwrap_or_default()
            })
            .collect(),
    }
}

/// Waits (at most `limit`) until every member says its placement settled
/// and every group is on exactly `RF` members; returns the replica sets.
fn wait_settled(c: &Mutex<LoopbackCluster>, limit: Duration, what: &str) -> Replicas {
    let deadline = Instant::now() + limit;
    let mut last: String;
    loop {
        {
            let c = lock(c);
            let targets = c.targets();
            let settled = (0..NODES).filter(|&i| c.is_member(i)).all(|i| {
                cmd(&targets[i], &["INFO", "cluster"], Duration::from_secs(3))
                    .is_ok_and(|t| t.contains("cairn_placement_settled:1"))
            });
            match replicas(&c) {
                Some(r) => {
                    let placed = (0..GROUPS).all(|g| r.get(&g).is_some_and(|m| m.len() == RF));
                    if settled && placed {
                        return r;
                    }
                    last = format!("settled {settled}: {:?}", placement_of(&r).groups);
                }
                None => last = "a member does not answer CLUSTER DIGEST (see its log)".into(),
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the placement did not settle in {limit:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Sends `argv` (ADDNODE/DELNODE/SETTING, which wait for the groups) to
/// the members other than node `avoid` (the one joining or leaving) in
/// turn until one says OK (a member may be down for the nemesis), or,
/// once one attempt went out, answers with `done_if` (a retried DELNODE
/// finds the node gone already); at most `limit`.
fn admin(
    c: &Mutex<LoopbackCluster>,
    argv: &[&str],
    limit: Duration,
    avoid: Option<usize>,
    done_if: Option<&str>,
) {
    let deadline = Instant::now() + limit;
    let mut i = 0;
    let mut tried = false;
    loop {
        let (addr, member) = {
            let c = lock(c);
            (c.targets()[i % NODES].clone(), c.is_member(i % NODES))
        };
        if member && avoid != Some(i % NODES) {
            match cmd(&addr, argv, Duration::from_secs(150)) {
                Ok(r) if r == "OK" => return,
                Ok(r) if tried && done_if.is_some_and(|d| r.contains(d)) => return,
                r => eprintln!("{argv:?} via {addr}: {r:?}; retrying"),
            }
            tried = true;
        }
        assert!(Instant::now() < deadline, "{argv:?} never succeeded");
        i += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Copies between two settled placements against the minimum.
fn step_moves(before: &Replicas, after: &Replicas, members: &[u64]) -> (usize, usize) {
    let (b, a) = (placement_of(before), placement_of(after));
    let copies = a
        .groups
        .iter()
        .zip(&b.groups)
        .map(|(now, was)| now.iter().filter(|id| !was.contains(id)).count())
        .sum();
    let ms: Vec<Member> = members
        .iter()
        .map(|&id| Member {
            id,
            weight: 1,
            zone: None,
        })
        .collect();
    let min = minimum_moves(&b, &ms, GROUPS, RF).expect("a valid placement");
    (copies, min)
}

#[test]
fn three_to_five_to_four_nodes_under_load_and_leader_kills() {
    let _serial = common::serial();
    let bin = common::cairn_binary();
    let c = LoopbackCluster::start_members(&bin, NODES, 3, GROUPS, &args())
        .expect("loopback cluster starts");
    let targets = c.targets();
    let c = Arc::new(Mutex::new(c));
    let h0 = wait_settled(&c, Duration::from_secs(60), "3 nodes");

    // Load through n1 and n3 (n2 is removed at the end).
    let load_targets = vec![targets[0].clone(), targets[2].clone()];
    let tags = ["rr", "cc", "ss"];
    let keys: Vec<String> = tags.iter().map(|t| format!("{{{t}}}:k0")).collect();
    let duration = Duration::from_secs(50);
    let runs: Vec<_> = [(Kind::Register, 0usize), (Kind::Counter, 1), (Kind::Set, 2)]
        .into_iter()
        .map(|(kind, t)| {
            let cfg = workload::Config {
                targets: load_targets.clone(),
                keys: 3,
                key_prefix: format!("{{{}}}:", tags[t]),
                read_percent: if kind == Kind::Set { 20 } else { 50 },
                ops_per_key: if kind == Kind::Set { 0 } else { 40 },
                ops: 1_000_000,
                processes: 4,
                timeout: Duration::from_secs(1),
                duration: Some(duration),
                think: Duration::from_millis(10),
                seed: 120 + t as u64,
                kind,
            };
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                (kind, rt.block_on(workload::run(cfg)))
            })
        })
        .collect();

    // The nemesis: every 4 s, SIGKILL the leader of a workload group
    // (in turn), restart it 2 s later. Held off while `quiet`.
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = Arc::new(AtomicBool::new(false));
    let moving = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicUsize::new(0));
    let kills: Arc<Mutex<Vec<(Duration, usize)>>> = Arc::default();
    let t0 = Instant::now();
    let nemesis = {
        let (c, stop, quiet, moving, down, kills) = (
            c.clone(),
            stop.clone(),
            quiet.clone(),
            moving.clone(),
            down.clone(),
            kills.clone(),
        );
        let (targets, keys) = (targets.clone(), keys.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) && kills.lock().map_or(0, |k| k.len()) < 24 {
                // Faster while replicas move.
                let gap = if moving.load(Ordering::Relaxed) { 1 } else { 4 };
                std::thread::sleep(Duration::from_secs(gap));
                if quiet.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                    continue;
                }
                let members: Vec<String> = {
                    let c = lock(&c);
                    (0..NODES)
                        .filter(|&i| c.is_member(i))
                        .map(|i| targets[i].clone())
                        .collect()
                };
                let key = &keys[turn % keys.len()];
                turn += 1;
                let report = rt.block_on(cairn_lab::probe::leader(
                    &members,
                    key,
                    Duration::from_millis(700),
                ));
                let Some(i) = report
                    .leader
                    .and_then(|l| targets.iter().position(|t| *t == l))
                else {
                    continue;
                };
                down.fetch_add(1, Ordering::SeqCst);
                {
                    let mut c = lock(&c);
                    if !c.is_member(i) {
                        down.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    c.kill(i).expect("kill");
                }
                if let Ok(mut k) = kills.lock() {
                    k.push((t0.elapsed(), i));
                }
                std::thread::sleep(Duration::from_millis(1500));
                {
                    let mut c = lock(&c);
                    if c.is_member(i) {
                        c.restart(i).expect("restart");
                    }
                }
                down.fetch_sub(1, Ordering::SeqCst);
            }
        })
    };
    // Replica sets are read with every member up and the nemesis held off.
    let settle = |what: &str| -> Replicas {
        moving.store(false, Ordering::SeqCst);
        quiet.store(true, Ordering::SeqCst);
        while down.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = wait_settled(&c, Duration::from_secs(180), what);
        quiet.store(false, Ordering::SeqCst);
        r
    };

    // Two groups move at a time, so that each step lasts a while.
    admin(
        &c,
        &["CLUSTER", "SETTING", "rebalance-max-moves", "2"],
        Duration::from_secs(30),
        None,
        None,
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut steps: Vec<(&str, Duration, Duration, usize, usize)> = Vec::new();
    let mut before = h0.clone();
    for (what, node, members) in [
        ("3 -> 4 (n4 joins)", 3usize, vec![1u64, 2, 3, 4]),
        ("4 -> 5 (n5 joins)", 4, vec![1, 2, 3, 4, 5]),
        ("5 -> 4 (n2 leaves)", 1, vec![1, 3, 4, 5]),
    ] {
        let start = t0.elapsed();
        moving.store(true, Ordering::SeqCst);
        let id = (node + 1).to_string();
        if members.contains(&(node as u64 + 1)) {
            let spec = {
                let mut c = lock(&c);
                c.join(node).expect("start the new node");
                c.node_spec(node).expect("its address")
            };
            let add = ["CLUSTER", "ADDNODE", &id, &spec];
            admin(&c, &add, Duration::from_secs(240), Some(node), None);
        } else {
            let del = ["CLUSTER", "DELNODE", &id];
            let gone = Some("is not a member");
            admin(&c, &del, Duration::from_secs(240), Some(node), gone);
            lock(&c).retire(node).expect("stop the removed node");
        }
        let after = settle(what);
        let (copies, min) = step_moves(&before, &after, &members);
        eprintln!(
            "{what}: {copies} replicas copied, minimum {min}, took {:?}",
            t0.elapsed() - start
        );
        steps.push((what, start, t0.elapsed(), copies, min));
        before = after;
    }
    let loaded = t0.elapsed() < duration;
    // Load and faults end; every history is checked.
    for run in runs {
        common::check_workload(run);
    }
    stop.store(true, Ordering::SeqCst);
    nemesis.join().expect("nemesis");
    let kills = kills.lock().map(|k| k.clone()).unwrap_or_default();
    eprintln!("leader kills (time, node index): {kills:?}");
    let during: usize = kills
        .iter()
        .filter(|(t, _)| steps.iter().any(|s| (s.1..s.2).contains(t)))
        .count();
    eprintln!(
        "{during} of {} kills while a step was under way; steps under load: {loaded}",
        kills.len()
    );
    assert!(
        during > 0,
        "no leader was killed during a move: {kills:?} {steps:?}"
    );

    // Replication factor 3 restored, nothing on n2, replicas identical.
    let fin = wait_settled(&c, Duration::from_secs(120), "after the run");
    for (g, reps) in &fin {
        assert!(!reps.contains_key(&1), "group {g} still on n2: {reps:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = replicas(&lock(&c)).unwrap_or_default();
        let equal = r.len() == GROUPS as usize
            && r.values()
                .all(|m| m.len() == RF && m.values().all(|v| Some(v) == m.values().next()));
        if equal {
            break;
        }
        assert!(Instant::now() < deadline, "replicas differ: {r:#?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (mut copies, mut min) = (0, 0);
    for (what, _, _, c1, m1) in &steps {
        assert!(
            c1 * 10 <= m1 * 11,
            "{what}: {c1} replicas copied, more than 1.1x the minimum {m1}"
        );
        copies += c1;
        min += m1;
    }
    eprintln!("all steps: {copies} replicas copied, minimum {min}");
}
