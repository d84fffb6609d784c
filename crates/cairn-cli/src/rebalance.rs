//! `cairn cluster rebalance`: pause, resume or throttle the movement of
//! replicas towards the stored placement, and show where it stands
//! (moves left, snapshots and bytes copied by every node, the last plan
//! against the minimum, an ETA). The controls are cluster-wide settings
//! (`CLUSTER SETTING rebalance-paused|rebalance-throttle|rebalance-max-moves`,
//! kept by the meta group), so any node takes them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::status::{ask_node, bar, fields, next_poll, num};

#[derive(Args)]
pub struct RebalanceArgs {
    /// The node to ask.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, short = 'p', default_value_t = 6379)]
    port: u16,
    /// AUTH password, if the nodes require one (default user).
    #[arg(long, env = "CAIRN_PASSWORD")]
    password: Option<String>,
    /// Hold back new moves (moves under way finish).
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Let moves go on.
    #[arg(long)]
    resume: bool,
    /// Bytes per second of snapshots each node may send for moves, in
    /// Redis memory units (`20mb`); 0 for no limit.
    #[arg(long, value_name = "RATE")]
    throttle: Option<String>,
    /// Groups moving at once (1-64).
    #[arg(long, value_name = "N")]
    max_moves: Option<u16>,
    /// Show where the rebalance stands (the default when nothing is set).
    #[arg(long)]
    status: bool,
    /// Poll until no move is left (or --timeout), with a bar.
    #[arg(long)]
    watch: bool,
    /// Seconds between polls with --watch.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Give up watching after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// The RESP addresses in a CLUSTER NODES reply (`id host:port@cport ...`).
fn node_addrs(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|a| a.split('@').next())
        .filter_map(|a| {
            let (h, p) = a.rsplit_once(':')?;
            Some((h.to_string(), p.parse().ok()?))
        })
        .collect()
}

/// `20.0 MiB`.
fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// One look at the cluster: the asked node's INFO, and the copy counters
/// summed over every node that answers.
struct Look {
    here: BTreeMap<String, String>,
    snapshots: u64,
    bytes: u64,
    deferred: u64,
    unreachable: Vec<String>,
    /// The newest plan any node reports: (epoch, copies, minimum).
    plan: Option<(u64, u64, u64)>,
}

fn look(a: &RebalanceArgs) -> anyhow::Result<Look> {
    let pw = a.password.as_deref();
    let here = fields(&ask_node(&a.host, a.port, pw, &["INFO", "cluster"])?);
    num(&here, "cairn_rebalance_adds_left")?;
    let nodes = ask_node(&a.host, a.port, pw, &["CLUSTER", "NODES"])?;
    let mut l = Look {
        here,
        snapshots: 0,
        bytes: 0,
        deferred: 0,
        unreachable: Vec::new(),
        plan: None,
    };
    for (h, p) in node_addrs(&nodes) {
        let f = match ask_node(&h, p, pw, &["INFO", "cluster"]) {
            Ok(info) => fields(&info),
            Err(_) => {
                l.unreachable.push(format!("{h}:{p}"));
                continue;
            }
        };
        let n = |k: &str| num(&f, k).unwrap_or(0);
        l.snapshots += n("cairn_rebalance_snapshots_sent");
        l.bytes += n("cairn_rebalance_bytes_sent");
        l.deferred += n("cairn_rebalance_snapshots_deferred");
        let plan = (
            n("cairn_rebalance_plan_epoch"),
            n("cairn_rebalance_plan_copies"),
            n("cairn_rebalance_plan_minimum"),
        );
        if plan.0 > 0 && l.plan.is_none_or(|q| q.0 < plan.0) {
            l.plan = Some(plan);
        }
    }
    Ok(l)
}

