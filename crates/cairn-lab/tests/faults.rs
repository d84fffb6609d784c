//! Clock and disk faults on a 3-node cairn cluster: wall-clock jumps
//! (libfaketime), monotonic offsets (time namespaces), a full disk
//! (private tmpfs), failing fsyncs (libfiu) and a node restarted on a
//! wiped data dir. Each test runs a register and a counter workload from
//! the client host over every node while a seeded schedule injects the
//! fault, then checks both histories for linearizability and the
//! replicas' digests. Needs root, `ip`, `nft`, and the `faketime`,
//! `fiu-utils` and util-linux packages; without them the tests print why
//! and skip (`CAIRN_LAB_REQUIRED=1` makes that a failure). One at a time
//! ([`common::serial`]); `CAIRN_LAB_SEED=S` replaces every seed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_check::{Budget, History, Report, Verdict};
use cairn_lab::campaign::explain;
use cairn_lab::cluster::{check_wrappers, Cluster, ClusterSpec, NodeEnv, WorkloadSpec};
use cairn_lab::nemesis::{Event, Fault, Role, Schedule, ScheduleSpec, WIPED_REFUSAL};
use cairn_lab::{Lab, LabError};
use common::{cairn_binary, check_histories, lab, serial, TOOL};

fn seed(default: u64) -> u64 {
    std::env::var("CAIRN_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A lab with 3 node hosts, or `None` (reason printed) where the lab or
/// the clock/disk wrappers cannot run.
fn fault_lab() -> Option<Lab> {
    if let Err(e) = check_wrappers() {
        if std::env::var_os("CAIRN_LAB_REQUIRED").is_some() && cairn_lab::check_available().is_ok()
        {
            panic!("clock/disk wrappers unavailable: {e}");
        }
        eprintln!("SKIPPED: {e}");
        return None;
    }
    lab(3)
}

fn workload(kind: &str, tag: &str, seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        kind: kind.into(),
        keys: 3,
        key_prefix: format!("{{{tag}}}{}:", &kind[..1]),
        processes: 6,
        timeout_ms: 1000,
        duration_ms: 0,
        think_ms: 5,
        read_percent: 50,
        ops_per_key: 200,
        seed,
    }
}

fn one_fault(seed: u64, fault: Fault, hold_ms: (u64, u64)) -> Schedule {
    Schedule::generate(
        seed,
        &ScheduleSpec {
            faults: vec![fault],
            each_once: true,
            warmup_ms: 2000,
            hold_ms,
            pause_min_ms: 0,
            gap_ms: (2000, 2000),
            total_ms: 0,
        },
    )
}

/// One probe answer: (ms after the start, node, reply or error).
type Probe = (u64, usize, Result<String, String>);

/// What a run produced.
struct Run {
    checked: Vec<(String, History, Report)>,
    events: Vec<Event>,
    probes: Vec<Probe>,
}

impl Run {
    fn assert_linearizable(&self, seed: u64) {
        let bad: Vec<String> = self
            .checked
            .iter()
            .filter(|(_, _, r)| r.verdict != Verdict::Linearizable)
            .map(|(k, h, r)| format!("== {k}: {:?}\n{}", r.verdict, explain(r, h)))
            .collect();
        assert!(bad.is_empty(), "seed {seed}:\n{}", bad.join("\n"));
    }

    /// The (injection, undo) times of the first step of `fault`, and the
    /// node it hit.
    fn window(&self, fault: Fault) -> (u64, u64, usize) {
        let i = self
            .events
            .iter()
            .position(|e| e.fault == Some(fault))
            .unwrap_or_else(|| panic!("{fault} never injected: {:?}", self.events));
        let on = &self.events[i];
        let node = on.node.expect("a single-node fault names its node");
        // Its undo: the last event naming the node before the next fault.
        let off = self.events[i + 1..]
            .iter()
            .take_while(|e| e.fault.is_none())
            .filter(|e| e.node == Some(node))
            .last()
            .unwrap_or_else(|| panic!("{fault} never undone: {:?}", self.events));
        (on.at_ms, off.at_ms, node)
    }

    /// Probes of `node` in `[from, to)` ms.
    fn probes_in(&self, node: usize, from: u64, to: u64) -> Vec<&Probe> {
        self.probes
            .iter()
            .filter(|(t, n, _)| *n == node && *t >= from && *t < to)
            .collect()
    }
}

/// The nemesis of a run: gets the cluster, the start time and the stop
/// flag (set when the workloads end); returns what it did.
type Nemesis<'a> =
    dyn Fn(&Cluster<'_>, Instant, &AtomicBool) -> Result<Vec<Event>, LabError> + Sync + 'a;

/// The shape of a run.
struct Plan<'a> {
    /// Node `i` is wrapped as `envs[i]` (missing: plain).
    envs: &'a [NodeEnv],
    /// Hash tag of the workloads' keys.
    tag: &'a str,
    /// Seed of the workloads (register: seed, counter: seed + 1).
    seed: u64,
    /// How long the workloads run.
    duration_ms: u64,
}

/// Starts the cluster, runs a register and a counter workload for
/// `plan.duration_ms` while `nemesis` runs and a prober per node sends it
/// `probe(step)` about every 700 ms (an empty command ends probing), then
/// heals, checks nothing died on its own, the cluster recovers, the
/// replicas converge to equal digests, and both histories are decided.
/// `after` runs on the healed cluster before it is torn down.
fn run(
    lab: &Lab,
    plan: Plan<'_>,
    probe: &(dyn Fn(u64) -> Vec<String> + Sync),
    nemesis: &Nemesis<'_>,
    after: &dyn Fn(&Cluster<'_>, &[Event]),
) -> Run {
    let Plan {
        envs,
        tag,
        seed,
        duration_ms,
    } = plan;
    let t0 = Instant::now();
    let cluster = Cluster::start_with(
        lab,
        ClusterSpec::new(cairn_binary(), TOOL),
        envs,
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    eprintln!("cluster ready after {:?}", t0.elapsed());
    let mut procs = Vec::new();
    for (k, (kind, s)) in [("register", seed), ("counter", seed + 1)]
        .iter()
        .enumerate()
    {
        let mut w = workload(kind, tag, *s);
        w.duration_ms = duration_ms;
        let out = lab.dir().join(format!("history-{k}-{kind}.jsonl"));
        let p = cluster.spawn_workload(&w, &out).unwrap();
        procs.push((w, p, out));
    }
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let probes = Mutex::new(Vec::new());
    let events = std::thread::scope(|s| {
        let nem = s.spawn(|| nemesis(&cluster, start, &stop));
        // One prober per node, so a node that hangs delays no other's probes.
        let probers: Vec<_> = (0..cluster.nodes())
            .map(|i| {
                let (cluster, stop, probes) = (&cluster, &stop, &probes);
                s.spawn(move || {
                    // Bounded: the workloads end after duration_ms.
                    for step in 0..10_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let args = probe(step);
                        if args.is_empty() {
                            break;
                        }
                        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                        let t = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                        let r = cluster
                            .command(i, &refs, Duration::from_secs(2))
                            .map_err(|e| e.to_string());
                        probes.lock().unwrap().push((t, i, r));
                        std::thread::sleep(Duration::from_millis(700));
                    }
                })
            })
            .collect();
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
        stop.store(true, Ordering::Relaxed);
        let events = nem.join().expect("nemesis panicked");
        for p in probers {
            p.join().expect("prober panicked");
        }
        for ((w, p, _), st) in procs.iter().zip(&statuses) {
            let st = st.unwrap_or_else(|| panic!("{} workload did not finish", w.kind));
            assert!(
                st.success(),
                "{} workload failed: {st}: {}",
                w.kind,
                lab.log(*p)
            );
        }
        events.unwrap_or_else(|e| panic!("nemesis failed: {e}"))
    });
    for e in &events {
        eprintln!("event [{:>6} ms] {}", e.at_ms, e.text);
    }
    let crashed = cluster.crashed();
    assert!(crashed.is_empty(), "nodes died on their own: {crashed:?}");
    cluster
        .wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no recovery after the nemesis: {e}"));
    let cmp = cluster.compare_replicas(Duration::from_secs(30)).unwrap();
    assert!(
        cmp.is_none(),
        "replicas did not converge to equal digests: {cmp:?}"
    );
    after(&cluster, &events);
    // Failing nodes leave many indeterminate ops on a few keys.
    let budget = Budget {
        max_steps: 20_000_000,
        max_time: Some(Duration::from_secs(60)),
    };
    let checked = check_histories(lab, &procs, &budget, 100)
        .into_iter()
        .map(|(kind, _, history, report)| (kind, history, report))
        .collect();
    eprintln!("scenario took {:?}", t0.elapsed());
    Run {
        checked,
        events,
        probes: probes.into_inner().unwrap(),
    }
}

fn no_probe(_: u64) -> Vec<String> {
    Vec::new()
}

/// A nemesis running `list` one after another (each schedule's times
/// relative to the end of the previous one), aimed at `key`'s group;
/// `first` runs before them (in the warm-up).
fn schedules<'a>(
    list: &'a [Schedule],
    key: &'a str,
    first: &'a (dyn Fn(&Cluster<'_>) + Sync),
) -> Box<Nemesis<'a>> {
    Box::new(
        move |cluster: &Cluster<'_>, start: Instant, stop: &AtomicBool| {
            first(cluster);
            let mut all = Vec::new();
            let mut offset = 0;
            for s in list {
                eprint!("{}", s.describe());
                let mut ev = s.run(cluster, key, start + Duration::from_millis(offset), stop)?;
                for e in &mut ev {
                    e.at_ms += offset;
                }
                all.extend(ev);
                offset += s.end_ms();
            }
            Ok(all)
        },
    )
}

