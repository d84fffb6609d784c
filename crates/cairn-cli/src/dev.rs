//! `cairn dev`: a local cluster in one command. Starts N `cairn server`
//! processes (this same binary) on consecutive ports, prints how to
//! connect, and stops them all on Ctrl-C / SIGTERM (or when one dies).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct DevArgs {
    /// Number of nodes (1, 3 or 5 make sense for Raft).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// RESP port of the first node; node i listens on PORT+i-1 and its
    /// peer port on that + 10000.
    #[arg(long, default_value_t = 7001)]
    port: u16,
    /// Data directory (node-N subdirectories). Default: a temporary
    /// directory removed on exit.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// durable (default) or volatile.
    #[arg(long, default_value = "durable")]
    durability: String,
    /// Raft data groups.
    #[arg(long, default_value_t = 64)]
    groups: u16,
    /// Replicas per group: with more nodes than this, each group lives on
    /// this many of them (docs/design/sharding.md); `all` for every node.
    #[arg(long, default_value = "3")]
    replication_factor: String,
    /// Worker threads per node (0 = the server's default).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Raft threads per node (0 = the server's default, 2). One here:
    /// every node of `cairn dev` shares this machine's cores, and on 2
    /// cores one thread per node gave 5-7% more durable SETs per second
    /// with 7% less CPU per write than two (docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 1)]
    raft_threads: usize,
    /// Raft loops per node.
    #[arg(long, default_value_t = 1)]
    raft_loops: usize,
    /// Scheduling policy of the nodes' threads (normal or batch). Batch
    /// here: every node shares this machine's cores, and on 2 cores
    /// SCHED_BATCH gave 8-17% more SETs per second with a lower p99
    /// (docs/BENCHMARKS.md, session 20).
    #[arg(long, default_value = "batch")]
    sched_policy: String,
    /// Address the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// TLS: certificates from `cairn cert dev` in DIR/certs (made once),
    /// a TLS port per node at its RESP port + 100 (client certificates
    /// required), and mutual TLS between the nodes.
    #[arg(long)]
    tls: bool,
    /// Log filter passed to the nodes.
    #[arg(long, env = "CAIRN_LOG", default_value = "warn")]
    log: String,
}

pub fn run(a: DevArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    anyhow::ensure!((1..=9).contains(&a.nodes), "--nodes must be 1..9");
    anyhow::ensure!(
        (a.port as u32) + (a.nodes as u32) + 10000 <= 65535,
        "--port too high for {} nodes",
        a.nodes
    );
    // The nodes would refuse it too, but only after the banner was printed.
    anyhow::ensure!(
        a.groups.is_power_of_two() && a.groups <= 16384,
        "--groups must be a power of two up to 16384"
    );
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = std::env::temp_dir().join(format!("cairn-dev-{}", std::process::id()));
            (d, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let peers: Vec<String> = (0..a.nodes)
        .map(|i| format!("{}={}:{}", i + 1, a.bind, a.port + i))
        .collect();
    let peers = peers.join(",");
    let secret = dev_secret(&dir)?;
    let certs = dir.join("certs");
    if a.tls && !certs.join("node.key").exists() {
        let mut hosts = Vec::new();
        if a.bind != "127.0.0.1" {
            hosts.push(a.bind.clone());
        }
        cairn_server::tls::write_dev_certs(&certs, &hosts).map_err(|e| anyhow::anyhow!(e))?;
    }
    anyhow::ensure!(
        !a.tls || (a.port as u32) + (a.nodes as u32) + 100 <= 65535,
        "--port too high for TLS ports"
    );
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = rt.block_on(async {
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let mut children: Vec<Child> = Vec::new();
    for i in 0..a.nodes {
        let node_dir = dir.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&node_dir)?;
        let child = Command::new(&exe)
            .arg("server")
            .args(["--bind", &a.bind])
            .args(["--port", &(a.port + i).to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--cluster-peers", &peers])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .args(["--cluster-groups", &a.groups.to_string()])
            .args(["--replication-factor", &a.replication_factor])
            .args(["--durability", &a.durability])
            .args(["--dir", &node_dir.to_string_lossy()])
            .arg("--audit-log")
            .arg(node_dir.join("audit.log"))
            .args(["--threads", &a.threads.to_string()])
            .args(["--raft-threads", &a.raft_threads.to_string()])
            .args(["--raft-loops", &a.raft_loops.to_string()])
            .args(["--sched-policy", &a.sched_policy])
            .args(["--log", &a.log])
            .args(if a.tls {
                let f = |n: &str| certs.join(n).to_string_lossy().into_owned();
                vec![
                    "--tls-port".to_string(),
                    (a.port + i + 100).to_string(),
                    "--tls-cert-file".into(),
                    f("node.crt"),
                    "--tls-key-file".into(),
                    f("node.key"),
                    "--tls-ca-cert-file".into(),
                    f("ca.crt"),
                ]
            } else {
                Vec::new()
            })
            .spawn()
            .with_context(|| format!("starting node {}", i + 1));
        match child {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    println!(
        "cairn dev: {} nodes, {} groups × {} replicas, {} log, data in {}{}",
        a.nodes,
        a.groups,
        a.replication_factor,
        a.durability,
        dir.display(),
        if temporary { " (removed on exit)" } else { "" }
    );
    for i in 0..a.nodes {
        println!(
            "  node {}: redis-cli -p {}    (peer port {})",
            i + 1,
            a.port + i,
            a.port + i + 10000
        );
    }
    println!("  cluster-aware clients: redis-cli -c -p {}", a.port);
    if a.tls {
        let f = |n: &str| certs.join(n).display().to_string();
        println!(
            "  TLS (mutual between nodes too): redis-cli -p {} --tls --cacert {} --cert {} --key {}",
            a.port + 100,
            f("ca.crt"),
            f("client.crt"),
            f("client.key")
        );
    }
    println!("Ctrl-C stops every node.");
    let died = rt.block_on(async {
        loop {
            tokio::select! {
                _ = int.recv() => return None,
                _ = term.recv() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            for (i, c) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Some((i + 1, status));
                }
            }
        }
    });
    if let Some((n, status)) = died {
        eprintln!("cairn dev: node {n} exited ({status}); stopping the others");
    }
    stop_all(&mut children);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("cairn dev: stopped");
    Ok(())
}

/// SIGTERM to every node, up to 10 s to finish, then SIGKILL.
fn stop_all(children: &mut [Child]) {
    for c in children.iter() {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The dev cluster's secret: `DIR/cluster-secret` (32 random bytes, hex),
/// made on first use and kept, so a restarted dev cluster in the same
/// directory authenticates with the same one.
fn dev_secret(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("cluster-secret");
    if path.exists() {
        return Ok(path);
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("reading /dev/urandom for the cluster secret")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{hex}")?;
    Ok(path)
}
