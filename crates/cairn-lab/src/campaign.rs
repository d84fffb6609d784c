//! `cairn-lab campaign`: a long randomized fault campaign.
//!
//! It builds its own lab (3 node hosts + the client host), starts a
//! durable cluster on it and runs rounds until the time is up. Each round:
//!
//! 1. derives the round seed from the campaign seed and the round number
//!    (`round_seed`), so any round can be replayed alone with
//!    `--seed S --first-round R --rounds 1`;
//! 2. picks a fresh hash tag so the round's keys land in one group (a
//!    different one most rounds), and starts a register, a counter, a set
//!    and a lock workload on it, clients spread over every node;
//! 3. runs a random nemesis schedule (drawn from every [`Fault`]) aimed at
//!    that group's leader;
//! 4. heals, restarts anything the nemesis killed, waits for the cluster,
//!    restarts (and reports) any node that died on its own, and compares
//!    the replicas' per-group digests;
//! 5. checks the register and counter histories for linearizability, the
//!    set history for lost acknowledged adds and unexpected elements, and
//!    the lock history for overlapping holders, misordered tokens, stale
//!    fenced writes accepted and fenced counters off their bounds (the set
//!    and lock verdicts are tabulated on the same scale: valid =
//!    linearizable).
//!
//! Histories, schedules and node logs of any round that is not plainly
//! linearizable (or valid) are saved under `--save-dir`. The cluster lives across
//! rounds (restarts accumulate state); if it fails to recover, the lab is
//! rebuilt and that is reported as an anomaly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_check::{
    check, check_lock_history, check_set, Budget, Counter, FenceOutcome, History, LockHistory,
    LockVerdict, Outcome, Register, Report, SetVerdict, Verdict,
};

use crate::cluster::{Cluster, ClusterSpec, WorkloadSpec};
use crate::nemesis::{Fault, Schedule, ScheduleSpec};
use crate::workload::Rng;
use crate::Lab;

/// Command-line arguments of `cairn-lab campaign`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Run rounds until this many minutes have passed (a round in
    /// progress finishes).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Campaign seed (printed; rounds derive theirs from it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many rounds (0 = only the time limit).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// Number of the first round (to replay one round of a campaign).
    #[arg(long, default_value_t = 1)]
    pub first_round: u64,
    /// Workload time per round, in seconds.
    #[arg(long, default_value_t = 30)]
    pub round_secs: u64,
    /// The cairn binary (default: `cairn` next to this binary, e.g.
    /// target/release/cairn).
    #[arg(long)]
    pub cairn: Option<PathBuf>,
    /// Raft groups.
    #[arg(long, default_value_t = 16)]
    pub groups: u16,
    /// Heartbeat interval, ms.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Election timeout minimum, ms.
    #[arg(long, default_value_t = 500)]
    pub election_min_ms: u64,
    /// Election timeout maximum, ms.
    #[arg(long, default_value_t = 1000)]
    pub election_max_ms: u64,
    /// Volatile nodes (default durable: a killed node keeps its log).
    #[arg(long)]
    pub volatile: bool,
    /// TEST ONLY: start the nodes with --unsafe-stale-reads (the campaign
    /// should then report NOT linearizable rounds).
    #[arg(long)]
    pub unsafe_stale_reads: bool,
    /// Client slots per workload.
    #[arg(long, default_value_t = 6)]
    pub processes: usize,
    /// Keys per workload.
    #[arg(long, default_value_t = 3)]
    pub keys: usize,
    /// Locks the lock workload contends on (few, so that its clients
    /// queue for them).
    #[arg(long, default_value_t = 2)]
    pub locks: usize,
    /// Key rotation: operations per key before moving on to fresh keys.
    #[arg(long, default_value_t = 400)]
    pub ops_per_key: u64,
    /// Per-operation timeout, ms.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Pause between a client's operations, ms.
    #[arg(long, default_value_t = 2)]
    pub think_ms: u64,
    /// The nodes' `--log` filter (their logs are kept with a saved round),
    /// e.g. `info,cairn_cluster=debug` to see the peer links and relays.
    #[arg(long, default_value = "warn")]
    pub node_log: String,
    /// Where to save histories, schedules and logs of rounds that are not
    /// linearizable (or undecided), show an anomaly, or stall a healthy
    /// node longer than election time + 1 s.
    #[arg(long, default_value = "cairn-campaign")]
    pub save_dir: PathBuf,
    /// Only these fault kinds (names as in the summary table, e.g.
    /// `pause-leader,loss-20pct`); default: all of them.
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
}