fn nothing(_: &Cluster<'_>) {}

fn total_ms(list: &[Schedule]) -> u64 {
    list.iter().map(Schedule::end_ms).sum()
}

/// Every healthy node answered at least one probe successfully while
/// `fault` held (from 3 s after it was injected: one election).
fn assert_others_served(r: &Run, fault: Fault) {
    let (on, off, hit) = r.window(fault);
    for i in (0..3).filter(|&i| i != hit) {
        let got = r.probes_in(i, on + 3000, off);
        assert!(
            got.iter()
                .any(|(_, _, a)| a.as_ref().is_ok_and(|t| t.starts_with(':'))),
            "n{} served nothing while {fault} held on n{} ({on}-{off} ms): {got:?}",
            i + 1,
            hit + 1
        );
    }
    let broken = r.probes_in(hit, on, off);
    eprintln!("n{} (faulty) answered: {broken:?}", hit + 1);
}

fn incr_probe(tag: &'static str) -> impl Fn(u64) -> Vec<String> + Sync {
    move |_: u64| vec!["INCR".to_owned(), format!("{{{tag}}}probe")]
}

/// Wall clock: every node under libfaketime; a follower of the workload
/// group jumps +1 h, then -10 min, then back; later the leader does.
/// Keys written with `PX 60000` before the jumps must stay readable on
/// every node while the follower's clock is an hour ahead (replicas never
/// expire keys on their own; the leader's clock decides). The leader's
/// jump does expire them (documented: wall-clock TTL, as in Redis): only
/// printed.
#[test]
fn wall_clock_jumps_keep_histories_linearizable_and_ttl_keys_on_followers() {
    let _serial = serial();
    let Some(lab) = fault_lab() else { return };
    let seed = seed(21);
    let key = "{w}r:k0".to_owned();
    let list = [
        one_fault(seed, Fault::WallClockJump(Role::Follower), (4000, 5000)),
        one_fault(seed + 1, Fault::WallClockJump(Role::Leader), (4000, 5000)),
    ];
    let ttl_keys: Vec<String> = (0..3).map(|j| format!("{{w}}ttl:{j}")).collect();
    let set_ttl = |c: &Cluster<'_>| {
        for k in &ttl_keys {
            let r = c
                .command(0, &["SET", k, "v", "PX", "60000"], Duration::from_secs(5))
                .unwrap();
            assert!(r.starts_with("+OK"), "SET {k} PX 60000: {r:?}");
        }
    };
    let envs = vec![
        NodeEnv {
            faketime: true,
            ..NodeEnv::default()
        };
        3
    ];
    let probe = |_: u64| -> Vec<String> { vec!["GET".to_owned(), "{w}ttl:0".to_owned()] };
    let after = |_: &Cluster<'_>, _: &[Event]| {};
    let r = run(
        &lab,
        Plan {
            envs: &envs,
            tag: "w",
            seed,
            duration_ms: total_ms(&list) + 2000,
        },
        &probe,
        &schedules(&list, &key, &set_ttl),
        &after,
    );
    r.assert_linearizable(seed);
    let (on, off, hit) = r.window(Fault::WallClockJump(Role::Follower));
    for i in 0..3 {
        let got = r.probes_in(i, on + 200, off);
        assert!(
            !got.is_empty(),
            "no TTL probe of n{} while n{} jumped",
            i + 1,
            hit + 1
        );
        for (t, _, a) in &got {
            assert!(
                a.as_ref().is_ok_and(|t| t.starts_with("$1\r\nv\r\n")),
                "TTL key read through n{} at {t} ms while follower n{}'s clock was off: {a:?}",
                i + 1,
                hit + 1
            );
        }
    }
    let (on, off, hit) = r.window(Fault::WallClockJump(Role::Leader));
    let expired = r
        .probes_in(hit, on, off + 2000)
        .iter()
        .any(|(_, _, a)| a.as_ref().is_ok_and(|t| t.starts_with("$-1")));
    eprintln!(
        "leader n{} jumped +1 h: TTL key expired: {expired}",
        hit + 1
    );
}

