//! `cairn`: the server and its tools.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod dev;
mod rebalance;
mod status;

// jemalloc instead of glibc's malloc: see docs/design/allocator.md.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "A distributed cache and coordination service that speaks Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a cairn node (standalone unless --cluster-peers is given).
    Server(Box<ServerArgs>),
    /// Run a local cluster of N nodes (one process each) until Ctrl-C.
    Dev(dev::DevArgs),
    /// Certificates for trying TLS out.
    #[command(subcommand)]
    Cert(CertCmd),
    /// The audit log: check its hash chain, show its end.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// A running cluster, as one of its nodes sees it.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Groups, leaders and the placement's progress (a bar and an ETA
    /// with --watch), from the node's INFO cluster.
    Status(status::StatusArgs),
    /// Pause, resume or throttle replica moves; where they stand (moves
    /// left, bytes copied, the plan against the minimum, an ETA).
    Rebalance(rebalance::RebalanceArgs),
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Checks every record's hash and the chain; exit status 1 and the
    /// first bad line when it is broken (an edited, inserted or removed
    /// record).
    Verify { file: PathBuf },
    /// Prints the last records.
    Tail {
        file: PathBuf,
        /// How many.
        #[arg(short = 'n', default_value_t = 10)]
        lines: usize,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    /// Writes a new local CA and, signed by it, a node certificate (for
    /// localhost, 127.0.0.1, ::1 and every --host; usable by peers as a
    /// client certificate too) and a client certificate: ca.crt, ca.key,
    /// node.crt, node.key, client.crt, client.key. For development only:
    /// the CA's key is written beside them.
    Dev(CertDevArgs),
}

#[derive(Args)]
struct CertDevArgs {
    /// Directory to write the files to (created if missing).
    #[arg(long, default_value = "cairn-certs")]
    dir: PathBuf,
    /// Another name or IP address the node certificate is valid for
    /// (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
}

#[derive(Args)]
struct ServerArgs {
    /// TOML config file; flags given here override it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// RESP port (0 = any free port).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Memory limit for the keyspace, e.g. 64mb (0 = unlimited).
    #[arg(long)]
    maxmemory: Option<String>,
    /// noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru,
    /// volatile-lfu, volatile-random or volatile-ttl.
    #[arg(long)]
    maxmemory_policy: Option<String>,
    #[arg(long)]
    maxmemory_samples: Option<u32>,
    #[arg(long)]
    maxclients: Option<usize>,
    /// Worker threads (0 = one per CPU but one, at least 1).
    #[arg(long)]
    threads: Option<usize>,
    /// Keyspace shards, a power of two (0 = 16 per thread).
    #[arg(long)]
    shards: Option<usize>,
    /// Raft threads in cluster mode (0 = the default, 2).
    #[arg(long)]
    raft_threads: Option<usize>,
    /// Raft loops (threads stepping the groups) in cluster mode (default 1).
    #[arg(long)]
    raft_loops: Option<usize>,
    /// OS scheduling policy of the server's threads: normal (default) or
    /// batch (Linux SCHED_BATCH; for nodes sharing cores, as `cairn dev`).
    #[arg(long)]
    sched_policy: Option<String>,
    /// Close clients idle this many seconds (0 = never).
    #[arg(long)]
    timeout: Option<u64>,
    #[arg(long)]
    proto_max_bulk_len: Option<String>,
    #[arg(long)]
    client_query_buffer_limit: Option<String>,
    /// This node's id in the cluster (with --cluster-peers).
    #[arg(long)]
    node_id: Option<u64>,
    /// Peer (Raft) port; default RESP port + 10000.
    #[arg(long)]
    peer_port: Option<u16>,
    /// The cluster's members: ID=HOST:PORT[@PEERPORT],... (same list on
    /// every node). Without it the node is standalone.
    #[arg(long)]
    cluster_peers: Option<String>,
    /// Raft data groups (power of two; default 64).
    #[arg(long)]
    cluster_groups: Option<u16>,
    /// Replicas per data group of a new cluster: all (default) or a count.
    #[arg(long)]
    replication_factor: Option<String>,
    /// Data directory for the Raft log and snapshots.
    #[arg(long)]
    dir: Option<String>,
    /// durable (fsync before acknowledging; default) or volatile.
    #[arg(long)]
    durability: Option<String>,
    #[arg(long)]
    election_timeout_min: Option<u64>,
    #[arg(long)]
    election_timeout_max: Option<u64>,
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Connections one user may have logged in at once (0 = no limit).
    #[arg(long)]
    maxclients_per_user: Option<usize>,
    /// The default user's password (as Redis' requirepass).
    #[arg(long)]
    requirepass: Option<String>,
    /// ACL file: `user <name> <rule>...` lines (ACL LOAD/SAVE).
    #[arg(long)]
    aclfile: Option<String>,
    /// TEST ONLY: serve reads without the linearizability check.
    #[arg(long, hide = true)]
    unsafe_stale_reads: bool,
    /// TLS port beside the plain one (Redis' tls-port; 0 picks a free port).
    #[arg(long)]
    tls_port: Option<u16>,
    #[arg(long)]
    tls_cert_file: Option<String>,
    #[arg(long)]
    tls_key_file: Option<String>,
    #[arg(long)]
    tls_ca_cert_file: Option<String>,
    /// yes (client certificate required, the default), optional or no.
    #[arg(long)]
    tls_auth_clients: Option<String>,
    /// CN: log a client in as the ACL user its certificate's Common Name
    /// names; off (default).
    #[arg(long)]
    tls_auth_clients_user: Option<String>,
    /// File with the cluster secret peers prove to each other (the same
    /// on every node; at least 16 bytes).
    #[arg(long)]
    cluster_secret_file: Option<String>,
    /// Allow a cluster on non-loopback addresses without a cluster secret.
    #[arg(long)]
    insecure: bool,
    /// Audit log file (JSON lines in a hash chain; see `cairn audit`).
    #[arg(long)]
    audit_log: Option<String>,
    /// Whether audit records name keys: yes (default) or no.
    #[arg(long)]
    audit_log_keys: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Log filter (tracing env-filter syntax), e.g. info or cairn=debug.
    #[arg(long, env = "CAIRN_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Server(args) => server(*args),
        Cmd::Dev(args) => dev::run(args),
        Cmd::Cluster(ClusterCmd::Status(args)) => status::run(args),
        Cmd::Cluster(ClusterCmd::Rebalance(args)) => rebalance::run(args),
        Cmd::Audit(AuditCmd::Verify { file }) => match cairn_server::audit::verify(&file) {
            Ok(v) => {
                println!(
                    "ok: records {}..{}{}, last hash {}{}",
                    v.first,
                    v.records,
                    if v.first > 1 {
                        " (the file picks the cluster's chain up at its first record: earlier ones are in an older file or on other members)"
                    } else {
                        ""
                    },
                    v.last_hash,
                    if v.torn_tail {
                        " (a torn last record follows: a crash mid-write; the server cuts it at start)"
                    } else {
                        ""
                    }
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: BROKEN: {e}", file.display());
                std::process::exit(1);
            }
        },
        Cmd::Audit(AuditCmd::Tail { file, lines }) => {
            for l in cairn_server::audit::tail(&file, lines).map_err(|e| anyhow::anyhow!(e))? {
                println!("{l}");
            }
            Ok(())
        }
        Cmd::Cert(CertCmd::Dev(args)) => {
            let written = cairn_server::tls::write_dev_certs(&args.dir, &args.hosts)
                .map_err(|e| anyhow::anyhow!(e))?;
            for p in written {
                println!("{}", p.display());
            }
            Ok(())
        }
    }
}