impl Args {
    /// The availability target: election time + 1 s.
    pub fn stall_limit_ms(&self) -> u64 {
        self.election_max_ms + 1000
    }
}

/// What one round did and found.
#[derive(Clone, Debug)]
pub struct RoundReport {
    /// Round number.
    pub round: u64,
    /// Its seed (schedule and operation mix).
    pub seed: u64,
    /// Faults injected (names).
    pub faults: Vec<String>,
    /// Register: ops recorded, ok, info, verdict.
    pub register: KindResult,
    /// Counter: ops recorded, ok, info, verdict.
    pub counter: KindResult,
    /// Set: ops recorded, ok, info, verdict (valid = `Linearizable`).
    pub set: KindResult,
    /// Lock: commands sent, ok, info, verdict (valid = `Linearizable`).
    pub lock: KindResult,
    /// Lock: what its holders did.
    pub lock_counts: LockCounts,
    /// Anomalies (node crashes, diverged replicas, no recovery, ...).
    pub anomalies: Vec<String>,
    /// Notes that are not anomalies (replicas still catching up).
    pub notes: Vec<String>,
    /// Availability: each injected fault's longest stretch without a
    /// completed request at a healthy node (see `avail.rs`).
    pub stalls: Vec<crate::avail::Stall>,
    /// Wall time of the round.
    pub took: Duration,
}

impl RoundReport {
    /// Whether any workload's verdict is not linearizable (valid) or the
    /// round showed an anomaly (the campaign then exits with 1).
    pub fn suspicious(&self) -> bool {
        [&self.register, &self.counter, &self.set, &self.lock]
            .iter()
            .any(|k| k.verdict != Some(Verdict::Linearizable))
            || !self.anomalies.is_empty()
    }

    /// Whether a healthy node went longer than `limit_ms` without a
    /// completed request (the availability target): not a safety
    /// failure, but its evidence is saved like a suspicious round's.
    pub fn stalled_over(&self, limit_ms: u64) -> bool {
        self.stalls.iter().any(|s| s.longest_ms > limit_ms)
    }
}

/// One workload's result in a round.
#[derive(Clone, Debug, Default)]
pub struct KindResult {
    /// Ops recorded.
    pub ops: usize,
    /// Ops that completed with a reply.
    pub ok: usize,
    /// Indeterminate ops.
    pub info: usize,
    /// The checker's verdict (`None`: no history).
    pub verdict: Option<Verdict>,
    /// Checking time.
    pub check_time: Duration,
}

/// What the lock workload's holders did in a round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockCounts {
    /// Acknowledged grants.
    pub grants: usize,
    /// Fenced writes accepted.
    pub accepted: usize,
    /// Fenced writes refused by the fence (stale holders).
    pub refused: usize,
    /// Fenced writes of unknown outcome.
    pub unknown: usize,
}

impl LockCounts {
    /// The counts of a lock history, of one lock or (`None`) all.
    pub fn of(h: &LockHistory, lock: Option<&str>) -> LockCounts {
        let mine = |l: &str| lock.is_none_or(|x| x == l);
        let writes = |o: FenceOutcome| {
            h.writes
                .iter()
                .filter(|w| mine(&w.lock) && w.outcome == o)
                .count()
        };
        LockCounts {
            grants: h.holds.iter().filter(|g| mine(&g.lock)).count(),
            accepted: writes(FenceOutcome::Accepted),
            refused: writes(FenceOutcome::Refused),
            unknown: writes(FenceOutcome::Unknown),
        }
    }
}