/// Monotonic clock: the leader, then a follower, SIGKILLed and restarted
/// at once in a time namespace whose monotonic/boot clocks are days
/// ahead. The offsets must really be in force (checked in
/// /proc/PID/timens_offsets), the histories linearizable and the
/// replicas equal.
#[test]
fn monotonic_clock_offsets_keep_histories_linearizable() {
    let _serial = serial();
    let Some(lab) = fault_lab() else { return };
    let seed = seed(31);
    let list = [
        one_fault(seed, Fault::MonotonicRestart(Role::Leader), (3000, 4000)),
        one_fault(
            seed + 1,
            Fault::MonotonicRestart(Role::Follower),
            (3000, 4000),
        ),
    ];
    let after = |c: &Cluster<'_>, _: &[Event]| {
        let mut offset = 0;
        for i in 0..3 {
            let Some(secs) = c.env(i).monotonic_offset_secs else {
                continue;
            };
            let pid = c.server_pid(i).unwrap();
            let text = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
            assert!(
                text.lines().any(|l| {
                    let mut f = l.split_whitespace();
                    f.next() == Some("monotonic") && f.next() == Some(secs.to_string().as_str())
                }),
                "n{} pid {pid}: expected a monotonic offset of {secs} s: {text}",
                i + 1
            );
            offset += 1;
        }
        assert!(offset >= 1, "no node runs with a monotonic offset");
    };
    let r = run(
        &lab,
        Plan {
            envs: &[],
            tag: "m",
            seed,
            duration_ms: total_ms(&list) + 2000,
        },
        &no_probe,
        &schedules(&list, "{m}r:k0", &nothing),
        &after,
    );
    r.assert_linearizable(seed);
}

