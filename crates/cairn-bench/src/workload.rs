//! The read-through Zipf workload.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::Barrier;

use crate::zipf::{Rng, Zipf};
use crate::{key_name, ZipfArgs};

#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub elapsed_s: f64,
}

impl Report {
    pub fn hit_ratio(&self) -> f64 {
        if self.gets == 0 {
            0.0
        } else {
            self.hits as f64 / self.gets as f64
        }
    }

    pub fn ops_per_sec(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.gets as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    gets: u64,
    hits: u64,
    sets: u64,
}

/// Splits `total` into `parts` near-equal shares.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

pub async fn run(args: ZipfArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.pipeline >= 1, "--pipeline must be at least 1");
    let zipf = Zipf::new(args.keys, args.theta)?;
    let url = format!("redis://{}:{}/", args.host, args.port);
    let client = redis::Client::open(url.as_str()).with_context(|| format!("bad address {url}"))?;

    if args.flush {
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .context("connect")?;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut con)
            .await
            .context("FLUSHALL")?;
    }

    let value: Arc<[u8]> = vec![b'v'; args.value_size].into();
    // Everyone finishes warming up, then the clock starts; everyone finishes, then it stops.
    let start_line = Arc::new(Barrier::new(args.clients + 1));
    let finish_line = Arc::new(Barrier::new(args.clients + 1));
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let con = client
            .get_multiplexed_async_connection()
            .await
            .context("connect")?;
        let seed = args.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let job = Job {
            con,
            zipf: zipf.clone(),
            rng: Rng::new(seed),
            pipeline: args.pipeline,
            value: Arc::clone(&value),
        };
        let warmup = share(args.warmup, args.clients, i);
        let ops = share(args.ops, args.clients, i);
        let (start_line, finish_line) = (Arc::clone(&start_line), Arc::clone(&finish_line));
        tasks.push(tokio::spawn(async move {
            let mut job = job;
            let warm = job.run(warmup).await;
            start_line.wait().await;
            let measured = match warm {
                Ok(_) => job.run(ops).await,
                Err(e) => Err(e),
            };
            finish_line.wait().await;
            measured
        }));
    }
    start_line.wait().await;
    let t0 = Instant::now();
    finish_line.wait().await;
    let elapsed_s = t0.elapsed().as_secs_f64();

    let mut report = Report {
        elapsed_s,
        ..Report::default()
    };
    for t in tasks {
        let c = t.await.context("client task panicked")??;
        report.gets += c.gets;
        report.hits += c.hits;
        report.sets += c.sets;
    }
    Ok(report)
}

struct Job {
    con: redis::aio::MultiplexedConnection,
    zipf: Zipf,
    rng: Rng,
    pipeline: usize,
    value: Arc<[u8]>,
}

impl Job {
    async fn run(&mut self, ops: u64) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
        let mut keys = Vec::with_capacity(self.pipeline);
        let mut left = ops;
        while left > 0 {
            let batch = left.min(self.pipeline as u64);
            left -= batch;
            keys.clear();
            let mut gets = redis::pipe();
            for _ in 0..batch {
                let key = key_name(self.zipf.sample(&mut self.rng) - 1);
                gets.cmd("GET").arg(&key);
                keys.push(key);
            }
            let replies: Vec<Option<Vec<u8>>> = gets
                .query_async(&mut self.con)
                .await
                .context("pipelined GET")?;
            anyhow::ensure!(
                replies.len() == keys.len(),
                "expected {} GET replies, got {}",
                keys.len(),
                replies.len()
            );
            counts.gets += batch;
            let mut sets = redis::pipe();
            let mut misses = 0u64;
            for (key, reply) in keys.iter().zip(&replies) {
                if reply.is_some() {
                    counts.hits += 1;
                } else {
                    sets.cmd("SET").arg(key).arg(&*self.value).ignore();
                    misses += 1;
                }
            }
            if misses > 0 {
                sets.query_async::<()>(&mut self.con)
                    .await
                    .context("pipelined SET")?;
                counts.sets += misses;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10, 3), (0, 4), (7, 7), (1_000_001, 8)] {
            let sum: u64 = (0..parts).map(|i| share(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
    }
}
