//! cairn's network server: accepts RESP connections and runs commands
//! against the sharded keyspace.
//!
//! ```no_run
//! let handle = cairn_server::start(cairn_server::Config { port: 0, ..Default::default() }).unwrap();
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown();
//! handle.wait();
//! ```
//!
//! Threads: one acceptor hands connections round-robin to worker threads,
//! each running a single-threaded tokio runtime, so a connection's
//! commands always run on one thread and no task migrates. Shards are
//! shared by all workers (see [`db`]). The thing to keep true: every
//! buffer a peer can grow is bounded (see [`conn`]).

mod acl;
pub mod audit;
pub mod clients;
mod cluster;
mod cmd;
pub mod config;
mod conn;
pub mod db;
mod dispatch;
mod join;
mod listwait;
mod lockwait;
mod session;
mod slowlog;
mod stats;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_engine::AccessTracking;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

pub use config::{parse_memory, Config, ConfigError};

/// Fuzzing entry point for the ACL parsers (fuzz/fuzz_targets/acl.rs).
#[doc(hidden)]
pub fn fuzz_acl(data: &[u8]) {
    acl::fuzz(data)
}

/// State shared by every thread of one server.
pub(crate) struct Shared {
    pub config: Config,
    pub settings: config::Settings,
    pub db: db::Shards,
    pub clients: clients::Registry,
    pub workers: Vec<Arc<stats::WorkerStats>>,
    pub slowlog: Mutex<slowlog::SlowLog>,
    pub latency: Mutex<slowlog::Latency>,
    pub started: Instant,
    pub run_id: String,
    pub local_addr: SocketAddr,
    /// The TLS listener's address and certificates, when TLS is on.
    pub tls_addr: Option<SocketAddr>,
    pub tls: Option<Arc<tls::TlsState>>,
    /// The audit log, when `audit-log` names one.
    pub audit: Option<Arc<audit::Audit>>,
    pub shutdown: watch::Sender<bool>,
    /// Set once at start in cluster mode.
    pub cluster: std::sync::OnceLock<cairn_cluster::Cluster>,
    /// Cluster mode: one eviction at a time per group (concurrent writers
    /// would each evict for the same shortfall and empty the group).
    pub evicting: std::sync::OnceLock<Vec<tokio::sync::Mutex<()>>>,
    /// Connections waiting for a lock here (`LOCK.ACQUIRE ... WAIT`).
    pub lock_waits: lockwait::LockWaits,
    /// Connections waiting for a list to pop from (BLPOP and friends).
    pub list_waits: listwait::ListWaits,
    /// Connections blocked in a list pop now (INFO blocked_clients).
    pub list_blocked: std::sync::atomic::AtomicUsize,
    /// Cluster mode: keyed requests this node forwarded to a leader, and
    /// `-MOVED` replies it gave (INFO cluster; a cluster-aware client
    /// that routes well keeps both near zero).
    pub forwarded: std::sync::atomic::AtomicU64,
    pub moved: std::sync::atomic::AtomicU64,
    /// Users and the ACL LOG.
    pub acl: acl::Acl,
}

impl Shared {
    pub fn tracking(&self) -> AccessTracking {
        if self.settings.policy().uses_lfu() {
            AccessTracking::Lfu {
                log_factor: self.settings.lfu_log_factor.load(Relaxed),
                decay_minutes: self.settings.lfu_decay_time.load(Relaxed),
            }
        } else {
            AccessTracking::Lru
        }
    }
}

/// Wall-clock time in unix milliseconds: the timestamp commands apply at.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This process's monotonic clock in µs (lock leases; never goes back).
pub(crate) fn mono_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(unix_ms())
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The TLS port's address, when TLS is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_addr
    }

    /// Asks the server to stop: no new connections; open ones finish the
    /// commands they have read, then close.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// Waits until every thread has stopped (after [`Self::shutdown`], or
    /// a SHUTDOWN command).
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
        // What connections recorded while they closed is written (in
        // cluster mode shipped to the cluster first, so before it stops).
        if let Some(a) = &self.shared.audit {
            a.close();
        }
        if let Some(c) = self.shared.cluster.get() {
            c.shutdown();
        }
    }

    /// Resolves when shutdown has been requested by any means.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shared.shutdown.subscribe()
    }
}