/// Disk full: every node's data dir is a private 64 MiB tmpfs; a
/// follower's, then the leader's, is filled to ENOSPC for 6.5-7.5 s, then freed and the node
/// restarted. The other nodes must keep serving, the histories stay
/// linearizable, the replicas converge. Then the same node is restarted
/// on a read-only data dir: it must exit non-zero (not hang, not serve),
/// and start cleanly once the dir is writable again.
#[test]
fn full_disk_on_one_node_loses_no_acknowledged_write() {
    let _serial = serial();
    let Some(lab) = fault_lab() else { return };
    let seed = seed(41);
    let list = [
        one_fault(seed, Fault::DiskFull(Role::Follower), (6500, 7500)),
        one_fault(seed + 1, Fault::DiskFull(Role::Leader), (6500, 7500)),
    ];
    let envs = vec![
        NodeEnv {
            tmpfs_bytes: Some(64 << 20),
            ..NodeEnv::default()
        };
        3
    ];
    let probe = incr_probe("d");
    let after = |c: &Cluster<'_>, events: &[Event]| {
        let x = events
            .iter()
            .find_map(|e| e.node)
            .expect("the fault names its node");
        c.kill(x).unwrap();
        c.set_read_only(x, true).unwrap();
        c.restart(x).unwrap();
        let p = c.proc(x).unwrap();
        let st = c.lab().wait_timeout(p, Duration::from_secs(20)).unwrap();
        // The error, without anyhow's backtrace.
        let log: String = c
            .lab()
            .log(p)
            .lines()
            .take_while(|l| !l.starts_with("Stack backtrace"))
            .filter(|l| !l.trim().is_empty())
            .take(8)
            .collect::<Vec<_>>()
            .join(" | ");
        eprintln!("n{} on a read-only data dir: {st:?}: {log}", x + 1);
        assert!(
            c.lab().log(p).contains("Read-only file system"),
            "n{} on a read-only data dir did not say why it stopped:\n{log}",
            x + 1
        );
        assert!(
            st.is_some_and(|s| !s.success()),
            "n{} on a read-only data dir did not exit non-zero within 20 s: {st:?}: {log}",
            x + 1
        );
        c.mark_down(x);
        c.set_read_only(x, false).unwrap();
        c.restart(x).unwrap();
        c.wait_ready(Duration::from_secs(60)).unwrap();
        let cmp = c.compare_replicas(Duration::from_secs(30)).unwrap();
        assert!(cmp.is_none(), "after the read-only restart: {cmp:?}");
    };
    let r = run(
        &lab,
        Plan {
            envs: &envs,
            tag: "d",
            seed,
            duration_ms: total_ms(&list) + 2000,
        },
        &probe,
        &schedules(&list, "{d}r:k0", &nothing),
        &after,
    );
    r.assert_linearizable(seed);
    assert_others_served(&r, Fault::DiskFull(Role::Follower));
    assert_others_served(&r, Fault::DiskFull(Role::Leader));
}

