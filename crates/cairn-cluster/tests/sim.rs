//! Deterministic simulation of the Raft layer (needs `--features sim`).
//!
//! - `CAIRN_SIM_SEED=N` runs only seed N (and prints its last trace lines
//!   on failure); `CAIRN_SIM_SEEDS=K` runs seeds 1..=K instead of the
//!   fixed list; `CAIRN_SIM_SECS=S` changes the simulated client time.
//! - `CAIRN_SIM_TRACE=path` writes the trace of the seeds run to `path`.
//! - By default: the fixed seeds plus one random seed, printed.
//!
//! See docs/design/simulation.md.

use std::time::{Duration, Instant};

use cairn_cluster::sim::{run, Sabotage, SimConfig, SimOutcome};

/// The fixed list run by default (CI).
const FIXED_SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

/// Seeds that once found a bug, kept as regressions. 153961163432460 (a
/// random seed of a CI run, session 5): a 5-node run where n4, crashed as
/// leader, restarted and answered a read 18 ms later with a value
/// overwritten before the crash — openraft 0.9 restored it as leader of
/// its old term before it re-applied its committed entries; the harness's
/// read lacked the read fence the product's `read_barrier` has.
const REGRESSION_SEEDS: [u64; 1] = [153_961_163_432_460];

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

fn config(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(seed);
    if let Some(s) = env_u64("CAIRN_SIM_SECS") {
        cfg.duration = Duration::from_secs(s);
    }
    cfg
}

fn run_ok(cfg: SimConfig) -> SimOutcome {
    match run(cfg) {
        Ok(o) => o,
        Err(e) => panic!("simulation could not start: {e}"),
    }
}

#[test]
fn seeds_are_safe_and_linearizable() {
    let seeds: Vec<u64> = match (env_u64("CAIRN_SIM_SEED"), env_u64("CAIRN_SIM_SEEDS")) {
        (Some(s), _) => vec![s],
        (None, Some(k)) => (1..=k).collect(),
        // The fixed seeds, plus one random seed per run (printed, so a
        // failure it finds can be replayed with CAIRN_SIM_SEED).
        (None, None) => {
            let random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                >> 16;
            println!("random seed this run: {random} (CAIRN_SIM_SEED={random} replays it)");
            FIXED_SEEDS
                .chain(REGRESSION_SEEDS)
                .chain(std::iter::once(random))
                .collect()
        }
    };
    let mut failed = Vec::new();
    let mut faults = 0;
    let mut traces = String::new();
    let t0 = Instant::now();
    for &seed in &seeds {
        let t = Instant::now();
        let out = run_ok(config(seed));
        let sim_wall = t.elapsed();
        // Every seed must do real work, or it proves nothing.
        assert!(
            out.stats.ops_ok > 50,
            "seed {seed}: only {} operations succeeded",
            out.stats.ops_ok
        );
        faults += out.stats.crashes + out.stats.partitions + out.stats.lost;
        if std::env::var_os("CAIRN_SIM_TRACE").is_some() {
            traces.push_str(&out.trace.join("\n"));
            traces.push('\n');
        }
        let t = Instant::now();
        let verdict = out.check();
        let wall = format!("simulation {sim_wall:.2?}, check {:.2?}", t.elapsed());
        match verdict {
            Ok(summary) => println!("ok   {summary} [{wall}]"),
            Err(msg) => {
                println!("FAIL {msg} [{wall}]");
                failed.push(seed);
            }
        }
    }
    if let Some(p) = std::env::var_os("CAIRN_SIM_TRACE") {
        std::fs::write(&p, traces).expect("write the trace file");
    }
    println!("{} seeds in {:.2?}", seeds.len(), t0.elapsed());
    assert!(faults > 0, "no fault was injected in any seed");
    assert!(
        failed.is_empty(),
        "seeds {failed:?} failed; reproduce one with \
         CAIRN_SIM_SEED=<seed> cargo test -p cairn-cluster --features sim --test sim -- --nocapture"
    );
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let short = |seed| {
        let mut cfg = SimConfig::new(seed);
        cfg.duration = Duration::from_secs(20);
        cfg
    };
    let a = run_ok(short(7));
    let b = run_ok(short(7));
    assert!(a.trace.len() > 1000, "trace too short: {}", a.trace.len());
    assert!(
        a.stats.lost > 0 && a.stats.partitions + a.stats.crashes > 0,
        "seed 7 injected no faults: {:?}",
        a.stats
    );
    if a.trace != b.trace {
        let i = a
            .trace
            .iter()
            .zip(&b.trace)
            .position(|(x, y)| x != y)
            .unwrap_or(a.trace.len().min(b.trace.len()));
        panic!(
            "same seed, different traces; first difference at line {i}:\n  {:?}\n  {:?}",
            a.trace.get(i),
            b.trace.get(i)
        );
    }
    assert_eq!(a.history, b.history, "same seed, different histories");
    assert_eq!(a.stats, b.stats);
    assert_eq!(a.trace_digest(), b.trace_digest());
    let c = run_ok(short(8));
    assert_ne!(a.trace, c.trace, "different seeds gave the same trace");
    assert_ne!(a.trace_digest(), c.trace_digest());
}

/// A perfect network: every operation completes, and the trace has no
/// fault in it.
#[test]
fn no_faults_no_failures() {
    let mut cfg = SimConfig::new(2);
    cfg.faults = false;
    cfg.duration = Duration::from_secs(10);
    let out = run_ok(cfg);
    if let Err(e) = out.check() {
        panic!("{e}");
    }
    assert_eq!(out.stats.lost, 0);
    assert_eq!(out.stats.crashes, 0);
    let infos: Vec<_> = out
        .history
        .ops
        .iter()
        .filter(|o| o.outcome == cairn_check::Outcome::Info)
        .collect();
    assert!(infos.is_empty(), "indeterminate operations: {infos:?}");
    assert!(out.stats.ops_ok > 500, "{:?}", out.stats);
}

/// The harness can fail: each planted bug is caught by the checks for
/// some seed of the fixed list (the first one found is printed).
fn caught(sabotage: Sabotage) -> u64 {
    for seed in FIXED_SEEDS {
        let mut cfg = SimConfig::new(seed);
        cfg.sabotage = sabotage;
        let out = run_ok(cfg);
        if let Err(msg) = out.check() {
            println!("{sabotage:?} caught by seed {seed}:\n{msg}");
            return seed;
        }
        println!("{sabotage:?} not caught by seed {seed}");
    }
    panic!("{sabotage:?} was not caught by any seed in {FIXED_SEEDS:?}");
}

#[test]
fn stale_reads_are_caught() {
    caught(Sabotage::StaleReads);
}

#[test]
fn ack_before_commit_is_caught() {
    caught(Sabotage::AckBeforeCommit);
}

#[test]
fn broken_state_machine_is_caught() {
    caught(Sabotage::BrokenCas);
}