/// Checks a lock-workload history with [`check_lock_history`]. The verdict
/// is put on the scale the campaign tabulates: valid = `Linearizable`, a
/// violation = `NotLinearizable`, a fenced counter without a final read =
/// `Unknown`. The text has a line per lock and counter, one per
/// violation (with the records involved), then the verdict.
pub fn check_lock_history_text(h: &LockHistory) -> anyhow::Result<(Verdict, String)> {
    let report = check_lock_history(h)?;
    let mut s = String::new();
    let locks: std::collections::BTreeSet<&str> = h
        .holds
        .iter()
        .map(|g| g.lock.as_str())
        .chain(h.writes.iter().map(|w| w.lock.as_str()))
        .collect();
    for lock in locks {
        let c = LockCounts::of(h, Some(lock));
        let _ = writeln!(
            s,
            "lock {lock}: {} grants; fenced writes {} accepted, {} refused, {} unknown",
            c.grants, c.accepted, c.refused, c.unknown
        );
    }
    for b in &report.counters {
        let _ = writeln!(
            s,
            "counter {}: final {:?}, must be in [{}, {}] ({} accepted, {} unknown increments): {:?}",
            b.key,
            b.final_value,
            b.low,
            b.high,
            b.accepted,
            b.unknown,
            b.verdict()
        );
    }
    for o in &report.locks.overlaps {
        let _ = writeln!(
            s,
            "OVERLAP on {}: {:?} and {:?}",
            o.lock, h.holds[o.first], h.holds[o.second]
        );
    }
    for t in &report.locks.token_violations {
        let _ = writeln!(
            s,
            "TOKENS {:?} on {}: {:?} then {:?}",
            t.kind, t.lock, h.holds[t.earlier], h.holds[t.later]
        );
    }
    for v in &report.fenced.violations {
        let other = match (v.kind, v.other) {
            (_, None) => String::new(),
            (cairn_check::FenceViolationKind::StaleAccepted, Some(i)) => {
                format!(" after write {:?}", h.writes[i])
            }
            (_, Some(i)) => format!(" vs hold {:?}", h.holds[i]),
        };
        let _ = writeln!(
            s,
            "FENCE {:?} on {}: write {:?}{other}",
            v.kind, v.lock, h.writes[v.write]
        );
    }
    let _ = writeln!(s, "lock verdict: {:?}", report.verdict);
    let verdict = match report.verdict {
        LockVerdict::Valid => Verdict::Linearizable,
        LockVerdict::Invalid => Verdict::NotLinearizable,
        LockVerdict::Unknown => Verdict::Unknown,
    };
    Ok((verdict, s))
}

/// Reads and checks the lock workload's output file.
fn judge_locks(out: &Path) -> anyhow::Result<(KindResult, LockCounts, String)> {
    let text = std::fs::read_to_string(out)?;
    let run: crate::workload::LockRun = serde_json::from_str(&text)?;
    let t = Instant::now();
    let (verdict, explanation) = check_lock_history_text(&run.history)?;
    let kr = KindResult {
        ops: usize::try_from(run.ops).unwrap_or(usize::MAX),
        ok: usize::try_from(run.ok).unwrap_or(usize::MAX),
        info: usize::try_from(run.info).unwrap_or(usize::MAX),
        verdict: Some(verdict),
        check_time: t.elapsed(),
    };
    Ok((kr, LockCounts::of(&run.history, None), explanation))
}

/// Checks `history` with the model of `kind` (`register` or `counter`).
pub fn check_kind(kind: &str, history: &History, budget: &Budget) -> anyhow::Result<Report> {
    Ok(match kind {
        "counter" => check(history, &Counter, budget)?,
        _ => check(history, &Register, budget)?,
    })
}

/// Checks a set-workload history with [`check_set`]. The verdict is put on
/// the scale the campaign tabulates: valid = `Linearizable`, lost or
/// unexpected elements = `NotLinearizable`, a set without a final read =
/// `Unknown`. The text has one line per set, then the verdict.
pub fn check_set_history(history: &History) -> anyhow::Result<(Verdict, String)> {
    let report = check_set(history)?;
    let mut s = String::new();
    for (key, r) in &report.keys {
        let _ = writeln!(
            s,
            "set {key}: {:?}: {} acknowledged adds, lost {:?}, unexpected {:?}, duplicated {:?}, {} indeterminate adds present, {} acknowledged adds concurrent with the final read and missing",
            r.verdict,
            r.acknowledged,
            r.lost,
            r.unexpected,
            r.duplicated,
            r.recovered.len(),
            r.concurrent_missing.len()
        );
    }
    let _ = writeln!(s, "set verdict: {:?}", report.verdict);
    let verdict = match report.verdict {
        SetVerdict::Valid => Verdict::Linearizable,
        SetVerdict::Invalid => Verdict::NotLinearizable,
        SetVerdict::Unknown => Verdict::Unknown,
    };
    Ok((verdict, s))
}

/// Checks a history of workload `kind` (`register`, `counter` or `set`):
/// the verdict and, unless it is linearizable (valid), an account of why.
pub fn judge(kind: &str, history: &History, budget: &Budget) -> anyhow::Result<(Verdict, String)> {
    if kind == "set" {
        return check_set_history(history);
    }
    let report = check_kind(kind, history, budget)?;
    let text = match report.verdict {
        Verdict::Linearizable => String::new(),
        _ => explain(&report, history),
    };
    Ok((report.verdict, text))
}

