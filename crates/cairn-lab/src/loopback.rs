//! The fault lab without root or network namespaces: a cairn cluster on
//! loopback addresses with an in-process fault proxy between the nodes.
//!
//! Node `i` listens on `127.0.0.(11+i)` (RESP and its real peer port) and
//! is known to the others by a peer address on the same IP whose port is
//! the proxy's. cairn dials peers from its own listen IP, so the proxy
//! tells which node a connection comes from by its source address and
//! can cut any pair of nodes (both ways, as a partition is). Cutting a
//! pair closes the pair's open connections and refuses new ones.
//!
//! What it can do: partitions between nodes, SIGKILL and restart,
//! SIGSTOP and SIGCONT. What it cannot (the namespace lab can): packet
//! loss and latency, one-way cuts below TCP, cutting clients off (clients
//! talk to the nodes directly).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::LabError;

/// Says why the namespace lab is not used (printed by tests and tools).
pub const FALLBACK_NOTE: &str = "no root or no network namespaces: the loopback fallback runs \
instead (127.0.0.11+, in-process fault proxy: partitions, kill, pause; no loss, latency or \
client isolation)";

struct Node {
    ip: Ipv4Addr,
    resp: u16,
    /// Where the node's peer listener really is.
    peer_real: u16,
    /// What the other nodes dial (the proxy).
    peer_proxy: u16,
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

/// Pairs `(from, to)` that are cut, and a generation that changes with
/// every change, so open connections re-check.
struct Cuts {
    set: Mutex<HashSet<(usize, usize)>>,
    gen: watch::Sender<u64>,
}

impl Cuts {
    fn blocked(&self, from: usize, to: usize) -> bool {
        self.set
            .lock()
            .map(|s| s.contains(&(from, to)))
            .unwrap_or(true)
    }
}

/// A cairn cluster on loopback with a fault proxy. Dropping it kills the
/// nodes, stops the proxy and removes the data directories.
pub struct LoopbackCluster {
    nodes: Vec<Node>,
    cuts: Arc<Cuts>,
    bin: PathBuf,
    peers: String,
    root: PathBuf,
    extra_args: Vec<String>,
    /// `--cluster-groups`.
    groups: u16,
    /// Which nodes are members (started at formation, or joined and not
    /// removed since).
    members: Vec<bool>,
    proxy: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

fn free_port(ip: Ipv4Addr) -> Result<u16, LabError> {
    let l = std::net::TcpListener::bind((ip, 0)).map_err(|e| LabError::Invalid(e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LabError::Invalid(e.to_string()))
}

impl LoopbackCluster {
    /// Starts `n` (1..=9) durable nodes of `bin` (a cairn binary) with
    /// `extra_args` (e.g. Raft timings), and the proxy; waits until every
    /// node says `cluster_state:ok` (60 s at most). 8 groups.
    pub fn start(bin: &Path, n: usize, extra_args: &[&str]) -> Result<LoopbackCluster, LabError> {
        LoopbackCluster::start_members(bin, n, n, 8, extra_args)
    }

    /// Like [`LoopbackCluster::start`] with `groups` data groups, where
    /// only the first `members` of the `n` nodes form the cluster and are
    /// started; the others get addresses, a proxy and a data directory and
    /// wait for [`LoopbackCluster::join`].
    pub fn start_members(
        bin: &Path,
        n: usize,
        members: usize,
        groups: u16,
        extra_args: &[&str],
    ) -> Result<LoopbackCluster, LabError> {
        if n == 0 || n > 9 || members == 0 || members > n {
            return Err(LabError::Invalid(format!(
                "{n} nodes (1 to 9), {members} members (1 to {n})"
            )));
        }
        let root = std::env::temp_dir().join(format!(
            "cairn-loopback-{}-{:08x}",
            std::process::id(),
            rand_u32()
        ));
        std::fs::create_dir_all(&root).map_err(|e| LabError::Invalid(e.to_string()))?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let ip = Ipv4Addr::new(127, 0, 0, 11 + i as u8);
            nodes.push(Node {
                ip,
                resp: free_port(ip)?,
                peer_real: free_port(ip)?,
                peer_proxy: free_port(ip)?,
                dir: root.join(format!("n{}", i + 1)),
                child: None,
                log: root.join(format!("n{}.log", i + 1)),
            });
        }
        let peers = nodes
            .iter()
            .take(members)
            .enumerate()
            .map(|(i, nd)| format!("{}={}:{}@{}", i + 1, nd.ip, nd.resp, nd.peer_proxy))
            .collect::<Vec<_>>()
            .join(",");
        let (gen, _) = watch::channel(0);
        let cuts = Arc::new(Cuts {
            set: Mutex::new(HashSet::new()),
            gen,
        });
        let ips: Vec<Ipv4Addr> = nodes.iter().map(|nd| nd.ip).collect();
        let routes: Vec<(SocketAddr, SocketAddr)> = nodes
            .iter()
            .map(|nd| {
                (
                    SocketAddr::new(IpAddr::V4(nd.ip), nd.peer_proxy),
                    SocketAddr::new(IpAddr::V4(nd.ip), nd.peer_real),
                )
            })
            .collect();
        // The proxy: one thread with a current-thread runtime, until the
        // cluster is dropped.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let cuts2 = cuts.clone();
        let proxy_thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                for (i, (listen, to)) in routes.into_iter().enumerate() {
                    match TcpListener::bind(listen).await {
                        Ok(l) => {
                            tokio::spawn(proxy(l, i, to, ips.clone(), cuts2.clone()));
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("proxy {listen}: {e}")));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let _ = stopped.await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| LabError::Invalid(format!("proxy did not start: {e}")))?
            .map_err(LabError::Invalid)?;
        let mut c = LoopbackCluster {
            nodes,
            cuts,
            bin: bin.to_path_buf(),
            peers,
            root,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            proxy: Some((stop, proxy_thread)),
            groups,
            members: (0..n).map(|i| i < members).collect(),
        };
        for i in 0..members {
            c.restart(i)?;
        }
        c.wait_ok(Duration::from_secs(60))?;
        Ok(c)
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `IP:PORT` of every node's RESP listener (for workloads).
    pub fn targets(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|nd| format!("{}:{}", nd.ip, nd.resp))
            .collect()
    }

    /// Whether node `i` is a member (formed the cluster, or joined and
    /// was not removed since).
    pub fn is_member(&self, i: usize) -> bool {
        self.members.get(i).copied().unwrap_or(false)
    }

    /// What `CLUSTER ADDNODE` takes for node `i`: `IP:RESP@PEER` (the
    /// peer port the others dial, the proxy's).
    pub fn node_spec(&self, i: usize) -> Result<String, LabError> {
        let nd = self.nodes.get(i).ok_or(LabError::NoSuchHost(i))?;
        Ok(format!("{}:{}@{}", nd.ip, nd.resp, nd.peer_proxy))
    }

    /// Starts node `i` (not a member yet) on an empty data directory,
    /// knowing the members: it waits to be added (`CLUSTER ADDNODE`, which
    /// the caller sends, as an operator would). It counts as a member from
    /// now on.
    pub fn join(&mut self, i: usize) -> Result<(), LabError> {
        if self.is_member(i) {
            return Err(LabError::Invalid(format!("n{} is already a member", i + 1)));
        }
        self.members[i] = true;
        self.restart(i)
    }

    /// Kills node `i` for good, after the caller removed it (`CLUSTER
    /// DELNODE`): it no longer counts as a member.
    pub fn retire(&mut self, i: usize) -> Result<(), LabError> {
        self.kill(i)?;
        if let Some(m) = self.members.get_mut(i) {
            *m = false;
        }
        Ok(())
    }

    /// (Re)starts node `i` on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<(), LabError> {
        self.kill(i)?;
        let nd = &self.nodes[i];
        // A node outside the initial members lists itself too (it asks the
        // members whether the cluster exists, finds it does not list it,
        // and waits to be added).
        let mut peers = self.peers.clone();
        let me = format!("{}=", i + 1);
        if !peers.split(',').any(|p| p.starts_with(&me)) {
            peers.push_str(&format!(
                ",{}={}:{}@{}",
                i + 1,
                nd.ip,
                nd.resp,
                nd.peer_proxy
            ));
        }
        // Appended to: a restarted node's log follows its earlier runs'.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&nd.log)
            .map_err(|e| LabError::Invalid(e.to_string()))?;
        let child = Command::new(&self.bin)
            .args(["server", "--threads", "1", "--bind", &nd.ip.to_string()])
            .args(["--port", &nd.resp.to_string()])
            .args(["--peer-port", &nd.peer_real.to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--cluster-peers", &peers])
            .args(["--cluster-groups", &self.groups.to_string()])
            .args(["--dir", &nd.dir.to_string_lossy()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| LabError::Invalid(format!("{}: {e}", self.bin.display())))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// SIGKILLs node `i` (no-op if it is down).
    pub fn kill(&mut self, i: usize) -> Result<(), LabError> {
        let nd = self.nodes.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        if let Some(mut c) = nd.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) node `i`.
    pub fn pause(&self, i: usize, stop: bool) -> Result<(), LabError> {
        let nd = self.nodes.get(i).ok_or(LabError::NoSuchHost(i))?;
        if let Some(c) = &nd.child {
            let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: signalling a child process this struct owns.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
        Ok(())
    }

    /// Cuts every node of `a` from every node of `b`, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        if let Ok(mut s) = self.cuts.set.lock() {
            for &x in a {
                for &y in b {
                    s.insert((x, y));
                    s.insert((y, x));
                }
            }
        }
        self.cuts.gen.send_modify(|g| *g += 1);
    }

    /// Removes every cut.
    pub fn heal(&self) {
        if let Ok(mut s) = self.cuts.set.lock() {
            s.clear();
        }
        self.cuts.gen.send_modify(|g| *g += 1);
    }

    /// One RESP command to node `i`; the reply as text (errors too, as
    /// `-...`; no reply within 10 s is an error).
    pub fn command(&self, i: usize, argv: &[&str]) -> Result<String, LabError> {
        self.command_within(i, argv, Duration::from_secs(10))
    }

    /// [`LoopbackCluster::command`] waiting at most `limit` for the reply
    /// (then `Err`).
    pub fn command_within(
        &self,
        i: usize,
        argv: &[&str],
        limit: Duration,
    ) -> Result<String, LabError> {
        let nd = self.nodes.get(i).ok_or(LabError::NoSuchHost(i))?;
        let url = format!("redis://{}:{}/", nd.ip, nd.resp);
        let client = redis::Client::open(url).map_err(|e| LabError::Invalid(e.to_string()))?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| LabError::Invalid(e.to_string()))?;
        let _ = con.set_read_timeout(Some(limit));
        let mut cmd = redis::cmd(argv[0]);
        for a in &argv[1..] {
            cmd.arg(*a);
        }
        match cmd.query::<redis::Value>(&mut con) {
            Ok(v) => Ok(value_text(&v)),
            Err(e) if e.is_timeout() || e.is_io_error() => Err(LabError::Invalid(e.to_string())),
            Err(e) => Ok(format!("-{e}")),
        }
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub fn wait_ok(&self, limit: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + limit;
        for (i, nd) in self.nodes.iter().enumerate() {
            if nd.child.is_none() {
                continue;
            }
            while !self
                .command(i, &["CLUSTER", "INFO"])
                .is_ok_and(|t| t.contains("cluster_state:ok"))
            {
                if Instant::now() >= deadline {
                    return Err(LabError::Invalid(format!(
                        "n{} not ready: {}",
                        i + 1,
                        std::fs::read_to_string(&nd.log).unwrap_or_default()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// `CLUSTER DIGEST` of every running node, once they agree (or the
    /// last answers after `limit`).
    pub fn converged_digests(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let ds: Vec<String> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].child.is_some())
                .map(|i| self.command(i, &["CLUSTER", "DIGEST"]).unwrap_or_default())
                .collect();
            if ds.windows(2).all(|w| w[0] == w[1]) || Instant::now() >= deadline {
                return ds;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn value_text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom into a local buffer of the given length.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    u32::from_ne_bytes(b)
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.pause(i, false);
            let _ = self.kill(i);
        }
        if let Some((stop, thread)) = self.proxy.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        // A failing test keeps the nodes' logs and data to look at.
        if std::thread::panicking() || std::env::var_os("CAIRN_LAB_KEEP").is_some() {
            eprintln!("loopback cluster kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Waits until the pair `(src, to)` is no longer cut.
async fn until_healed(cuts: &Cuts, src: usize, to: usize) {
    let mut gen = cuts.gen.subscribe();
    while cuts.blocked(src, to) {
        if gen.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts connections for node `to_idx` and pumps them to its real peer
/// listener unless the source node's pair is cut. A cut pair behaves like
/// a network partition, not like a refused connection: new connections
/// are accepted and then hear nothing, open ones stop carrying bytes
/// (requests time out, as when packets are dropped); both are closed once
/// the cut is healed, and cairn reconnects.
async fn proxy(l: TcpListener, to_idx: usize, to: SocketAddr, ips: Vec<Ipv4Addr>, cuts: Arc<Cuts>) {
    loop {
        let Ok((inbound, from)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let src = match from.ip() {
            IpAddr::V4(ip) => ips.iter().position(|&x| x == ip),
            IpAddr::V6(_) => None,
        };
        let Some(src) = src else {
            // Not a node (cairn dials from its own IP): refuse.
            continue;
        };
        let cuts = cuts.clone();
        tokio::spawn(async move {
            let mut inbound = inbound;
            if cuts.blocked(src, to_idx) {
                until_healed(&cuts, src, to_idx).await;
                return;
            }
            let Ok(Ok(mut outbound)) =
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(to)).await
            else {
                return;
            };
            let mut gen = cuts.gen.subscribe();
            {
                let pump = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                tokio::pin!(pump);
                loop {
                    tokio::select! {
                        _ = &mut pump => return,
                        r = gen.changed() => {
                            if r.is_err() {
                                return;
                            }
                            if cuts.blocked(src, to_idx) {
                                break;
                            }
                        }
                    }
                }
            }
            // Cut: stop carrying bytes, keep both sockets until healed.
            until_healed(&cuts, src, to_idx).await;
        });
    }
}
