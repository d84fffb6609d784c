//! `cairn-lab`: the fault lab's client-side tool. Run it *inside* a lab
//! namespace (`ip netns exec <prefix>c cairn-lab workload ...`); it refuses
//! to reach a non-loopback address from the root network namespace.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_check::{check, Budget, Counter, History, Register, Verdict};
use cairn_lab::{campaign, delay, probe, workload};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn-lab", about = "cairn fault-lab client tool")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a concurrent workload and record a history (JSON Lines).
    Workload {
        /// register (GET/SET/SET IFEQ), counter (GET/INCRBY), set
        /// (unique adds, MGET reads, a final read of every set) or lock
        /// (contended LOCK.ACQUIRE WAIT, fenced INCRBYs, LOCK.RELEASE, a
        /// final read of every fenced counter; --out gets one JSON object).
        #[arg(long, default_value = "register")]
        kind: String,
        /// Node address, IP:PORT (one node; same as --targets with one).
        #[arg(long, conflicts_with = "targets", required_unless_present = "targets")]
        addr: Option<SocketAddr>,
        /// Node addresses, IP:PORT,IP:PORT,...: client slot i uses target
        /// i mod n.
        #[arg(long, value_delimiter = ',')]
        targets: Vec<SocketAddr>,
        /// Number of keys.
        #[arg(long, default_value_t = 5)]
        keys: usize,
        /// Key prefix: keys are PREFIXk0, PREFIXk1, ... (a hash tag such
        /// as `{t}:` keeps them all in one cluster slot).
        #[arg(long, default_value = "lab:")]
        key_prefix: String,
        /// Share of reads (GET), in percent.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
        read_percent: u8,
        /// Rotate keys: after about N operations per key move on to fresh
        /// keys (0 = never), keeping per-key histories short to check.
        #[arg(long, default_value_t = 0)]
        ops_per_key: u64,
        /// Total operations (all processes together).
        #[arg(long, default_value_t = 1000)]
        ops: u64,
        /// Concurrent client processes.
        #[arg(long, default_value_t = 5)]
        processes: usize,
        /// Per-operation timeout in milliseconds.
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
        /// Stop issuing operations after this many milliseconds (0 = no limit).
        #[arg(long, default_value_t = 0)]
        duration_ms: u64,
        /// Pause between one process's operations, in milliseconds.
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        /// Seed of the operation mix.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the history.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print, as JSON, which node each target names as leader of KEY's
    /// group (CLUSTER KEYSLOT + CLUSTER SHARDS), and the majority answer.
    Leader {
        /// Node addresses, IP:PORT,...
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<SocketAddr>,
        /// The key whose group matters.
        #[arg(long)]
        key: String,
        /// Per-node limit in milliseconds.
        #[arg(long, default_value_t = 700)]
        timeout_ms: u64,
    },
    /// Wait until every target reports cluster_state:ok (CLUSTER INFO).
    WaitCluster {
        /// Node addresses, IP:PORT,...
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<SocketAddr>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 30000)]
        timeout_ms: u64,
    },
    /// Print every target's CLUSTER DIGEST as JSON:
    /// {"IP:PORT": {"GROUP": [applied_index, "digest"]} or "error"}.
    Digest {
        /// Node addresses, IP:PORT,...
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<SocketAddr>,
        /// Per-node limit in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Long randomized fault campaign against a 3-node cluster: rounds of
    /// register, counter, set and lock workloads under a seeded random
    /// nemesis, every history checked, a summary table at the end. Run as root from the
    /// root namespace (it builds its own lab); see docs/VERIFICATION.md.
    Campaign(campaign::Args),
    /// Delay (and optionally drop) the packets an iptables NFQUEUE rule
    /// sends to a netfilter queue: run it inside the namespace whose rule
    /// feeds the queue. Stops on SIGTERM (releasing what it holds) or after
    /// --max-lifetime-ms.
    Delayer(delay::Args),
    /// PING a node until it answers (or time runs out).
    WaitReady {
        /// Node address, IP:PORT.
        #[arg(long)]
        addr: SocketAddr,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Check a recorded history for linearizability (register, counter),
    /// lost and unexpected elements (set) or lock safety (lock: exclusion,
    /// token order, fenced writes, counter bounds).
    Check {
        /// The model: register, counter, set or lock.
        #[arg(long, default_value = "register")]
        kind: String,
        /// The history (JSON Lines).
        history: PathBuf,
    },
}

/// The safety rule: a lab address may only be reached from inside a lab
/// namespace. Loopback is always fine.
fn guard(addr: &SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    cairn_lab::assert_not_root_netns().with_context(|| format!("not connecting to {addr}"))?;
    Ok(())
}

fn parse_kind(kind: &str) -> anyhow::Result<workload::Kind> {
    match kind {
        "register" => Ok(workload::Kind::Register),
        "counter" => Ok(workload::Kind::Counter),
        "set" => Ok(workload::Kind::Set),
        "list" => Ok(workload::Kind::List),
        "lock" => Ok(workload::Kind::Lock),
        other => bail!("unknown workload kind '{other}' (register, counter, set, list or lock)"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Workload {
            kind,
            addr,
            targets,
            keys,
            key_prefix,
            read_percent,
            ops_per_key,
            ops,
            processes,
            timeout_ms,
            duration_ms,
            think_ms,
            seed,
            out,
        } => {
            let targets: Vec<SocketAddr> = addr.into_iter().chain(targets).collect();
            if targets.is_empty() {
                bail!("no target: give --addr or --targets");
            }
            for t in &targets {
                guard(t)?;
            }
            let kind = parse_kind(&kind)?;
            let cfg = workload::Config {
                kind,
                targets: targets.iter().map(ToString::to_string).collect(),
                keys,
                key_prefix,
                read_percent,
                ops_per_key,
                ops,
                processes,
                timeout: Duration::from_millis(timeout_ms.max(1)),
                duration: (duration_ms > 0).then(|| Duration::from_millis(duration_ms)),
                think: Duration::from_millis(think_ms),
                seed,
            };
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let stats = if kind == workload::Kind::Lock {
                let (run, stats) = runtime()?
                    .block_on(workload::run_locks(cfg))
                    .context("workload")?;
                serde_json::to_writer(BufWriter::new(file), &run)
                    .with_context(|| format!("writing {}", out.display()))?;
                stats
            } else {
                let (history, stats) = runtime()?
                    .block_on(workload::run(cfg))
                    .context("workload")?;
                history
                    .write_jsonl(BufWriter::new(file))
                    .with_context(|| format!("writing {}", out.display()))?;
                stats
            };
            let times = cairn_lab::avail::OkTimes {
                start_unix_ns: stats.start_unix_ns,
                ok_ns: stats.ok_times.clone(),
            };
            let side = cairn_lab::avail::OkTimes::path_for(&out);
            std::fs::write(&side, serde_json::to_vec(&times)?)
                .with_context(|| format!("writing {}", side.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "ops": stats.ops, "ok": stats.ok, "fail": stats.fail, "info": stats.info,
                    "processes": stats.processes, "connect_failures": stats.connect_failures,
                    "unexpected": stats.unexpected, "errors": stats.errors,
                    "ok_per_target": stats.ok_per_target, "out": out.display().to_string(),
                })
            );
            if stats.unexpected > 0 {
                eprintln!(
                    "cairn-lab: {} replies of an unexpected shape",
                    stats.unexpected
                );
                return Ok(ExitCode::from(3));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Leader {
            targets,
            key,
            timeout_ms,
        } => {
            for t in &targets {
                guard(t)?;
            }
            let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
            let report = runtime()?.block_on(probe::leader(
                &targets,
                &key,
                Duration::from_millis(timeout_ms),
            ));
            let views: serde_json::Map<String, serde_json::Value> = report
                .views
                .iter()
                .map(|(t, v)| {
                    let v = match v {
                        Ok(v) => serde_json::json!({"leader": v.leader, "applied": v.applied}),
                        Err(e) => serde_json::json!({"error": e}),
                    };
                    (t.clone(), v)
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"key": key, "slot": report.slot, "leader": report.leader, "views": views})
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WaitCluster {
            targets,
            timeout_ms,
        } => {
            for t in &targets {
                guard(t)?;
            }
            let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
            let took = runtime()?
                .block_on(probe::wait_cluster(
                    &targets,
                    Duration::from_millis(timeout_ms),
                ))
                .map_err(anyhow::Error::msg)?;
            println!("cluster ready after {} ms", took.as_millis());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Digest {
            targets,
            timeout_ms,
        } => {
            for t in &targets {
                guard(t)?;
            }
            let limit = Duration::from_millis(timeout_ms);
            let rt = runtime()?;
            let mut all = serde_json::Map::new();
            for t in targets.iter().map(ToString::to_string) {
                let v = match rt.block_on(probe::digest(&t, limit)) {
                    Ok(d) => serde_json::Value::Object(
                        d.into_iter()
                            .map(|(g, (idx, dig))| (g.to_string(), serde_json::json!([idx, dig])))
                            .collect(),
                    ),
                    Err(e) => serde_json::Value::String(e),
                };
                all.insert(t, v);
            }
            println!("{}", serde_json::Value::Object(all));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Campaign(args) => campaign::main(args),
        Cmd::Delayer(args) => delay::main(args),
        Cmd::WaitReady { addr, timeout_ms } => {
            guard(&addr)?;
            let took = runtime()?
                .block_on(workload::wait_ready(
                    &addr.to_string(),
                    Duration::from_millis(timeout_ms),
                ))
                .map_err(anyhow::Error::msg)?;
            println!("{addr} ready after {} ms", took.as_millis());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { kind, history } => check_file(parse_kind(&kind)?, &history),
    }
}

/// `cairn-lab check`: exit 0 when valid (linearizable), 1 when not, an
/// error when undecided.
fn check_file(kind: workload::Kind, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let (verdict, undecided) = match kind {
        workload::Kind::Lock => {
            let h: cairn_check::LockHistory = serde_json::from_reader(reader)
                .with_context(|| format!("reading {}", path.display()))?;
            let (verdict, text) = campaign::check_lock_history_text(&h)?;
            print!("{text}");
            (verdict, "a fenced counter has no final read")
        }
        workload::Kind::Set | workload::Kind::List => {
            let h = History::read_jsonl(reader)?;
            let (verdict, text) = campaign::check_set_history(&h)?;
            print!("{text}");
            println!("{} ops", h.ops.len());
            (verdict, "a set has no final read")
        }
        workload::Kind::Register | workload::Kind::Counter => {
            let h = History::read_jsonl(reader)?;
            let report = if kind == workload::Kind::Counter {
                check(&h, &Counter, &Budget::default())?
            } else {
                check(&h, &Register, &Budget::default())?
            };
            for (key, result) in &report.keys {
                println!("{key}: {result:?}");
            }
            println!("verdict: {:?} ({} ops)", report.verdict, h.ops.len());
            (report.verdict, "the checker ran out of budget")
        }
    };
    match verdict {
        Verdict::Linearizable => Ok(ExitCode::SUCCESS),
        Verdict::NotLinearizable => Ok(ExitCode::from(1)),
        _ => bail!("verdict {verdict:?}: {undecided}"),
    }
}
