//! `cairn-bench`: load generators for benches/vs-redis.sh.
//!
//! * `zipf`: a read-through cache workload (GET; on a miss, SET) with keys drawn
//!   from a Zipf distribution; reports the hit ratio. Works against any
//!   RESP server, so cairn and redis-server can be compared with the same seed.
//! * `gen-sets`: writes `SET key:%010d <value>` commands in RESP to stdout, to be
//!   fed to `redis-cli --pipe`.

mod workload;
mod zipf;

use std::io::{BufWriter, Write};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cairn-bench",
    about = "Benchmark load generators for cairn (and any Redis-protocol server)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read-through workload (GET, SET on miss) over Zipf-distributed keys; prints the hit ratio.
    Zipf(ZipfArgs),
    /// Write RESP `SET key:%010d <value>` commands to stdout (for `redis-cli --pipe`).
    GenSets(GenArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ZipfArgs {
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, short)]
    pub port: u16,
    /// Size of the key space (distinct keys).
    #[arg(long)]
    pub keys: u64,
    /// Measured operations (GETs).
    #[arg(long)]
    pub ops: u64,
    /// Warm-up operations run before measuring (same workload, not counted).
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Value size in bytes for the SETs issued on misses.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Zipf exponent.
    #[arg(long, default_value_t = 0.99)]
    pub theta: f64,
    /// Random seed; client i uses a stream derived from (seed, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// GETs per pipelined batch (misses are then SET in one pipelined batch).
    #[arg(long, default_value_t = 32)]
    pub pipeline: usize,
    /// FLUSHALL before starting.
    #[arg(long)]
    pub flush: bool,
}

#[derive(Args, Debug)]
struct GenArgs {
    /// Number of SET commands.
    #[arg(long)]
    count: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// First key number.
    #[arg(long, default_value_t = 0)]
    start: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Zipf(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            let report = rt.block_on(workload::run(args))?;
            eprintln!(
                "gets={} hits={} misses={} sets={} hit_ratio={:.4} elapsed={:.2}s ops/s={:.0}",
                report.gets,
                report.hits,
                report.gets - report.hits,
                report.sets,
                report.hit_ratio(),
                report.elapsed_s,
                report.ops_per_sec()
            );
            println!(
                "RESULT hit_ratio={:.6} gets={} hits={} sets={} elapsed_s={:.3} ops_per_sec={:.0}",
                report.hit_ratio(),
                report.gets,
                report.hits,
                report.sets,
                report.elapsed_s,
                report.ops_per_sec()
            );
            Ok(())
        }
        Command::GenSets(args) => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            write_sets(&mut out, args.start, args.count, args.value_size)?;
            out.flush().context("flush stdout")?;
            Ok(())
        }
    }
}

/// The key for key number `id`: `key:%010d` (14 bytes).
pub fn key_name(id: u64) -> String {
    format!("key:{id:010}")
}

/// A deterministic value of `len` letters. Letters (not digits), so that
/// redis cannot store it as an integer-encoded object.
pub fn value_for(id: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = id;
    for _ in 0..len {
        v.push(b'a' + (x % 26) as u8);
        x = x / 26 + 7;
    }
    v
}

fn write_sets(
    out: &mut impl Write,
    start: u64,
    count: u64,
    value_size: usize,
) -> anyhow::Result<()> {
    for id in start..start + count {
        let key = key_name(id);
        let value = value_for(id, value_size);
        write!(
            out,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
            key.len(),
            value.len()
        )
        .context("write")?;
        out.write_all(&value).context("write")?;
        out.write_all(b"\r\n").context("write")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_sets() {
        let mut buf = Vec::new();
        write_sets(&mut buf, 5, 1, 4).expect("write");
        assert_eq!(
            buf,
            b"*3\r\n$3\r\nSET\r\n$14\r\nkey:0000000005\r\n$4\r\nfhhh\r\n"
        );
    }

    #[test]
    fn values_are_letters() {
        for id in [0, 1, 25, 26, 1_000_000, u64::MAX] {
            let v = value_for(id, 16);
            assert_eq!(v.len(), 16);
            assert!(v.iter().all(|b| b.is_ascii_lowercase()));
        }
    }
}
