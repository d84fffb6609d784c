//! Helpers shared by the fault-lab test files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use cairn_lab::{Lab, LabError};

/// The `cairn-lab` binary of this build.
pub const TOOL: &str = env!("CARGO_BIN_EXE_cairn-lab");

/// A lab, or `None` (with the reason printed) where the lab cannot run.
/// `CAIRN_LAB_REQUIRED=1` turns "cannot run" into a failure.
pub fn lab(hosts: usize) -> Option<Lab> {
    match Lab::new(hosts) {
        Ok(lab) => Some(lab),
        Err(e @ (LabError::LabUnavailable(_) | LabError::NftMissing))
            if std::env::var_os("CAIRN_LAB_REQUIRED").is_none() =>
        {
            eprintln!("SKIPPED: {e}; {}", cairn_lab::loopback::FALLBACK_NOTE);
            None
        }
        Err(e) => panic!("creating the lab: {e}"),
    }
}

/// Newest modification time of the files under `dir` (recursive).
fn newest(dir: &Path, acc: &mut Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            newest(&e.path(), acc);
        } else if let Ok(m) = meta.modified() {
            if acc.is_none_or(|a| m > a) {
                *acc = Some(m);
            }
        }
    }
}

/// The cairn binary the tests run: `CAIRN_LAB_CAIRN_BIN` if set (e.g. a
/// release build), else `<target>/debug/cairn` (`CARGO_TARGET_DIR` or the
/// workspace's `target`), built with `cargo build -p cairn-cli` when it is
/// missing or older than the sources of the crates it is made of (once
/// per test binary).
pub fn cairn_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("CAIRN_LAB_CAIRN_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.exists(),
                "CAIRN_LAB_CAIRN_BIN={} missing",
                bin.display()
            );
            return bin;
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = manifest.join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug/cairn");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let mut sources = None;
        for c in [
            "cairn-cli",
            "cairn-server",
            "cairn-cluster",
            "cairn-engine",
            "cairn-proto",
        ] {
            newest(&root.join("crates").join(c).join("src"), &mut sources);
        }
        let stale = match (built, sources) {
            (None, _) => true,
            (Some(b), Some(s)) => s > b,
            (Some(_), None) => false,
        };
        if stale {
            eprintln!(
                "building {} (missing or older than its sources)",
                bin.display()
            );
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "cairn-cli"])
                .current_dir(&manifest)
                .status()
                .expect("running cargo build -p cairn-cli");
            assert!(status.success(), "cargo build -p cairn-cli failed");
        }
        assert!(
            bin.exists(),
            "{} missing: run `cargo build -p cairn-cli`",
            bin.display()
        );
        bin
    })
    .clone()
}

/// Serializes the heavy tests of one test binary (several clusters at
/// once would starve each other on a small machine). Poison-tolerant.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One workload's checked result: kind, its summary line, history, report.
pub type Checked = (String, String, cairn_check::History, cairn_check::Report);

/// For each workload process: its summary line (the last JSON line of its
/// log), its history (asserting more than `min_ok` operations completed)
/// and the linearizability (or set) check of that history under `budget`.
pub fn check_histories(
    lab: &Lab,
    procs: &[(cairn_lab::cluster::WorkloadSpec, cairn_lab::ProcId, PathBuf)],
    budget: &cairn_check::Budget,
    min_ok: usize,
) -> Vec<Checked> {
    use cairn_check::{History, Outcome};
    let mut checked = Vec::new();
    for (w, p, out) in procs {
        let summary = lab
            .log(*p)
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("")
            .to_owned();
        eprintln!("{} workload: {summary}", w.kind);
        let history = History::from_jsonl_str(&std::fs::read_to_string(out).unwrap()).unwrap();
        let ok = history
            .ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
            .count();
        assert!(
            ok > min_ok,
            "too few completed {} ops ({ok}): {summary}",
            w.kind
        );
        let t = std::time::Instant::now();
        let report = cairn_lab::campaign::check_kind(&w.kind, &history, budget).unwrap();
        eprintln!(
            "checked {}: {} ops ({ok} ok) in {:?}: {:?}",
            w.kind,
            history.ops.len(),
            t.elapsed(),
            report.verdict
        );
        checked.push((w.kind.clone(), summary, history, report));
    }
    checked
}

/// Kills the server when dropped, even if the test panics.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a standalone cairn on a free loopback port.
pub fn loopback_server() -> (Server, String) {
    let port = cairn_check::ports::free_port();
    let child = Command::new(cairn_binary())
        .args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--log",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Server(child), format!("127.0.0.1:{port}"))
}

