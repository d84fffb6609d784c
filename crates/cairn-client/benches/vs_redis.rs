//! cairn-client against the `redis` crate's cluster client, on the same
//! cluster in the same run: throughput and latency of SET/GET at a few
//! concurrency levels. Needs a running cluster:
//!
//! ```sh
//! cargo run --release -p cairn-cli -- dev --nodes 3 --port 7001
//! cargo bench -p cairn-client --bench vs_redis             # or:
//! CAIRN_SEEDS=127.0.0.1:7301 BENCH_SECS=5 BENCH_SET_PCT=0 cargo bench -p cairn-client --bench vs_redis
//! ```
//!
//! Both clients keep all requests of one task in flight one at a time;
//! concurrency comes from tasks, which each client pipelines over its
//! own connections. The client's own CPU time is printed beside each
//! figure: on a small machine the cluster shares the cores.

use std::time::{Duration, Instant};

use cairn_client::{Client, ClientConfig};
use redis::AsyncCommands;

const KEYS: usize = 10_000;

fn cpu_secs() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    ops: usize,
    lat_us: Vec<u32>,
    secs: f64,
    cpu: f64,
}

impl Run {
    fn report(&mut self, name: &str) -> f64 {
        self.lat_us.sort_unstable();
        let pct = |p: f64| {
            self.lat_us
                .get(
                    ((self.lat_us.len() as f64 * p) as usize)
                        .min(self.lat_us.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(0)
        };
        let rate = self.ops as f64 / self.secs;
        println!(
            "  {name:<14} {rate:>10.0} ops/s   p50 {:>6} µs   p99 {:>6} µs   client CPU {:>4.0}%",
            pct(0.5),
            pct(0.99),
            100.0 * self.cpu / self.secs
        );
        rate
    }
}

/// Runs `tasks` loops of SET (`set_pct`%) and GET for `secs` through `op`.
async fn drive<F, Fut>(tasks: usize, secs: f64, set_pct: usize, op: F) -> Run
where
    F: Fn(String, bool) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let op = op.clone();
        set.spawn(async move {
            // Bounded: at most 2M samples per task.
            let mut lat = Vec::with_capacity(1 << 16);
            let mut i = t;
            while Instant::now() < end && lat.len() < 2_000_000 {
                let key = format!("bench:{}", i % KEYS);
                let t0 = Instant::now();
                assert!(op(key, i % 100 < set_pct).await, "request failed");
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                i += tasks;
            }
            lat
        });
    }
    let mut lat_us = Vec::new();
    while let Some(r) = set.join_next().await {
        lat_us.extend(r.expect("task"));
    }
    Run {
        ops: lat_us.len(),
        lat_us,
        secs: start.elapsed().as_secs_f64(),
        cpu: cpu_secs() - cpu0,
    }
}

fn main() {
    let seeds: Vec<String> = std::env::var("CAIRN_SEEDS")
        .unwrap_or_else(|_| "127.0.0.1:7001".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let set_pct: usize = std::env::var("BENCH_SET_PCT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cairn = Client::connect(ClientConfig::new(seeds.clone())).await.expect("cairn-client connect");
        let urls: Vec<String> = seeds.iter().map(|s| format!("redis://{s}")).collect();
        let redis = redis::cluster::ClusterClient::new(urls)
            .expect("redis client")
            .get_async_connection()
            .await
            .expect("redis cluster connect");
        for i in 0..KEYS {
            cairn.set(format!("bench:{i}"), "0123456789abcdef", None).await.expect("preload");
        }
        println!(
            "SET {set_pct}% / GET {}%, 16-byte values, {KEYS} keys, {secs} s per run, {threads} client threads",
            100 - set_pct.min(100)
        );
        for tasks in [1usize, 16, 64] {
            println!("{tasks} concurrent requests:");
            let c = cairn.clone();
            let run_cairn = || {
                drive(tasks, secs, set_pct, move |k, set| {
                    let c = c.clone();
                    async move {
                        if set {
                            c.set(k, "0123456789abcdef", None).await.is_ok()
                        } else {
                            c.get::<Vec<u8>>(k).await.is_ok()
                        }
                    }
                })
            };
            let r = redis.clone();
            let run_redis = || {
                drive(tasks, secs, set_pct, move |k, set| {
                    let mut r = r.clone();
                    async move {
                        if set {
                            r.set::<_, _, ()>(k, "0123456789abcdef").await.is_ok()
                        } else {
                            r.get::<_, Option<Vec<u8>>>(k).await.is_ok()
                        }
                    }
                })
            };
            // Which goes first alternates, so neither always meets a
            // warmer (or more loaded) cluster.
            let (mut a, mut b) = if tasks % 2 == 0 {
                let b = run_redis().await;
                (run_cairn().await, b)
            } else {
                let a = run_cairn().await;
                (a, run_redis().await)
            };
            let ra = a.report("cairn-client");
            let rb = b.report("redis 1.8");
            println!("  ratio cairn-client / redis: {:.2}", ra / rb);
        }
    });
}
