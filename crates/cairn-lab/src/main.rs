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
use cairn_lab::workload;
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
        /// register (GET/SET/SET IFEQ) or counter (GET/INCRBY).
        #[arg(long, default_value = "register")]
        kind: String,
        /// Node address, IP:PORT.
        #[arg(long)]
        addr: SocketAddr,
        /// Number of keys.
        #[arg(long, default_value_t = 5)]
        keys: usize,
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
    /// PING a node until it answers (or time runs out).
    WaitReady {
        /// Node address, IP:PORT.
        #[arg(long)]
        addr: SocketAddr,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Check a recorded history for linearizability.
    Check {
        /// The model: register or counter.
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
        other => bail!("unknown workload kind '{other}' (register or counter)"),
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
            keys,
            ops,
            processes,
            timeout_ms,
            duration_ms,
            think_ms,
            seed,
            out,
        } => {
            guard(&addr)?;
            let kind = parse_kind(&kind)?;
            let cfg = workload::Config {
                kind,
                addr: addr.to_string(),
                keys,
                ops,
                processes,
                timeout: Duration::from_millis(timeout_ms.max(1)),
                duration: (duration_ms > 0).then(|| Duration::from_millis(duration_ms)),
                think: Duration::from_millis(think_ms),
                seed,
            };
            let (history, stats) = runtime()?
                .block_on(workload::run(cfg))
                .context("workload")?;
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            history
                .write_jsonl(BufWriter::new(file))
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "ops": stats.ops, "ok": stats.ok, "fail": stats.fail, "info": stats.info,
                    "processes": stats.processes, "connect_failures": stats.connect_failures,
                    "unexpected": stats.unexpected, "out": out.display().to_string(),
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
        Cmd::Check { kind, history } => {
            let file =
                File::open(&history).with_context(|| format!("opening {}", history.display()))?;
            let h = History::read_jsonl(std::io::BufReader::new(file))?;
            let report = match parse_kind(&kind)? {
                workload::Kind::Register => check(&h, &Register, &Budget::default())?,
                workload::Kind::Counter => check(&h, &Counter, &Budget::default())?,
            };
            for (key, result) in &report.keys {
                println!("{key}: {result:?}");
            }
            println!("verdict: {:?} ({} ops)", report.verdict, h.ops.len());
            match report.verdict {
                Verdict::Linearizable => Ok(ExitCode::SUCCESS),
                Verdict::NotLinearizable => Ok(ExitCode::from(1)),
                _ => bail!(
                    "verdict {:?}: the checker ran out of budget",
                    report.verdict
                ),
            }
        }
    }
}