/// Runs workload `w` (its output in `out`) while `schedule` runs against
/// the group of `key`, waiting for the workload at most its duration +
/// 60 s + the final reads' limit. Asserts that all `faults` faults were
/// injected, the workload exited 0 and no node died on its own; returns
/// the workload's log.
pub fn run_under_nemesis(
    cluster: &cairn_lab::cluster::Cluster<'_>,
    w: &cairn_lab::cluster::WorkloadSpec,
    key: &str,
    schedule: &cairn_lab::nemesis::Schedule,
    faults: usize,
    out: &Path,
) -> String {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let lab = cluster.lab();
    let p = cluster.spawn_workload(w, out).unwrap();
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let limit = Duration::from_millis(w.duration_ms)
        + Duration::from_secs(60)
        + cairn_lab::workload::FINAL_READ_LIMIT;
    let (events, status) = std::thread::scope(|s| {
        let nemesis = s.spawn(|| schedule.run(cluster, key, start, &stop));
        let status = lab.wait_timeout(p, limit);
        stop.store(true, Ordering::Relaxed);
        (nemesis.join().expect("nemesis panicked"), status)
    });
    let events = events.unwrap_or_else(|e| panic!("nemesis failed: {e}"));
    let injected = events.iter().filter(|e| e.fault.is_some()).count();
    assert_eq!(injected, faults, "not every fault was injected: {events:?}");
    let status = status
        .unwrap()
        .unwrap_or_else(|| panic!("{} workload did not finish within {limit:?}", w.kind));
    let log = lab.log(p);
    eprintln!("{} workload: {}", w.kind, log.trim());
    assert!(
        status.success(),
        "{} workload failed: {status}: {log}",
        w.kind
    );
    let crashed = cluster.crashed();
    assert!(crashed.is_empty(), "nodes died on their own: {crashed:?}");
    log
}

/// A 3-node cluster of the default spec on `lab`, started (90 s at most).
pub fn start_cluster(lab: &Lab) -> cairn_lab::cluster::Cluster<'_> {
    let t0 = std::time::Instant::now();
    let cluster = cairn_lab::cluster::Cluster::start(
        lab,
        cairn_lab::cluster::ClusterSpec::new(cairn_binary(), TOOL),
        std::time::Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("cluster did not start: {e}"));
    eprintln!("cluster ready after {:?}", t0.elapsed());
    cluster
}

/// Each of `faults` once, in an order drawn from `seed`: 2.5-3.5 s holds
/// (pauses at least `pause_min_ms`), 1-1.5 s gaps, after 1.5 s of warm-up.
pub fn each_fault_once(
    seed: u64,
    faults: Vec<cairn_lab::nemesis::Fault>,
    pause_min_ms: u64,
) -> cairn_lab::nemesis::Schedule {
    let schedule = cairn_lab::nemesis::Schedule::generate(
        seed,
        &cairn_lab::nemesis::ScheduleSpec {
            faults,
            each_once: true,
            warmup_ms: 1500,
            hold_ms: (2500, 3500),
            pause_min_ms,
            gap_ms: (1000, 1500),
            total_ms: 0,
        },
    );
    eprint!("{}", schedule.describe());
    schedule
}

/// Raft timings for a debug build of cairn on 2 busy cores (heartbeat
/// 250 ms, election timeout 1-2 s); none (cairn's defaults) for the
/// release binary of `CAIRN_LAB_CAIRN_BIN`.
pub fn debug_timing() -> Vec<&'static str> {
    if std::env::var_os("CAIRN_LAB_CAIRN_BIN").is_some() {
        return Vec::new();
    }
    let mut a = vec!["--heartbeat-interval", "250"];
    a.extend(["--election-timeout-min", "1000"]);
    a.extend(["--election-timeout-max", "2000"]);
    a
}

/// What a workload thread returns: its kind, and its history and figures.
pub type WorkloadRun = (
    cairn_lab::workload::Kind,
    Result<(cairn_check::History, cairn_lab::workload::Stats), redis::RedisError>,
);

/// Joins a workload thread, prints its figures, and checks its history
/// with the checker of its kind: register and counter linearizable, set
/// nothing lost or invented. Panics otherwise (or with 200 ops or fewer).
pub fn check_workload(run: std::thread::JoinHandle<WorkloadRun>) {
    use cairn_check::{check, check_set, Budget, Counter, Register, SetVerdict, Verdict};
    use cairn_lab::workload::Kind;
    let (kind, result) = run.join().expect("workload thread");
    let (history, stats) = result.expect("workload ran");
    eprintln!(
        "{kind:?}: {} ops, {} ok, {} info, errors {:?}",
        stats.ops, stats.ok, stats.info, stats.errors
    );
    assert!(
        history.ops.len() > 200,
        "{kind:?}: only {} ops",
        history.ops.len()
    );
    let t0 = std::time::Instant::now();
    match kind {
        Kind::Set => {
            let report = check_set(&history).expect("a valid history");
            assert_eq!(report.verdict, SetVerdict::Valid, "{report:#?}");
        }
        Kind::Counter => {
            let report = check(&history, &Counter, &Budget::default()).expect("a valid history");
            assert_eq!(report.verdict, Verdict::Linearizable, "{kind:?}");
        }
        _ => {
            let report = check(&history, &Register, &Budget::default()).expect("a valid history");
            assert_eq!(report.verdict, Verdict::Linearizable, "{kind:?}");
        }
    }
    eprintln!("{kind:?}: checked in {:?}", t0.elapsed());
}