fn init_logs(format: &str, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    // Colours only on a terminal, so log files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("unknown --log-format '{other}' (text or json)"),
    }
    Ok(())
}

fn memory(flag: &str, v: &str) -> anyhow::Result<u64> {
    cairn_server::parse_memory(v)
        .with_context(|| format!("--{flag}: invalid memory size '{v}' (e.g. 64mb, 1gb)"))
}

fn build_config(a: &ServerArgs) -> anyhow::Result<cairn_server::Config> {
    let mut c = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            cairn_server::Config::from_toml(&text)
                .with_context(|| format!("in {}", path.display()))?
        }
        None => cairn_server::Config::default(),
    };
    if let Some(v) = &a.bind {
        c.bind = v.clone();
    }
    if let Some(v) = a.port {
        c.port = v;
    }
    if let Some(v) = &a.maxmemory {
        c.maxmemory = memory("maxmemory", v)?;
    }
    if let Some(v) = &a.maxmemory_policy {
        c.maxmemory_policy = v.clone();
    }
    if let Some(v) = a.maxmemory_samples {
        c.maxmemory_samples = v;
    }
    if let Some(v) = a.maxclients {
        c.maxclients = v;
    }
    if let Some(v) = a.threads {
        c.threads = v;
    }
    if let Some(v) = a.shards {
        c.shards = v;
    }
    if let Some(v) = a.raft_threads {
        c.raft_threads = v;
    }
    if let Some(v) = a.raft_loops {
        c.raft_loops = v;
    }
    if let Some(v) = &a.sched_policy {
        c.sched_policy = v.clone();
    }
    if let Some(v) = a.timeout {
        c.timeout = v;
    }
    if let Some(v) = &a.proto_max_bulk_len {
        c.proto_max_bulk_len = memory("proto-max-bulk-len", v)?;
    }
    if let Some(v) = &a.client_query_buffer_limit {
        c.client_query_buffer_limit = memory("client-query-buffer-limit", v)?;
    }
    if let Some(v) = a.node_id {
        c.node_id = v;
    }
    if let Some(v) = a.peer_port {
        c.peer_port = v;
    }
    if let Some(v) = &a.cluster_peers {
        c.cluster_peers = v.clone();
    }
    if let Some(v) = a.cluster_groups {
        c.cluster_groups = v;
    }
    if let Some(v) = &a.replication_factor {
        c.replication_factor = v.clone();
    }
    if let Some(v) = &a.dir {
        c.dir = v.clone();
    }
    if let Some(v) = &a.durability {
        c.durability = v.clone();
    }
    if let Some(v) = a.election_timeout_min {
        c.election_timeout_min = v;
    }
    if let Some(v) = a.election_timeout_max {
        c.election_timeout_max = v;
    }
    if let Some(v) = a.heartbeat_interval {
        c.heartbeat_interval = v;
    }
    if let Some(v) = a.maxclients_per_user {
        c.maxclients_per_user = v;
    }
    if let Some(v) = &a.requirepass {
        c.requirepass = v.clone();
    }
    if let Some(v) = &a.aclfile {
        c.aclfile = v.clone();
    }
    if a.unsafe_stale_reads {
        c.unsafe_stale_reads = true;
    }
    if a.insecure {
        c.insecure = true;
    }
    match a.audit_log_keys.as_deref() {
        None => {}
        Some("yes") => c.audit_log_keys = true,
        Some("no") => c.audit_log_keys = false,
        Some(v) => anyhow::bail!("--audit-log-keys: '{v}' is not yes or no"),
    }
    if let Some(v) = a.tls_port {
        c.tls_port = Some(v);
    }
    for (to, from) in [
        (&mut c.tls_cert_file, &a.tls_cert_file),
        (&mut c.tls_key_file, &a.tls_key_file),
        (&mut c.tls_ca_cert_file, &a.tls_ca_cert_file),
        (&mut c.tls_auth_clients, &a.tls_auth_clients),
        (&mut c.tls_auth_clients_user, &a.tls_auth_clients_user),
        (&mut c.cluster_secret_file, &a.cluster_secret_file),
        (&mut c.audit_log, &a.audit_log),
    ] {
        if let Some(v) = from {
            to.clone_from(v);
        }
    }
    c.validate()?;
    Ok(c)
}