pub fn run(a: RebalanceArgs) -> anyhow::Result<()> {
    let pw = a.password.as_deref();
    let mut set = Vec::new();
    if a.pause {
        set.push(("rebalance-paused", "yes".to_string()));
    }
    if a.resume {
        set.push(("rebalance-paused", "no".to_string()));
    }
    if let Some(t) = &a.throttle {
        set.push(("rebalance-throttle", t.clone()));
    }
    if let Some(n) = a.max_moves {
        set.push(("rebalance-max-moves", n.to_string()));
    }
    for (k, v) in &set {
        ask_node(&a.host, a.port, pw, &["CLUSTER", "SETTING", k, v])
            .with_context(|| format!("setting {k} to {v}"))?;
        println!("{k} set to {v} (cluster-wide)");
    }
    if !set.is_empty() && !a.status && !a.watch {
        return Ok(());
    }
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let l = look(&a)?;
        let f = &l.here;
        let n = |k: &str| num(f, k).unwrap_or(0);
        let (adds, removes) = (
            n("cairn_rebalance_adds_left"),
            n("cairn_rebalance_removes_left"),
        );
        let (placed, total) = (
            n("cairn_placement_groups_placed"),
            n("cairn_placement_groups_total"),
        );
        let throttle = n("cairn_rebalance_throttle");
        println!(
            "rebalance {}: up to {} groups at a time, {}",
            if n("cairn_rebalance_paused") == 1 {
                "PAUSED"
            } else {
                "running"
            },
            n("cairn_rebalance_max_moves"),
            if throttle == 0 {
                "no throttle".to_string()
            } else {
                format!("throttled to {}/s per node", human(throttle as f64))
            }
        );
        println!(
            "placement {} {placed}/{total} groups placed; left: {adds} replicas to copy, {removes} to remove",
            bar(placed, total, 30)
        );
        println!(
            "copied so far: {} snapshots, {} (all nodes since they started){}{}",
            l.snapshots,
            human(l.bytes as f64),
            if l.deferred > 0 {
                format!(", {} put off by the throttle", l.deferred)
            } else {
                String::new()
            },
            if l.unreachable.is_empty() {
                String::new()
            } else {
                format!("; not answering: {}", l.unreachable.join(" "))
            }
        );
        if let Some((epoch, copies, minimum)) = l.plan {
            println!(
                "last placement (meta epoch {epoch}): {copies} replicas to copy, minimum {minimum}{}",
                if minimum > 0 {
                    format!(" ({:.2}x)", copies as f64 / minimum as f64)
                } else {
                    String::new()
                }
            );
        }
        // ETA: from the rate copies went at while watching, else from the
        // throttle and the average snapshot so far.
        let eta = match first {
            Some((t0, a0)) if adds < a0 => {
                let rate = (a0 - adds) as f64 / t0.elapsed().as_secs_f64();
                Some(adds as f64 / rate)
            }
            _ if throttle > 0 && l.snapshots > 0 && adds > 0 => {
                Some(adds as f64 * (l.bytes as f64 / l.snapshots as f64) / throttle as f64)
            }
            _ => None,
        };
        let done = adds == 0 && removes == 0 && n("cairn_placement_settled") == 1;
        if done {
            println!("settled: nothing left to move");
        } else if let Some(s) = eta {
            println!("ETA {s:.0} s");
        }
        if first.is_none() {
            first = Some((Instant::now(), adds));
        }
        if !a.watch || done {
            return Ok(());
        }
        next_poll(
            started,
            a.timeout,
            a.interval,
            "the rebalance did not finish",
        )?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_come_from_cluster_nodes() {
        let nodes = "07c3 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n\
                     a1b2 10.0.0.2:7002@17002 master - 0 0 2 connected 5461-10922\n\
                     garbage\n";
        assert_eq!(
            node_addrs(nodes),
            vec![
                ("127.0.0.1".to_string(), 7001),
                ("10.0.0.2".to_string(), 7002)
            ]
        );
    }

    #[test]
    fn byte_counts_read_as_humans_do() {
        assert_eq!(human(512.0), "512 B");
        assert_eq!(human(20.0 * 1024.0 * 1024.0), "20.0 MiB");
        assert_eq!(human(1536.0), "1.5 KiB");
    }
}