/// Failing disk: every node under libfiu; a follower's fsync and
/// fdatasync fail (libfiu `posix/io/sync/*`) for 6.5-7.5 s, then the leader's; then they work again
/// and the node is restarted. Same assertions as the full disk.
#[test]
fn failing_fsync_on_one_node_loses_no_acknowledged_write() {
    let _serial = serial();
    let Some(lab) = fault_lab() else { return };
    let seed = seed(51);
    let list = [
        one_fault(seed, Fault::FsyncFails(Role::Follower), (6500, 7500)),
        one_fault(seed + 1, Fault::FsyncFails(Role::Leader), (6500, 7500)),
    ];
    let envs = vec![
        NodeEnv {
            fiu: true,
            ..NodeEnv::default()
        };
        3
    ];
    let probe = incr_probe("f");
    let after = |_: &Cluster<'_>, _: &[Event]| {};
    let r = run(
        &lab,
        Plan {
            envs: &envs,
            tag: "f",
            seed,
            duration_ms: total_ms(&list) + 2000,
        },
        &probe,
        &schedules(&list, "{f}r:k0", &nothing),
        &after,
    );
    r.assert_linearizable(seed);
    assert_others_served(&r, Fault::FsyncFails(Role::Follower));
    assert_others_served(&r, Fault::FsyncFails(Role::Leader));
}

/// Wiped data dir: a follower (not n1) is SIGKILLed, its data dir deleted
/// and it is started again with the same id and peers. It must refuse
/// (non-zero exit, the message in its log) while the others serve; after
/// `CLUSTER DELNODE` + a start on an empty dir + `CLUSTER ADDNODE` it
/// catches up (equal digests everywhere).
#[test]
fn wiped_follower_refuses_to_start_and_rejoins_after_delnode_addnode() {
    let _serial = serial();
    let Some(lab) = fault_lab() else { return };
    let seed = seed(61);
    let list = [one_fault(seed, Fault::WipeRejoin, (3000, 3000))];
    let probe = incr_probe("x");
    let after = |_: &Cluster<'_>, _: &[Event]| {};
    let r = run(
        &lab,
        Plan {
            envs: &[],
            tag: "x",
            seed,
            duration_ms: total_ms(&list) + 3000,
        },
        &probe,
        &schedules(&list, "{x}r:k0", &nothing),
        &after,
    );
    let injected = r
        .events
        .iter()
        .find(|e| e.fault == Some(Fault::WipeRejoin))
        .expect("wipe injected");
    assert!(
        injected.text.contains("REFUSED with the expected message"),
        "the wiped node did not refuse with {WIPED_REFUSAL:?}: {}",
        injected.text
    );
    r.assert_linearizable(seed);
    assert_others_served(&r, Fault::WipeRejoin);
}