/// Sets the calling thread's scheduling policy (`normal` or `batch`);
/// threads it starts afterwards inherit it. SCHED_BATCH needs no
/// privilege. Under it a thread that wakes up waits for the running one's
/// time slice instead of preempting it: where a node's threads (RESP
/// worker, peer transport, Raft loop) and other nodes' share few cores,
/// each runs its batch to the end — measured on 2 cores with `cairn dev`:
/// 8-17% more SETs per second at lower p99 (docs/BENCHMARKS.md,
/// session 20).
fn set_sched_policy(policy: &str) -> anyhow::Result<()> {
    let p = match policy {
        "normal" => libc::SCHED_OTHER,
        "batch" => libc::SCHED_BATCH,
        other => anyhow::bail!("sched-policy must be normal or batch, not {other:?}"),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (pid 0) with a
    // valid parameter struct.
    if unsafe { libc::sched_setscheduler(0, p, &param) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(policy, error = %e, "cannot set the scheduling policy; running with the default");
    }
    Ok(())
}

fn server(args: ServerArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    init_logs(&args.log_format, &args.log)?;
    let config = build_config(&args)?;
    // Before any thread starts: threads inherit the policy.
    set_sched_policy(&config.sched_policy)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Handlers first: a signal that arrives as soon as the server reports
    // ready must already mean "shut down gracefully", not the default kill.
    let (mut int, mut term) = rt.block_on(async {
        anyhow::Ok((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    let handle = cairn_server::start(config).context("starting server")?;
    // Block until SIGINT/SIGTERM or a SHUTDOWN command.
    let mut requested = handle.shutdown_requested();
    rt.block_on(async {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = requested.wait_for(|v| *v) => {}
        }
    });
    handle.shutdown();
    handle.wait();
    tracing::info!("cairn stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `batch` puts the calling thread under SCHED_BATCH and threads it
    /// starts afterwards inherit it (what makes one call at startup cover
    /// the whole server); `normal` puts it back; anything else is refused.
    #[test]
    fn sched_policy_applies_to_the_thread_and_its_children() {
        std::thread::spawn(|| {
            let policy = || unsafe { libc::sched_getscheduler(0) };
            set_sched_policy("batch").unwrap();
            assert_eq!(policy(), libc::SCHED_BATCH);
            let child = std::thread::spawn(move || unsafe { libc::sched_getscheduler(0) });
            assert_eq!(child.join().unwrap(), libc::SCHED_BATCH);
            set_sched_policy("normal").unwrap();
            assert_eq!(policy(), libc::SCHED_OTHER);
            assert!(set_sched_policy("fifo").is_err());
        })
        .join()
        .unwrap();
    }
}