/// A readable account of a report's non-linearizable keys (witnesses).
pub fn explain(report: &Report, history: &History) -> String {
    let mut s = String::new();
    for (key, r) in &report.keys {
        match r {
            cairn_check::KeyResult::NotLinearizable { witness, .. } => {
                let _ = writeln!(
                    s,
                    "key {key}: NOT linearizable\n{}",
                    witness.describe(history)
                );
            }
            cairn_check::KeyResult::Unknown { steps, reason } => {
                let _ = writeln!(s, "key {key}: unknown after {steps} steps ({reason:?})");
            }
            _ => {}
        }
    }
    s
}

/// The seed of round `round` of a campaign seeded `seed` (splitmix64).
pub fn round_seed(seed: u64, round: u64) -> u64 {
    let mut z = seed.wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The schedule spec of a campaign round: random faults of every kind,
/// pauses outlasting the election timeout.
pub fn round_schedule_spec(round_ms: u64, election_max_ms: u64) -> ScheduleSpec {
    ScheduleSpec {
        faults: Fault::all(),
        each_once: false,
        warmup_ms: 1500,
        hold_ms: (1500, 5000),
        pause_min_ms: election_max_ms + 1000,
        gap_ms: (1000, 3000),
        total_ms: round_ms.saturating_sub(2500),
    }
}

fn history_counts(h: &History) -> (usize, usize, usize) {
    let ok = h
        .ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    let info = h.ops.iter().filter(|o| o.outcome == Outcome::Info).count();
    (h.ops.len(), ok, info)
}

/// Entry point of the subcommand.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(t ^ u64::from(std::process::id())).next_u64() % 1_000_000_000
    });
    let tool = std::env::current_exe().context("locating this binary")?;
    let cairn = match &args.cairn {
        Some(p) => p.clone(),
        None => tool
            .parent()
            .map(|d| d.join("cairn"))
            .context("no folder for this binary")?,
    };
    anyhow::ensure!(
        cairn.exists(),
        "{} missing: build it (cargo build --release -p cairn-cli) or pass --cairn",
        cairn.display()
    );
    let known: Vec<String> = Fault::all().iter().map(Fault::name).collect();
    if let Some(bad) = args.faults.iter().find(|f| !known.contains(f)) {
        anyhow::bail!("unknown fault kind '{bad}' (one of: {})", known.join(", "));
    }
    let started = Instant::now();
    let limit = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let mut spec = ClusterSpec::new(&cairn, &tool);
    spec.groups = args.groups;
    spec.heartbeat_ms = args.heartbeat_ms;
    spec.election_min_ms = args.election_min_ms;
    spec.election_max_ms = args.election_max_ms;
    spec.durable = !args.volatile;
    spec.unsafe_stale_reads = args.unsafe_stale_reads;
    spec.threads = 1;
    spec.log.clone_from(&args.node_log);
    println!(
        "campaign seed {seed}: {} min, {} s rounds, cairn {}, 3 {} nodes, {} groups, heartbeat {} ms, election {}-{} ms{}",
        args.minutes,
        args.round_secs,
        cairn.display(),
        if spec.durable { "durable" } else { "volatile" },
        spec.groups,
        spec.heartbeat_ms,
        spec.election_min_ms,
        spec.election_max_ms,
        if spec.unsafe_stale_reads { ", UNSAFE STALE READS" } else { "" }
    );
    println!(
        "replay a round: cairn-lab campaign --seed {seed} --first-round R --rounds 1 [same flags]"
    );
    std::fs::create_dir_all(&args.save_dir)
        .with_context(|| format!("creating {}", args.save_dir.display()))?;
    let mut reports: Vec<RoundReport> = Vec::new();
    let mut round = args.first_round;
    let last_round = (args.rounds > 0).then(|| args.first_round + args.rounds - 1);
    // --minutes 0 with --rounds N: only the round count limits.
    let timed = args.minutes > 0.0 || args.rounds == 0;
    let more =
        |round: u64| last_round.is_none_or(|l| round <= l) && (!timed || started.elapsed() < limit);
    'labs: while more(round) {
        let lab = Lab::new(3).context("creating the lab")?;
        let cluster = match Cluster::start(&lab, spec.clone(), Duration::from_secs(60)) {
            Ok(c) => c,
            Err(e) => anyhow::bail!("the cluster did not start: {e}"),
        };
        println!("lab {} up: cluster of 3 ready", lab.prefix());
        while more(round) {
            let r = run_round(&cluster, &args, seed, round)?;
            print_round(&r);
            let broken = r.anomalies.iter().any(|a| a.starts_with("no recovery"));
            reports.push(r);
            round += 1;
            if broken {
                println!("rebuilding the lab after a failed recovery");
                continue 'labs;
            }
        }
    }
    let summary = summarize(seed, &args, &reports, started.elapsed());
    println!("{summary}");
    let _ = std::fs::write(args.save_dir.join(format!("summary-{seed}.md")), &summary);
    let bad = reports.iter().any(RoundReport::suspicious);
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_round(
    cluster: &Cluster<'_>,
    args: &Args,
    campaign_seed: u64,
    round: u64,
) -> anyhow::Result<RoundReport> {
    let t0 = Instant::now();
    let round_wall = std::time::SystemTime::now();
    let lab = cluster.lab();
    let seed = round_seed(campaign_seed, round);
    let round_ms = args.round_secs * 1000;
    let tag = format!("{{r{round}s{}}}", seed % 1000);
    let mk = |kind: &str, sub: &str, salt: u64| WorkloadSpec {
        kind: kind.into(),
        keys: args.keys,
        key_prefix: format!("{tag}{sub}:"),
        processes: args.processes,
        timeout_ms: args.timeout_ms,
        duration_ms: round_ms,
        think_ms: args.think_ms,
        read_percent: 50,
        ops_per_key: args.ops_per_key,
        seed: seed ^ salt,
    };
    let reg = mk("register", "r", 1);
    let ctr = mk("counter", "c", 2);
    // Mostly adds: mid-run reads can only show unexpected elements; lost
    // adds are judged by the final read.
    let set = WorkloadSpec {
        read_percent: 20,
        ..mk("set", "s", 3)
    };
    // Few locks, so that the clients queue for them.
    let locks = WorkloadSpec {
        keys: args.locks.max(1),
        ..mk("lock", "l", 4)
    };
    let mut spec = round_schedule_spec(round_ms, cluster.spec().election_max_ms);
    if !args.faults.is_empty() {
        spec.faults.retain(|f| args.faults.contains(&f.name()));
    }
    let schedule = Schedule::generate(seed, &spec);
    let reg_out = lab.dir().join(format!("round{round}-register.jsonl"));
    let ctr_out = lab.dir().join(format!("round{round}-counter.jsonl"));
    let set_out = lab.dir().join(format!("round{round}-set.jsonl"));
    let lock_out = lab.dir().join(format!("round{round}-lock.json"));
    let wr = cluster.spawn_workload(&reg, &reg_out)?;
    let wc = cluster.spawn_workload(&ctr, &ctr_out)?;
    let ws = cluster.spawn_workload(&set, &set_out)?;
    let wl = cluster.spawn_workload(&locks, &lock_out)?;
    let start = Instant::now();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let stop = AtomicBool::new(false);
    let key = reg.first_key();
    let mut anomalies = Vec::new();
    let mut notes = Vec::new();
    let (events, statuses) = std::thread::scope(|s| {
        let nemesis = s.spawn(|| schedule.run(cluster, &key, start, &stop));
        // The set and lock workloads' final reads may retry for
        // FINAL_READ_LIMIT.
        let limit = Duration::from_millis(round_ms)
            + Duration::from_secs(60)
            + crate::workload::FINAL_READ_LIMIT;
        let statuses: Vec<_> = [wr, wc, ws, wl]
            .iter()
            .map(|&w| lab.wait_timeout(w, limit))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let events = nemesis
            .join()
            .unwrap_or_else(|_| Err(crate::LabError::Invalid("nemesis panicked".into())));
        (events, statuses)
    });
    let events = match events {
        Ok(e) => e,
        Err(e) => {
            anomalies.push(format!("nemesis error: {e}"));
            Vec::new()
        }
    };
    for (name, w, st) in [
        ("register", wr, &statuses[0]),
        ("counter", wc, &statuses[1]),
        ("set", ws, &statuses[2]),
        ("lock", wl, &statuses[3]),
    ] {
        match st {
            Ok(Some(s)) if s.success() => {}
            Ok(Some(s)) => anomalies.push(format!(
                "{name} workload exited {s}: {}",
                last_lines(&lab.log(w), 5)
            )),
            Ok(None) => {
                let _ = lab.kill(w);
                anomalies.push(format!("{name} workload hung"));
            }
            Err(e) => anomalies.push(format!("{name} workload: {e}")),
        }
    }
    // Recovery: everything healed by the schedule; restart crashed nodes.
    for (i, why) in cluster.crashed() {
        anomalies.push(format!("node n{} died on its own: {why}", i + 1));
        let _ = cluster.restart(i);
    }
    let _ = cluster.heal_all();
    match cluster.wait_ready(Duration::from_secs(60)) {
        Ok(()) => match cluster.compare_replicas(Duration::from_secs(20)) {
            Ok(None) => {}
            Ok(Some(d)) if d.starts_with("DIVERGED") => anomalies.push(d),
            Ok(Some(d)) => notes.push(d),
            Err(e) => notes.push(format!("digest probe failed: {e}")),
        },
        Err(e) => anomalies.push(format!("no recovery within 60 s: {e}")),
    }
    let budget = Budget {
        max_steps: 5_000_000,
        max_time: Some(Duration::from_secs(120)),
    };
    let mut results = Vec::new();
    let mut explanations = String::new();
    for (kind, out, w) in [
        ("register", &reg_out, wr),
        ("counter", &ctr_out, wc),
        ("set", &set_out, ws),
    ] {
        let mut kr = KindResult::default();
        match std::fs::read_to_string(out)
            .map_err(anyhow::Error::from)
            .and_then(|t| History::from_jsonl_str(&t).map_err(anyhow::Error::from))
        {
            Ok(h) => {
                (kr.ops, kr.ok, kr.info) = history_counts(&h);
                let t = Instant::now();
                match judge(kind, &h, &budget) {
                    Ok((verdict, text)) => {
                        kr.verdict = Some(verdict);
                        if verdict != Verdict::Linearizable {
                            explanations.push_str(&format!("=== {kind}\n{text}"));
                        }
                    }
                    Err(e) => anomalies.push(format!("{kind} history rejected: {e}")),
                }
                kr.check_time = t.elapsed();
            }
            Err(e) => anomalies.push(format!(
                "{kind} history unreadable: {e}: {}",
                last_lines(&lab.log(w), 5)
            )),
        }
        results.push(kr);
    }
    let (lock, lock_counts) = match judge_locks(&lock_out) {
        Ok((kr, counts, text)) => {
            if kr.verdict != Some(Verdict::Linearizable) {
                explanations.push_str(&format!("=== lock\n{text}"));
            }
            (kr, counts)
        }
        Err(e) => {
            anomalies.push(format!(
                "lock history unreadable: {e}: {}",
                last_lines(&lab.log(wl), 5)
            ));
            (KindResult::default(), LockCounts::default())
        }
    };
    let outs = [
        reg_out.as_path(),
        ctr_out.as_path(),
        set_out.as_path(),
        lock_out.as_path(),
    ];
    let mut ok_times = Vec::new();
    for out in outs {
        let side = crate::avail::OkTimes::path_for(out);
        match std::fs::read(&side)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
        {
            Ok(t) => ok_times.push(t),
            Err(e) => notes.push(format!("no completion times ({}): {e}", side.display())),
        }
        let _ = std::fs::remove_file(&side);
    }
    let stalls = if ok_times.len() == outs.len() {
        let times = crate::avail::merge(&ok_times, start_unix_ns, cluster.nodes());
        crate::avail::stalls(&events, &times, round_ms)
    } else {
        Vec::new()
    };
    let set = results.pop().unwrap_or_default();
    let counter = results.pop().unwrap_or_default();
    let register = results.pop().unwrap_or_default();
    let report = RoundReport {
        round,
        seed,
        faults: events
            .iter()
            .filter_map(|e| e.fault.map(|f| f.name()))
            .collect(),
        register,
        counter,
        set,
        lock,
        lock_counts,
        anomalies,
        notes,
        stalls,
        took: t0.elapsed(),
    };
    if report.suspicious() || report.stalled_over(args.stall_limit_ms()) {
        let dir = args
            .save_dir
            .join(format!("seed{campaign_seed}-round{round}"));
        if let Err(e) = save_round(
            &dir,
            round_wall,
            cluster,
            &schedule,
            &events,
            &outs,
            &explanations,
        ) {
            eprintln!("saving round {round} to {}: {e}", dir.display());
        } else {
            println!("round {round}: evidence saved in {}", dir.display());
        }
    }
    // Histories of passing rounds are not kept (they are large).
    for out in outs {
        let _ = std::fs::remove_file(out);
    }
    Ok(report)
}