/// Binds the listener and starts the worker threads.
pub fn start(config: Config) -> io::Result<ServerHandle> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let ip: std::net::IpAddr = config
        .bind
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad bind address"))?;
    let listener = std::net::TcpListener::bind((ip, config.port))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let (tls_listener, tls_state) = match config.tls_port {
        Some(port) => {
            let files = config
                .tls_files()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let state = tls::TlsState::new(files, config.is_cluster())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let l = std::net::TcpListener::bind((ip, port))?;
            l.set_nonblocking(true)?;
            (Some(l), Some(Arc::new(state)))
        }
        None => (None, None),
    };
    let tls_addr = match &tls_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let audit_log = if config.audit_log.is_empty() {
        None
    } else {
        let a = audit::Audit::open(
            std::path::Path::new(&config.audit_log),
            config.node_id,
            config.audit_log_keys,
            config.is_cluster(),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Some(Arc::new(a))
    };
    let threads_n = config.worker_threads();
    let seed = random_seed();
    let (shutdown, _) = watch::channel(false);
    let acl = acl::Acl::new(&config.requirepass);
    if !config.aclfile.is_empty() {
        let text = std::fs::read_to_string(&config.aclfile)
            .map_err(|e| io::Error::new(e.kind(), format!("ACL file {}: {e}", config.aclfile)))?;
        acl.load(&text, &config.aclfile)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let shared = Arc::new(Shared {
        settings: config::Settings::new(&config),
        db: db::Shards::new(
            if config.is_cluster() {
                config.cluster_groups as usize
            } else {
                config.shard_count()
            },
            seed,
        ),
        clients: clients::Registry::default(),
        workers: (0..threads_n)
            .map(|_| Arc::new(stats::WorkerStats::new(cmd::table().len())))
            .collect(),
        slowlog: Mutex::new(slowlog::SlowLog::default()),
        latency: Mutex::new(slowlog::Latency::default()),
        started: Instant::now(),
        run_id: format!(
            "{:016x}{:016x}{:08x}",
            seed,
            seed.rotate_left(17) ^ 0x5bd1e995,
            seed as u32 ^ 0xdeadbeef
        ),
        local_addr,
        tls_addr,
        tls: tls_state,
        audit: audit_log,
        shutdown,
        cluster: std::sync::OnceLock::new(),
        evicting: std::sync::OnceLock::new(),
        lock_waits: Default::default(),
        list_waits: Default::default(),
        list_blocked: Default::default(),
        forwarded: Default::default(),
        moved: Default::default(),
        acl,
        config,
    });
    shared.db.set_tracking(shared.tracking());
    shared
        .db
        .set_string_len_max(shared.settings.bulk_len_max.load(Relaxed));

    if shared.config.is_cluster() {
        start_cluster(&shared, local_addr)?;
    }

    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..threads_n {
        // Bounded hand-off: a worker that falls this far behind makes the
        // acceptor refuse connections rather than queue without limit.
        let (tx, rx) = mpsc::channel::<Accepted>(1024);
        senders.push(tx);
        receivers.push(rx);
    }
    let mut threads = Vec::new();
    let mut listener = Some((listener, tls_listener));
    let mut senders = Some(senders);
    for (i, rx) in receivers.into_iter().enumerate() {
        let shared = shared.clone();
        let acceptor = if i == 0 {
            listener.take().zip(senders.take())
        } else {
            None
        };
        let t = std::thread::Builder::new()
            .name(format!("cairn-worker-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start worker runtime");
                        let _ = shared.shutdown.send(true);
                        return;
                    }
                };
                rt.block_on(worker(i, shared, rx, acceptor));
            })?;
        threads.push(t);
    }
    if let Some(a) = tls_addr {
        tracing::info!(addr = %a, auth_clients = %shared.config.tls_auth_clients, "TLS port ready");
    }
    if !ip.is_loopback() {
        let no_tls = tls_addr.is_none();
        let no_password = shared.acl.initial().is_some();
        let warning = match (no_tls, no_password) {
            (true, true) => Some(("without TLS and without a password", "anyone who reaches this port can read and write every key, and traffic is in clear (set tls-port, and requirepass or an ACL file that gives the default user a password)")),
            (true, false) => Some(("without TLS", "passwords and data cross the network in clear (set tls-port)")),
            (false, true) => Some(("without a password", "anyone who reaches this port can read and write every key as the default user (set requirepass, or an ACL file that gives the default user a password)")),
            (false, false) => None,
        };
        if let Some((missing, hint)) = warning {
            tracing::warn!(addr = %local_addr, "SECURITY WARNING: listening on a non-loopback address {missing}: {hint}");
        }
    }
    tracing::info!(addr = %local_addr, threads = threads_n, shards = shared.db.count(), "cairn ready to accept connections");
    Ok(ServerHandle { shared, threads })
}

