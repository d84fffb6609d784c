//! Microbenchmark of the durable log store on this machine's disk.
//!
//! ```text
//! cargo run --release -p cairn-cluster --example logbench -- --dir /tmp/x [--secs 3] [--bytes 100]
//! ```
//!
//! Prints: the raw latency of `write` + `fdatasync` of a small append to a
//! plain file (the floor any durable log pays), then, through `LogStore`,
//! appends/s, latency and entries per fsync with 1, 8 and 64 concurrent
//! appenders (threads, each waiting for its callback before the next
//! append) spread over 64 groups. The directory is emptied first.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_cluster::log::{LogOptions, LogStore};

const GROUPS: u16 = 64;
const RAW_SAMPLES: usize = 2000;

struct Args {
    dir: PathBuf,
    secs: u64,
    bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::new(),
        secs: 3,
        bytes: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(val),
            "--secs" => a.secs = val.parse().map_err(|e| format!("--secs: {e}"))?,
            "--bytes" => a.bytes = val.parse().map_err(|e| format!("--bytes: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.dir.as_os_str().is_empty() {
        return Err("usage: logbench --dir DIR [--secs N] [--bytes N]".into());
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `write` + `fdatasync` of `bytes` at the end of a plain file.
fn raw_fdatasync(dir: &std::path::Path, bytes: usize) -> std::io::Result<()> {
    let path = dir.join("raw.bin");
    let mut f = std::fs::File::create(&path)?;
    let payload = vec![0x5au8; bytes];
    let mut lat = Vec::with_capacity(RAW_SAMPLES);
    for _ in 0..RAW_SAMPLES {
        let t = Instant::now();
        f.write_all(&payload)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort();
    println!(
        "raw write+fdatasync of {bytes} B ({RAW_SAMPLES} samples): p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        us(lat[lat.len() - 1]),
    );
    Ok(())
}

/// `appenders` threads, each appending one entry at a time to its own
/// group (thread i -> group i % 64) and waiting for the callback.
fn store_run(args: &Args, appenders: usize) -> std::io::Result<()> {
    let dir = args.dir.join(format!("store-{appenders}"));
    let (store, _) = LogStore::open(&dir, LogOptions::default())?;
    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let payload = Bytes::from(vec![0xa5u8; args.bytes]);
    let before = store.stats();
    let start = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let store = store.clone();
            let payload = payload.clone();
            std::thread::spawn(move || -> std::io::Result<Vec<Duration>> {
                let group = (t % usize::from(GROUPS)) as u16;
                // Appenders sharing a group would interleave indices; give
                // each its own stretch so every group's log stays valid.
                let mut index = (t / usize::from(GROUPS)) as u64 * (1 << 40) + 1;
                let (tx, rx) = mpsc::channel();
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let tx = tx.clone();
                    let t0 = Instant::now();
                    store.append(
                        group,
                        vec![(index, payload.clone())],
                        Box::new(move |r| {
                            let _ = tx.send(r);
                        }),
                    );
                    rx.recv().map_err(std::io::Error::other)??;
                    lat.push(t0.elapsed());
                    index += 1;
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in threads {
        lat.extend(
            t.join()
                .map_err(|_| std::io::Error::other("appender panicked"))??,
        );
    }
    let elapsed = start.elapsed();
    let after = store.stats();
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    lat.sort();
    let appends = after.appends - before.appends;
    let fsyncs = (after.fsyncs - before.fsyncs).max(1);
    println!(
        "{appenders:>3} appenders: {:>8.0} appends/s, {:>6.1} entries/fsync, latency p50 {:>6.0} us p99 {:>6.0} us ({appends} appends, {fsyncs} fsyncs, {:.1} s)",
        appends as f64 / elapsed.as_secs_f64(),
        appends as f64 / fsyncs as f64,
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        elapsed.as_secs_f64(),
    );
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let run = || -> std::io::Result<()> {
        if args.dir.exists() {
            std::fs::remove_dir_all(&args.dir)?;
        }
        std::fs::create_dir_all(&args.dir)?;
        println!(
            "logbench: dir {}, {} B entries, {GROUPS} groups, {} s per run",
            args.dir.display(),
            args.bytes,
            args.secs
        );
        raw_fdatasync(&args.dir, args.bytes)?;
        for n in [1, 8, 64] {
            store_run(&args, n)?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("logbench: {e}");
        std::process::exit(1);
    }
}
