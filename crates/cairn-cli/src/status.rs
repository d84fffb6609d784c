//! `cairn cluster status`: a node's view of the cluster (groups, leaders,
//! where the placement stands) from its `INFO cluster`, once or, with
//! `--watch`, until the placement settles, with a progress bar and an ETA
//! from the rate groups got placed at.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct StatusArgs {
    /// The node to ask.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, short = 'p', default_value_t = 6379)]
    port: u16,
    /// AUTH password, if the node requires one (default user).
    #[arg(long, env = "CAIRN_PASSWORD")]
    password: Option<String>,
    /// Poll until the placement settles (or --timeout), with a bar.
    #[arg(long)]
    watch: bool,
    /// Seconds between polls with --watch.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Give up watching after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// One RESP request on a fresh connection; the reply's text (bulk or
/// verbatim string), or the error.
fn ask(a: &StatusArgs, argv: &[&str]) -> anyhow::Result<String> {
    ask_node(&a.host, a.port, a.password.as_deref(), argv)
}

/// [`ask`] for any node.
pub(crate) fn ask_node(
    host: &str,
    port: u16,
    password: Option<&str>,
    argv: &[&str],
) -> anyhow::Result<String> {
    let mut s =
        TcpStream::connect((host, port)).with_context(|| format!("connecting to {host}:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut send = |argv: &[&str]| -> anyhow::Result<String> {
        let mut req = format!("*{}\r\n", argv.len());
        for x in argv {
            req.push_str(&format!("${}\r\n{x}\r\n", x.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'$') | Some(b'=') => {
                let n: usize = line[1..].parse().context("bad reply length")?;
                anyhow::ensure!(n <= 1 << 20, "reply too long");
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            Some(b'+') => Ok(line[1..].to_string()),
            Some(b'-') => anyhow::bail!("{}", &line[1..]),
            _ => anyhow::bail!("unexpected reply {line:?}"),
        }
    };
    if let Some(p) = password {
        send(&["AUTH", p])?;
    }
    send(argv)
}

/// The `key:value` lines of an INFO reply.
pub(crate) fn fields(info: &str) -> std::collections::BTreeMap<String, String> {
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub(crate) fn num(f: &std::collections::BTreeMap<String, String>, k: &str) -> anyhow::Result<u64> {
    f.get(k)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("INFO cluster has no {k} (not a cluster node, or an older one)"))
}

/// `[#####.....]`, `width` wide.
pub(crate) fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = (done as usize * width)
        .checked_div(total as usize)
        .unwrap_or(width);
    format!(
        "[{}{}]",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width))
    )
}

pub fn run(a: StatusArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let f = fields(&ask(&a, &["INFO", "cluster"])?);
        let (groups, hosted) = (num(&f, "cairn_groups")?, num(&f, "cairn_groups_hosted")?);
        let (placed, total) = (
            num(&f, "cairn_placement_groups_placed")?,
            num(&f, "cairn_placement_groups_total")?,
        );
        let settled = num(&f, "cairn_placement_settled")? == 1;
        let rf = f
            .get("cairn_replication_factor")
            .cloned()
            .unwrap_or_default();
        println!(
            "node {}: {groups} groups, {hosted} held here, {} led here, {} without a leader; replication factor {rf}",
            f.get("cairn_node_id").map_or("?", String::as_str),
            f.get("cairn_groups_led").map_or("?", String::as_str),
            f.get("cairn_groups_without_leader").map_or("?", String::as_str),
        );
        let eta = match first {
            Some((t0, p0)) if placed > p0 => {
                let rate = (placed - p0) as f64 / t0.elapsed().as_secs_f64();
                format!(", ETA {:.0} s", (total - placed) as f64 / rate)
            }
            _ => String::new(),
        };
        println!(
            "placement {} {placed}/{total} groups placed{}",
            bar(placed, total, 30),
            if settled {
                ", settled".to_string()
            } else {
                eta
            }
        );
        if f.get("cairn_rebalance_paused").is_some_and(|v| v == "1") && !settled {
            println!("rebalance PAUSED: nothing moves until `cairn cluster rebalance --resume`");
        }
        if first.is_none() {
            first = Some((Instant::now(), placed));
        }
        if !a.watch || settled {
            return Ok(());
        }
        next_poll(
            started,
            a.timeout,
            a.interval,
            "the placement did not settle",
        )?;
    }
}

/// Between two polls of a `--watch`: fails once `timeout` seconds have
/// gone by since `started` (saying `what`), else sleeps `interval`.
pub(crate) fn next_poll(
    started: Instant,
    timeout: u64,
    interval: f64,
    what: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        started.elapsed() < Duration::from_secs(timeout),
        "{what} within {timeout} s"
    );
    std::thread::sleep(Duration::from_secs_f64(interval.clamp(0.1, 60.0)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 64, 8), "[........]");
        assert_eq!(bar(32, 64, 8), "[####....]");
        assert_eq!(bar(64, 64, 8), "[########]");
        assert_eq!(bar(0, 0, 4), "[####]");
    }

    #[test]
    fn info_fields_parse() {
        let f = fields("# Cluster\r\ncairn_groups:64\r\ncairn_replication_factor:all\r\n");
        assert_eq!(num(&f, "cairn_groups").unwrap(), 64);
        assert_eq!(f["cairn_replication_factor"], "all");
        assert!(num(&f, "cairn_groups_hosted").is_err());
    }
}