/// A connection handed from the acceptor to a worker: the socket and
/// whether it came in on the TLS port.
type Accepted = (std::net::TcpStream, bool);

/// The listeners worker 0 accepts on: plain, and TLS when configured.
type Listeners = (std::net::TcpListener, Option<std::net::TcpListener>);

async fn worker(
    index: usize,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Accepted>,
    acceptor: Option<(Listeners, Vec<mpsc::Sender<Accepted>>)>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let stats = shared.workers[index].clone();
    let mut conns = tokio::task::JoinSet::new();
    if let Some(((listener, tls_listener), senders)) = acceptor {
        for (l, tls) in std::iter::once((listener, false)).chain(tls_listener.map(|l| (l, true))) {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tokio::spawn(accept_loop(shared.clone(), l, senders.clone(), tls));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot register listener");
                    let _ = shared.shutdown.send(true);
                }
            }
        }
        if let Some(t) = shared.tls.clone() {
            tokio::spawn(tls_reload(shared.clone(), t));
        }
        if shared.cluster.get().is_some() {
            tokio::spawn(cluster::expire_cron(shared.clone()));
            tokio::spawn(cluster::lock_expire_cron(shared.clone()));
            tokio::spawn(cluster::follow_settings(shared.clone()));
        } else {
            tokio::spawn(cron(shared.clone()));
            tokio::spawn(lock_cron(shared.clone()));
        }
    }
    loop {
        tokio::select! {
            s = rx.recv() => {
                let Some((s, tls)) = s else { break };
                let Ok(stream) = tokio::net::TcpStream::from_std(s) else { continue };
                if tls {
                    conns.spawn(conn::serve_tls(shared.clone(), stats.clone(), stream));
                } else {
                    conns.spawn(conn::serve(shared.clone(), stats.clone(), stream));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.wait_for(|v| *v) => break,
        }
    }
    // Every connection stops at its next read; a batch in progress
    // finishes and its replies are written first.
    for c in shared.clients.snapshot() {
        c.request_kill();
    }
    let grace = Duration::from_secs(shared.config.shutdown_timeout);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}

/// Re-reads the TLS certificates when their files change, until shutdown.
async fn tls_reload(shared: Arc<Shared>, state: Arc<tls::TlsState>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tls::RELOAD_CHECK) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        // File reads and certificate parsing: off the worker's thread.
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || s.reload_if_changed()).await;
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    senders: Vec<mpsc::Sender<Accepted>>,
    tls: bool,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats::bump(&shared.workers[0].connections_received, 1);
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        let target = next % senders.len();
        next = next.wrapping_add(1);
        if let Err(mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s)) =
            senders[target].try_send((std_stream, tls))
        {
            stats::bump(&shared.workers[0].rejected_connections, 1);
            // A TLS client would not understand a plain error line.
            if !s.1 {
                reject(s.0, b"-ERR server is overloaded, try again\r\n");
            }
        }
    }
}