fn last_lines(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join(" | ")
}

fn save_round(
    dir: &Path,
    round_start: std::time::SystemTime,
    cluster: &Cluster<'_>,
    schedule: &Schedule,
    events: &[crate::nemesis::Event],
    histories: &[&Path],
    explanations: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut ev = schedule.describe();
    ev.push_str("\nevents:\n");
    for e in events {
        let _ = writeln!(ev, "[{:>6} ms] {}", e.at_ms, e.text);
    }
    std::fs::write(dir.join("nemesis.txt"), ev)?;
    std::fs::write(dir.join("witness.txt"), explanations)?;
    for h in histories {
        if let Some(name) = h.file_name() {
            let _ = std::fs::copy(h, dir.join(name));
        }
    }
    // Every node log written during the round (restarted nodes have one
    // per incarnation: `<proc>-<prefix>n<i>-cairn.log`) and the thread
    // stacks of nodes that stopped answering (see Cluster::wait_ready).
    for e in std::fs::read_dir(cluster.lab().dir())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let recent = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m >= round_start);
        if name.contains("-stacks-") || (name.ends_with("-cairn.log") && recent) {
            let _ = std::fs::copy(e.path(), dir.join(&name));
        }
    }
    Ok(())
}

fn verdict_str(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Linearizable) => "linearizable",
        Some(Verdict::NotLinearizable) => "NOT LINEARIZABLE",
        Some(Verdict::Unknown) => "unknown",
        None => "no history",
    }
}

