//! Deterministic simulation of the Raft engine (needs `--features sim`):
//! the real raft loops, storage and wire formats under a seeded nemesis.
//!
//! - `CAIRN_SIM_SEED=N` runs only seed N; `CAIRN_SIM_SEEDS=K` runs seeds
//!   1..=K instead of the fixed list; `CAIRN_SIM_SECS=S` changes the
//!   simulated client time.
//! - By default: the fixed seeds plus one random seed, printed.
//!
//! See docs/design/simulation.md.

use std::time::{Duration, Instant};

use cairn_cluster::sim::{run, Sabotage, SimConfig, SimOutcome};

/// The fixed list run by default (CI).
const FIXED_SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

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
        Err(e) => panic!("simulation could not run: {e}"),
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
            FIXED_SEEDS.chain(std::iter::once(random)).collect()
        }
    };
    let mut failed = Vec::new();
    let mut faults = 0;
    let t0 = Instant::now();
    for &seed in &seeds {
        let t = Instant::now();
        let out = run_ok(config(seed));
        // Every seed must do real work, or it proves nothing.
        assert!(
            out.stats.ops_ok > 50,
            "seed {seed}: only {} operations succeeded: {:?}",
            out.stats.ops_ok,
            out.stats
        );
        faults += out.stats.crashes + out.stats.partitions + out.stats.lost;
        match out.check() {
            Ok(summary) => println!("ok   {summary} [{:.2?}]", t.elapsed()),
            Err(msg) => {
                println!("FAIL {msg}");
                for l in out.trace.iter().rev().take(30).rev() {
                    println!("     {l}");
                }
                failed.push(seed);
            }
        }
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
    assert!(
        a.stats.partitions + a.stats.crashes + a.stats.transfers > 0,
        "seed 7 injected no faults: {:?}",
        a.stats
    );
    assert!(a.trace.len() > 10, "trace too short: {:?}", a.trace);
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
    assert_eq!(a.registers, b.registers, "same seed, different histories");
    assert_eq!(a.counters, b.counters);
    assert_eq!(a.stats, b.stats);
    let c = run_ok(short(8));
    assert_ne!(a.registers, c.registers, "different seeds, same history");
}

/// The harness can fail: each planted bug is caught by the checks for
/// some seed of the fixed list (the first one found is printed).
fn caught(sabotage: Sabotage) -> u64 {
    caught_in(sabotage, FIXED_SEEDS)
}

fn caught_in(sabotage: Sabotage, seeds: std::ops::RangeInclusive<u64>) -> u64 {
    for seed in seeds.clone() {
        let mut cfg = SimConfig::new(seed);
        cfg.sabotage = sabotage;
        let out = run_ok(cfg);
        if let Err(msg) = out.check() {
            println!("{sabotage:?} caught by seed {seed}:\n{msg}");
            return seed;
        }
        println!("{sabotage:?} not caught by seed {seed}");
    }
    panic!("{sabotage:?} was not caught by any seed in {seeds:?}");
}

#[test]
fn reads_without_a_barrier_are_caught() {
    caught(Sabotage::ReadWithoutBarrier);
}

#[test]
fn ack_before_commit_is_caught() {
    caught(Sabotage::AckBeforeCommit);
}

/// Rarer: check-quorum masks most of a too-long lease (see `Sabotage`):
/// 6 of seeds 1-600 catch it (291, 300, 320, 436, 444, 586 after the
/// session-10 start-up wake changed every trace), so this searches a
/// range known to hold one rather than 290 seeds on every CI run. When a
/// change to the simulation moves them, rescan with a loop over
/// `SimConfig::new(seed)` + `Sabotage::LeaseTooLong` and `check()`.
#[test]
fn a_lease_longer_than_followers_wait_is_caught() {
    caught_in(Sabotage::LeaseTooLong, 281..=300);
}