/// Starts this node's Raft groups; shard i is group i's state machine.
fn start_cluster(shared: &Arc<Shared>, local_addr: SocketAddr) -> io::Result<()> {
    let c = &shared.config;
    let inval = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let peers = config::parse_peers(&c.cluster_peers).map_err(|e| inval(e.to_string()))?;
    let members = peers
        .into_iter()
        .map(|(id, p)| {
            (
                id,
                cairn_cluster::NodeInfo {
                    peer: p.peer,
                    resp: p.resp,
                },
            )
        })
        .collect();
    let peer_listen = SocketAddr::new(local_addr.ip(), c.peer_port());
    let mut cc = cairn_cluster::ClusterConfig::new(c.node_id, peer_listen, members);
    cc.groups = c.cluster_groups;
    cc.dir = (c.durability == "durable").then(|| std::path::PathBuf::from(&c.dir));
    cc.heartbeat_ms = c.heartbeat_interval;
    cc.raft_threads = c.raft_worker_threads();
    cc.raft_loops = c.raft_loops;
    cc.replication_factor = c.replication_factor.parse::<usize>().ok();
    cc.election_min_ms = c.election_timeout_min;
    cc.election_max_ms = c.election_timeout_max;
    // A node that cannot write its log stops (exit status 70); restart it
    // once the disk is fixed (docs/OPERATIONS.md).
    cc.exit_on_storage_failure = true;
    // TLS on: peer connections are mutual TLS too (docs/design/tls.md).
    if let Some(t) = shared.tls.clone() {
        if let Some(first) = t.peer() {
            cc.tls = Some(cairn_cluster::PeerTls(Arc::new(move || {
                t.peer().unwrap_or_else(|| first.clone())
            })));
        }
    }
    if !c.cluster_secret_file.is_empty() {
        cc.secret =
            Some(config::read_secret(&c.cluster_secret_file).map_err(|e| inval(e.to_string()))?);
    } else if c.insecure {
        tracing::warn!("--insecure: peers are not authenticated; anyone who reaches the peer port can join, vote and write");
    }
    shared.db.set_lazy_expire(false);
    let host = Arc::new(cluster::ServerHost {
        shared: std::sync::OnceLock::new(),
        forwarded: Arc::new(session::ForwardedClient::new(cmd::table().len())),
    });
    let _ = host.shared.set(Arc::downgrade(shared));
    let cl = cairn_cluster::Cluster::start(cc, host)?;
    tracing::info!(
        node = c.node_id,
        peer = %peer_listen,
        groups = c.cluster_groups,
        durability = %c.durability,
        "cluster node started"
    );
    if let Some(a) = &shared.audit {
        a.attach(cl.clone()).map_err(io::Error::other)?;
    }
    let _ = shared.cluster.set(cl);
    Ok(())
}

/// Best-effort error line to a connection we will not serve.
pub(crate) fn reject(s: std::net::TcpStream, msg: &[u8]) {
    use std::io::Write;
    let mut s = s;
    let _ = s.set_nonblocking(true);
    let _ = s.write(msg);
}

/// Background work, `hz` times a second: active expiry with a budget of
/// a quarter of each period (Redis' default effort).
/// Standalone: every 10 ms, ends the leases that ran out by this node's
/// clock, so their waiters get the lock without anyone touching it.
async fn lock_cron(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let now = mono_us();
        for i in 0..shared.db.count() {
            let mut ks = shared.db.lock(i);
            if ks.locks.is_empty() {
                continue;
            }
            for (name, owner, token, renewed) in ks.locks.expired(now, 64) {
                ks.locks
                    .expire(&name, token, Some(&owner), Some(renewed), now);
            }
            let grants = ks.locks.take_grants();
            shared.lock_waits.notify(i, grants);
        }
    }
}

async fn cron(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let hz = shared.settings.hz.load(Relaxed).clamp(1, 500) as u64;
        let period = Duration::from_millis(1000 / hz);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let budget_end = Instant::now() + period / 4;
        shared.db.active_expire(unix_ms(), budget_end);
    }
}