fn set_verdict_str(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Linearizable) => "valid",
        Some(Verdict::NotLinearizable) => "LOST OR UNEXPECTED ADDS",
        Some(Verdict::Unknown) => "unknown (no final read)",
        None => "no history",
    }
}

fn lock_verdict_str(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Linearizable) => "valid",
        Some(Verdict::NotLinearizable) => "LOCK VIOLATION",
        Some(Verdict::Unknown) => "unknown (no final read)",
        None => "no history",
    }
}

fn print_round(r: &RoundReport) {
    let worst = r
        .stalls
        .iter()
        .max_by_key(|s| s.longest_ms)
        .map(|s| {
            format!(
                " | longest stall {} ms ({} at n{})",
                s.longest_ms,
                s.fault,
                s.node + 1
            )
        })
        .unwrap_or_default();
    println!(
        "round {:>3} seed {:>20} | {:>5.1} s | register {:>6} ops ({:>4} info) {} | counter {:>6} ops ({:>4} info) {} | set {:>6} ops ({:>4} info) {} | lock {:>5} ops ({:>3} info, {:>4} grants, {:>3} stale writes refused) {} | faults: {}{}{}{}",
        r.round,
        r.seed,
        r.took.as_secs_f64(),
        r.register.ops,
        r.register.info,
        verdict_str(r.register.verdict),
        r.counter.ops,
        r.counter.info,
        verdict_str(r.counter.verdict),
        r.set.ops,
        r.set.info,
        set_verdict_str(r.set.verdict),
        r.lock.ops,
        r.lock.info,
        r.lock_counts.grants,
        r.lock_counts.refused,
        lock_verdict_str(r.lock.verdict),
        r.faults.join(", "),
        worst,
        if r.anomalies.is_empty() {
            String::new()
        } else {
            format!(" | ANOMALIES: {}", r.anomalies.join("; "))
        },
        if r.notes.is_empty() {
            String::new()
        } else {
            format!(" | notes: {}", r.notes.join("; "))
        },
    );
}

/// The campaign's summary: a Markdown table per fault kind and one of
/// totals.
pub fn summarize(seed: u64, args: &Args, reports: &[RoundReport], took: Duration) -> String {
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        for f in &r.faults {
            *faults.entry(f.clone()).or_default() += 1;
        }
    }
    let sum = |f: &dyn Fn(&RoundReport) -> usize| reports.iter().map(f).sum::<usize>();
    let count = |kind: fn(&RoundReport) -> Option<Verdict>, v: Verdict| {
        reports.iter().filter(|r| kind(r) == Some(v)).count()
    };
    let reg = |r: &RoundReport| r.register.verdict;
    let ctr = |r: &RoundReport| r.counter.verdict;
    let set = |r: &RoundReport| r.set.verdict;
    let lock = |r: &RoundReport| r.lock.verdict;
    let mut s = String::new();
    let _ = writeln!(s, "\n## campaign summary (seed {seed})\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| duration | {:.1} min |", took.as_secs_f64() / 60.0);
    let _ = writeln!(
        s,
        "| rounds | {} ({} s of workload each) |",
        reports.len(),
        args.round_secs
    );
    let _ = writeln!(
        s,
        "| faults injected | {} |",
        faults.values().sum::<usize>()
    );
    let _ = writeln!(
        s,
        "| register ops checked | {} ({} ok, {} info) |",
        sum(&|r| r.register.ops),
        sum(&|r| r.register.ok),
        sum(&|r| r.register.info)
    );
    let _ = writeln!(
        s,
        "| counter ops checked | {} ({} ok, {} info) |",
        sum(&|r| r.counter.ops),
        sum(&|r| r.counter.ok),
        sum(&|r| r.counter.info)
    );
    let _ = writeln!(
        s,
        "| set ops checked | {} ({} ok, {} info) |",
        sum(&|r| r.set.ops),
        sum(&|r| r.set.ok),
        sum(&|r| r.set.info)
    );
    let _ = writeln!(
        s,
        "| lock ops checked | {} ({} ok, {} info): {} grants, fenced writes {} accepted, {} refused (stale holders), {} unknown |",
        sum(&|r| r.lock.ops),
        sum(&|r| r.lock.ok),
        sum(&|r| r.lock.info),
        sum(&|r| r.lock_counts.grants),
        sum(&|r| r.lock_counts.accepted),
        sum(&|r| r.lock_counts.refused),
        sum(&|r| r.lock_counts.unknown)
    );
    let _ = writeln!(
        s,
        "| register verdicts | {} linearizable, {} NOT, {} unknown |",
        count(reg, Verdict::Linearizable),
        count(reg, Verdict::NotLinearizable),
        count(reg, Verdict::Unknown)
    );
    let _ = writeln!(
        s,
        "| counter verdicts | {} linearizable, {} NOT, {} unknown |",
        count(ctr, Verdict::Linearizable),
        count(ctr, Verdict::NotLinearizable),
        count(ctr, Verdict::Unknown)
    );
    let _ = writeln!(
        s,
        "| set verdicts | {} valid, {} LOST OR UNEXPECTED, {} unknown |",
        count(set, Verdict::Linearizable),
        count(set, Verdict::NotLinearizable),
        count(set, Verdict::Unknown)
    );
    let _ = writeln!(
        s,
        "| lock verdicts | {} valid, {} LOCK VIOLATION, {} unknown |",
        count(lock, Verdict::Linearizable),
        count(lock, Verdict::NotLinearizable),
        count(lock, Verdict::Unknown)
    );
    let anomalies: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.anomalies
                .iter()
                .map(move |a| format!("round {}: {a}", r.round))
        })
        .collect();
    let _ = writeln!(s, "| anomalies | {} |", anomalies.len());
    // Availability per fault kind: the longest stretch without a
    // completed request at a healthy node, against the target.
    let limit = args.stall_limit_ms();
    let mut stalls: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in reports {
        for st in &r.stalls {
            stalls
                .entry(st.fault.clone())
                .or_default()
                .push(st.longest_ms);
        }
    }
    let _ = writeln!(
        s,
        "\n| fault | times | longest stall at a healthy node: median | max | over {limit} ms |\n|---|---|---|---|---|"
    );
    for (f, n) in &faults {
        let mut v = stalls.get(f).cloned().unwrap_or_default();
        v.sort_unstable();
        let (median, max) = match (v.get(v.len() / 2), v.last()) {
            (Some(m), Some(x)) => (format!("{m} ms"), format!("{x} ms")),
            _ => ("-".into(), "-".into()),
        };
        let over = v.iter().filter(|&&x| x > limit).count();
        let _ = writeln!(s, "| {f} | {n} | {median} | {max} | {over} |");
    }
    if !anomalies.is_empty() {
        let _ = writeln!(s, "\nanomalies:");
        for a in &anomalies {
            let _ = writeln!(s, "- {a}");
        }
    }
    let notes: usize = reports.iter().map(|r| r.notes.len()).sum();
    if notes > 0 {
        let _ = writeln!(
            s,
            "\n{notes} notes (replicas still catching up when compared; see the round lines)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avail::Stall;

    fn report(stalls: &[u64]) -> RoundReport {
        let ok = KindResult {
            verdict: Some(Verdict::Linearizable),
            ..KindResult::default()
        };
        RoundReport {
            round: 1,
            seed: 1,
            faults: vec![],
            register: ok.clone(),
            counter: ok.clone(),
            set: ok.clone(),
            lock: ok,
            lock_counts: LockCounts::default(),
            anomalies: vec![],
            notes: vec![],
            stalls: stalls
                .iter()
                .map(|&ms| Stall {
                    fault: "latency-leader".into(),
                    longest_ms: ms,
                    node: 0,
                })
                .collect(),
            took: Duration::ZERO,
        }
    }

    #[test]
    fn a_stall_past_the_target_is_kept_but_is_not_a_safety_failure() {
        let limit = 2000;
        assert!(!report(&[300, 2000]).stalled_over(limit));
        let slow = report(&[300, 3777]);
        assert!(slow.stalled_over(limit));
        assert!(
            !slow.suspicious(),
            "availability never changes the exit status"
        );
        let mut bad = report(&[]);
        bad.anomalies.push("replicas differ".into());
        assert!(bad.suspicious() && !bad.stalled_over(limit));
    }
}
