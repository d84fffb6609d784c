//! A cluster node: every shard group (and the meta group) as a raft-rs
//! core, stepped by a few batch loops (`driver.rs`), the shared log store
//! and peer transport, request forwarding, membership reconciliation and
//! leadership transfer.
//!
//! The server sees only this module's API: [`Cluster::write`],
//! [`Cluster::read_barrier`], [`Cluster::forward`], [`Cluster::leader`]
//! and [`Cluster::topology`]. raft-rs types stay inside the crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use raft::RawNode;
use tokio::sync::{oneshot, watch};

use crate::driver::{Ctx, EngineStats, GroupCore, GroupHint, GroupView, Input, Loop, Reply};
use crate::forward::{self, Forwarder};
use crate::host::{Forward, Host};
use crate::log::{LogOptions, LogStore};
use crate::meta::{HostMux, Meta, MetaState};
use crate::net::{self, PeerNet, K_ADMIN, K_FORWARD};
use crate::snapfile::{self, SnapshotMeta};
use crate::storage::{decode_entry, decode_hard_state, GroupStorage, INIT_INDEX, INIT_TERM};
use crate::throttle::SnapThrottle;
use crate::types::{decode_argvs, encode_argv, NodeInfo};
use crate::wire;

/// Slots of Redis Cluster.
pub const SLOTS: u32 = 16384;

/// Marker file of a data directory written by this engine.
const ENGINE_FILE: &str = "ENGINE";
const ENGINE_ID: &str = "cairn raft-rs engine 1\n";

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// Address the peer listener binds.
    pub peer_listen: SocketAddr,
    /// Initial members, this node included.
    pub members: BTreeMap<u64, NodeInfo>,
    /// Data groups; a power of two dividing 16384.
    pub groups: u16,
    /// Durable log and snapshots here; `None` = volatile (memory only).
    pub dir: Option<PathBuf>,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Log entries between snapshots of a group.
    pub snapshot_logs: u64,
    /// Threads of the runtime that runs the peer transport and the API's
    /// waits (at least 1).
    pub raft_threads: usize,
    /// Raft loops (OS threads) that step the groups (at least 1).
    pub raft_loops: usize,
    /// Exit the process when the log cannot be written (the server does;
    /// in-process tests stop only the node's loops).
    pub exit_on_storage_failure: bool,
    /// Idle groups stop heartbeating (docs/design/multiraft.md,
    /// "Quiescence").
    pub quiesce: bool,
    /// The cluster secret peers must prove in the handshake (`None`: no
    /// peer authentication). See `net.rs`.
    pub secret: Option<Vec<u8>>,
    /// Mutual TLS on peer connections (`None`: plain TCP).
    pub tls: Option<crate::net::PeerTls>,
    /// The replication factor a new cluster starts with (the
    /// `replication-factor` setting, seeded once when the meta group is
    /// first formed; `None`: every group on every member).
    pub replication_factor: Option<usize>,
}

impl ClusterConfig {
    pub fn new(node_id: u64, peer_listen: SocketAddr, members: BTreeMap<u64, NodeInfo>) -> Self {
        ClusterConfig {
            node_id,
            peer_listen,
            members,
            groups: 64,
            dir: None,
            heartbeat_ms: 100,
            // raft-rs draws each election timeout from [min, max).
            election_min_ms: 250,
            election_max_ms: 400,
            snapshot_logs: 20_000,
            raft_threads: 2,
            raft_loops: 1,
            exit_on_storage_failure: false,
            quiesce: true,
            secret: None,
            tls: None,
            replication_factor: None,
        }
    }
}

/// [`Cluster::placement_progress`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementProgress {
    /// `None`: every group on every member.
    pub replication_factor: Option<usize>,
    pub groups: usize,
    /// Groups whose voters are exactly their placement.
    pub placed: usize,
    /// The controller has a new placement to store (members, weights or
    /// the replication factor changed a moment ago).
    pub placing: bool,
    /// Groups this node holds a replica of.
    pub hosted: usize,
    /// Membership changes left to reach the placement (replicas to add,
    /// to remove), summed over the data groups as this node sees them.
    pub adds_left: usize,
    pub removes_left: usize,
    /// The rebalance settings in force (`rebalance-paused`,
    /// `rebalance-throttle` in bytes/s, `rebalance-max-moves`).
    pub paused: bool,
    pub throttle: u64,
    pub max_moves: usize,
    /// Data-group snapshots this node has built for peers (replicas it
    /// copied as a group's leader), their bytes, and how often the
    /// throttle put one off.
    pub snapshots_sent: u64,
    pub snapshot_bytes_sent: u64,
    pub snapshots_deferred: u64,
    /// The last placement this node stored as the meta leader.
    pub plan: Option<PlanReport>,
}

/// A stored placement's cost: the replicas it copies from the placement
/// before it, against [`crate::placement::minimum_moves`] (the least any
/// placement within the load bound could copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReport {
    /// The meta epoch the placement was stored at.
    pub epoch: u64,
    pub copies: usize,
    pub minimum: Option<usize>,
}

fn plan_report(st: &MetaState, groups: u16, want: Vec<Vec<u64>>) -> PlanReport {
    use crate::placement::{minimum_moves, moves, Placement};
    let from = if st.placement.len() == groups as usize {
        Placement {
            groups: st.placement.clone(),
        }
    } else {
        Placement {
            groups: vec![st.members.keys().copied().collect(); groups as usize],
        }
    };
    let rf = st.replication_factor().unwrap_or(st.members.len());
    let minimum = minimum_moves(&from, &st.placement_members(), groups, rf).ok();
    let copies = moves(&from, &Placement { groups: want })
        .iter()
        .filter(|m| m.add.is_some())
        .count();
    PlanReport {
        epoch: st.epoch + 1,
        copies,
        minimum,
    }
}

/// Why a request got no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Nothing was applied: this node does not lead the group (the
    /// leader, if known, is named), or the proposal was dropped or
    /// overwritten. Safe to retry anywhere.
    #[error("not the leader")]
    NotLeader(Option<(u64, NodeInfo)>),
    /// The command was proposed but its fate is not known (leadership
    /// lost or connection broken after sending). It may or may not have
    /// been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// No quorum answered in time; nothing is known to be applied (reads)
    /// or the fate is unknown (writes report [`ClusterError::Unknown`]).
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("cluster is shutting down")]
    Shutdown,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterStats {
    pub writes: u64,
    pub batches: u64,
    pub lease_reads: u64,
    /// Lease reads that never reached the loop (`Cluster::lease_read`).
    pub fast_reads: u64,
    pub index_reads: u64,
    pub log_appends: u64,
    pub log_fsyncs: u64,
    pub log_bytes: u64,
    /// Raft loop iterations, and peer frames they sent.
    pub loop_iterations: u64,
    /// Groups quiesced on this node now (no ticks, no heartbeats), times
    /// this node quiesced a group it leads, times a quiesced group woke.
    pub groups_quiet: u64,
    pub quiesced: u64,
    /// Raft messages sent to peers (all groups).
    pub messages_sent: u64,
    pub woken: u64,
    pub frames_sent: u64,
    /// Empty relayed batches sent to flush out lost ones (a relayed
    /// write waited too long).
    pub relay_fences: u64,
    /// Peer connections closed because nothing came in for a while.
    pub peer_silent_closes: u64,
}

/// Requests between nodes outside Raft itself.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Admin {
    /// Membership change of one group, run by its leader: add as
    /// learner, wait until caught up, then promote to voter.
    AddVoter(u64, NodeInfo),
    RemoveVoter(u64),
    /// A meta command ([`encode_argv`] encoding), run by the meta
    /// group's leader.
    Meta(#[serde(with = "serde_bytes")] Vec<u8>),
    /// "Is the cluster initialized, and is node `id` a member?", asked by
    /// a node starting with an empty data directory.
    Probe(u64),
    /// Hand the group's leadership to this voter, run by the leader.
    Transfer(u64),
    /// Leaders' news for a node that does not host their groups: who
    /// leads, in which term, with which voters (docs/design/sharding.md).
    Hints(Vec<GroupHint>),
}

/// How often a leader tells the members outside its group who leads it.
const HINT_PERIOD: Duration = Duration::from_millis(500);

/// A node's answer to [`Admin::Probe`], from its copy of the meta state.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Probe {
    initialized: bool,
    listed: bool,
    joined: bool,
}

/// What a node with an empty durable data directory prints when its
/// peers already count it as a member: it lost its votes and the entries
/// it acknowledged, so rejoining as a voter could lose committed writes.
pub const WIPED_MEMBER_ERROR: &str = "data directory is empty but this node is a member of an \
initialized cluster; remove it first (CLUSTER DELNODE <id> on a healthy node), then start it \
with an empty directory and add it back (CLUSTER ADDNODE)";

/// Per-group state for INFO and CLUSTER commands.
#[derive(Clone, Debug)]
pub struct GroupStatus {
    pub group: u16,
    pub slots: (u32, u32),
    pub leader: Option<(u64, NodeInfo)>,
    pub voters: Vec<(u64, NodeInfo)>,
    pub term: u64,
    pub last_applied: u64,
    pub last_log: u64,
    pub is_leader: bool,
    pub cached_entries: usize,
    pub snapshot_index: Option<u64>,
}

struct Inner {
    id: u64,
    cfg: ClusterConfig,
    meta: Arc<Meta>,
    /// Set while a node with empty storage asks its peers whether the
    /// cluster already exists; Raft messages are dropped meanwhile.
    probing: Arc<AtomicBool>,
    net: Arc<PeerNet>,
    store: LogStore,
    views: Arc<Vec<Mutex<GroupView>>>,
    addrs: Arc<Mutex<BTreeMap<u64, NodeInfo>>>,
    stats: Arc<EngineStats>,
    failed: Arc<AtomicBool>,
    inboxes: Vec<SyncSender<Input>>,
    loops: Mutex<Vec<std::thread::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    /// Commands forwarded to each peer, batched (see `forward.rs`).
    forwarders: Mutex<HashMap<u64, Arc<Forwarder>>>,
    /// Per group: writes this node proposed whose outcome its proposer
    /// has not received yet. A read skips the loop only at 0 (a read
    /// must see the writes pipelined before it, which the loop orders).
    in_flight: Vec<AtomicU64>,
    /// The loops' monotonic clock (leases are in its µs).
    now_us: crate::driver::Clock,
    /// Length of a leader lease in µs (0: lease reads off).
    lease_us: u64,
    /// Frames heard from each peer.
    heard: Arc<crate::driver::Liveness>,
    /// The rebalance throttle over the data groups' snapshots this node
    /// sends (`rebalance-throttle`), and their count.
    snap_throttle: Arc<SnapThrottle>,
    /// The last placement this node stored as the meta leader.
    last_plan: Mutex<Option<PlanReport>>,
    /// This process started on stored Raft state (not a new node).
    had_state: bool,
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// Inputs queued per loop at most; a full inbox makes API callers wait
/// (up to `INBOX_WAIT`) and drops peer messages (Raft resends).
const INBOX: usize = 65536;
const INBOX_WAIT: Duration = Duration::from_secs(5);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proxy still waits for a forwarded request's answer once it
/// knows the leader it sent it to has been replaced.
const ABANDON_GRACE: Duration = Duration::from_millis(200);
/// A write or read not answered within this long is given up (unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts one write in flight while it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(n: &'a AtomicU64) -> InFlight<'a> {
        n.fetch_add(1, SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Refuses a data directory written by the openraft engine; marks a new
/// one as this engine's.
fn check_engine_dir(dir: &Path) -> std::io::Result<()> {
    let marker = dir.join(ENGINE_FILE);
    match std::fs::read_to_string(&marker) {
        Ok(s) if s == ENGINE_ID => return Ok(()),
        Ok(s) => {
            return Err(io_err(format!(
                "{}: data directory of another engine ({:?}); start with an empty directory",
                dir.display(),
                s.trim()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let log = dir.join("log");
    let old = std::fs::read_dir(&log)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if old {
        return Err(io_err(format!(
            "{}: data directory written by the openraft engine of cairn 0.1 (no {ENGINE_FILE} \
             marker); this release cannot read it — start the node with an empty directory and \
             let it catch up from its peers",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("ENGINE.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(ENGINE_ID.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &marker)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A group's storage rebuilt from its snapshot file and the log store.
/// Returns it, its snapshot index, and whether nothing was stored.
pub(crate) fn recover_group(
    g: u16,
    host: &Arc<dyn Host>,
    snap_path: Option<&Path>,
    rec: crate::log::GroupRecovered,
) -> std::io::Result<(GroupStorage, Option<u64>, bool)> {
    let mut st = GroupStorage::new(g, host.clone());
    let mut snap_index = None;
    if let Some(p) = snap_path {
        if let Some((m, data)) = snapfile::read(p)? {
            let (ts, keyspace) = snapfile::split_payload(&data)?;
            host.restore(g, keyspace)
                .map_err(|e| io_err(format!("{}: {e}", p.display())))?;
            st.applied_ts = ts;
            st.apply_snapshot(&m.to_raft());
            snap_index = Some(m.index);
        }
    }
    let stored = rec.vote.is_some() || !rec.entries.is_empty() || rec.purged.is_some();
    // A hard state alone, with no snapshot: a replica added to the group
    // (or a member catching up) that heard the leader's term, or voted,
    // before its first snapshot arrived. Its term and vote are kept; it
    // waits for the snapshot again. Entries without a snapshot cannot be
    // placed (a group's log starts after its first snapshot).
    let awaiting_snapshot = rec.entries.is_empty() && rec.purged.is_none();
    if stored && snap_index.is_none() && !awaiting_snapshot {
        return Err(io_err(format!(
            "group {g}: the log has records but the snapshot file is missing"
        )));
    }
    if let Some(v) = rec.vote {
        let hs = decode_hard_state(&v).map_err(|e| io_err(format!("group {g}: {e}")))?;
        let (commit, term) = (st.hs.commit, st.hs.term);
        st.hs = hs;
        st.hs.commit = st.hs.commit.max(commit);
        st.hs.term = st.hs.term.max(term);
    }
    // A snapshot at index 0 is a retired replica's tombstone (a group's
    // first real snapshot is at INIT_INDEX): entries beside it are what a
    // crash during the retirement left, and belong to the old replica.
    let tombstone = snap_index == Some(0);
    let mut ents = Vec::new();
    for (index, bytes) in rec.entries.into_iter().filter(|_| !tombstone) {
        if index <= st.base.0 {
            continue;
        }
        let e = decode_entry(&bytes).map_err(|e| io_err(format!("group {g}: {e}")))?;
        if e.index != index || index != st.base.0 + ents.len() as u64 + 1 {
            return Err(io_err(format!(
                "group {g}: log record at index {index} out of place (entry {})",
                e.index
            )));
        }
        ents.push(e);
    }
    st.append(&ents);
    st.hs.commit = st.hs.commit.min(st.last_index()).max(st.base.0);
    Ok((st, snap_index, !stored && snap_index.is_none()))
}

pub(crate) fn raft_config(cfg: &ClusterConfig, applied: u64) -> raft::Config {
    let tick_ms = (cfg.heartbeat_ms / 2).max(1);
    let ticks = |ms: u64| ms.div_ceil(tick_ms).max(1) as usize;
    let heartbeat_tick = ticks(cfg.heartbeat_ms).max(1);
    let min = ticks(cfg.election_min_ms).max(heartbeat_tick + 1);
    let max = ticks(cfg.election_max_ms).max(min + 1);
    raft::Config {
        id: cfg.node_id,
        election_tick: min,
        heartbeat_tick,
        min_election_tick: min,
        max_election_tick: max,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        // Followers hear of every commit at once (an empty append; it
        // rides in the next frame to that peer), so their copies — what
        // READONLY clients read — trail the leader by one round, not by a
        // heartbeat. Measured cost: docs/design/multiraft.md.
        skip_bcast_commit: false,
        // Off: raft-rs 0.7 merges new entries into a pending MsgAppend to
        // the same peer when that message has no entries, without checking
        // that they follow its index — after a reject moved the peer's
        // next index back, an append "index 115, entries 111..115" went
        // out, the follower acknowledged 120 and the leader committed an
        // entry no quorum held (found by the simulation with relayed
        // writes, seed 734 of CAIRN_SIM_SEEDS=1500; docs/VERIFICATION.md).
        // The loop already sends one frame per peer per iteration.
        batch_append: false,
        max_uncommitted_size: 256 << 20,
        ..Default::default()
    }
}

impl Cluster {
    /// Starts the node: opens (or creates) the log and snapshots,
    /// recovers every group, listens for peers, and starts the raft
    /// loops. A new cluster's groups all start from the same initial
    /// conf state on every member. Must be called outside any async
    /// runtime.
    pub fn start(cfg: ClusterConfig, host: Arc<dyn Host>) -> std::io::Result<Cluster> {
        if cfg.groups == 0 || !cfg.groups.is_power_of_two() || cfg.groups as u32 > SLOTS {
            return Err(std::io::Error::other(
                "groups must be a power of two between 1 and 16384",
            ));
        }
        if !cfg.members.contains_key(&cfg.node_id) || cfg.node_id == 0 {
            return Err(std::io::Error::other(format!(
                "node id {} is not among the members",
                cfg.node_id
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.raft_threads.max(1))
            .thread_name("cairn-raft")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (store, mut recovered) = match &cfg.dir {
            Some(d) => {
                check_engine_dir(d)?;
                std::fs::create_dir_all(d.join("snapshots"))?;
                LogStore::open(&d.join("log"), LogOptions::default())?
            }
            None => (LogStore::volatile(), Default::default()),
        };
        let net = PeerNet::new(cfg.node_id, Some(cfg.peer_listen.ip()), handle.clone());
        if let Some(secret) = &cfg.secret {
            net.set_secret(secret);
        }
        if let Some(tls) = &cfg.tls {
            net.set_tls(tls.clone());
        }
        let meta = Meta::new();
        let host: Arc<dyn Host> = Arc::new(HostMux {
            meta_group: cfg.groups,
            meta: meta.clone(),
            host,
        });
        let snap_dir = cfg.dir.as_ref().map(|d| d.join("snapshots"));
        let mut storages = Vec::with_capacity(cfg.groups as usize + 1);
        let snap_throttle: Arc<SnapThrottle> = Arc::default();
        for g in 0..=cfg.groups {
            let rec = recovered.groups.remove(&g).unwrap_or_default();
            let path = snap_dir.as_ref().map(|d| d.join(format!("g{g}.snap")));
            let mut s = recover_group(g, &host, path.as_deref(), rec)?;
            if g < cfg.groups {
                s.0.throttle = Some(snap_throttle.clone());
            }
            storages.push(s);
        }
        let all_fresh = storages.iter().all(|s| s.2);
        let probe = all_fresh && cfg.members.len() > 1;
        let (stop, stop_rx) = watch::channel(false);
        let views: Arc<Vec<Mutex<GroupView>>> = Arc::new(
            (0..=cfg.groups)
                .map(|_| Mutex::new(GroupView::default()))
                .collect(),
        );
        let loops_n = cfg.raft_loops.max(1);
        let mut inboxes = Vec::with_capacity(loops_n);
        let mut rxs = Vec::with_capacity(loops_n);
        for _ in 0..loops_n {
            let (tx, rx) = sync_channel(INBOX);
            inboxes.push(tx);
            rxs.push(rx);
        }
        let inner = Arc::new(Inner {
            id: cfg.node_id,
            cfg: cfg.clone(),
            meta,
            probing: Arc::new(AtomicBool::new(probe)),
            net,
            store: store.clone(),
            views: views.clone(),
            addrs: Arc::new(Mutex::new(cfg.members.clone())),
            stats: Arc::new(EngineStats::default()),
            failed: Arc::new(AtomicBool::new(false)),
            inboxes,
            loops: Mutex::new(Vec::new()),
            stop,
            rt: Mutex::new(None),
            handle: handle.clone(),
            forwarders: Mutex::new(HashMap::new()),
            in_flight: (0..=cfg.groups).map(|_| AtomicU64::new(0)).collect(),
            now_us: crate::driver::monotonic_clock(),
            lease_us: crate::driver::lease_duration_us(
                raft_config(&cfg, 0).election_tick,
                Duration::from_millis((cfg.heartbeat_ms / 2).max(1)),
            ),
            heard: Arc::default(),
            snap_throttle,
            last_plan: Mutex::new(None),
            had_state: !all_fresh,
        });
        // Inbound Raft messages: decoded on the connection's task, routed
        // to the loops of their groups.
        {
            let (inboxes, probing) = (inner.inboxes.clone(), inner.probing.clone());
            let (heard, now_us) = (inner.heard.clone(), inner.now_us.clone());
            let total = cfg.groups as usize + 1;
            inner.net.set_sink(Arc::new(move |from, body| {
                if probing.load(Relaxed) {
                    return;
                }
                heard.note(from, now_us());
                let msgs = match wire::decode_batch(body) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(peer = from, error = %e, "bad raft batch from peer");
                        return;
                    }
                };
                let mut per: Vec<Vec<_>> = vec![Vec::new(); inboxes.len()];
                for (g, m) in msgs {
                    if (g as usize) < total && m.from == from {
                        per[g as usize % inboxes.len()].push((g, m));
                    }
                }
                for (i, msgs) in per.into_iter().enumerate() {
                    if !msgs.is_empty() {
                        let _ = inboxes[i].try_send(Input::Raft(msgs));
                    }
                }
            }));
        }
        // Peer listener (requests: forwarded commands, admin).
        let listener = handle.block_on(tokio::net::TcpListener::bind(cfg.peer_listen))?;
        let weak = Arc::downgrade(&inner);
        let host2 = host.clone();
        let handler: net::Handler = Arc::new(move |group, kind, body| {
            let weak = weak.clone();
            let host = host2.clone();
            Box::pin(async move {
                let inner = weak.upgrade()?;
                inner.handle_peer(&host, group, kind, body).await
            })
        });
        handle.spawn(inner.net.clone().serve(listener, handler, stop_rx.clone()));
        // Empty storage: a new cluster, a node about to be added, or a
        // member that lost its data. Only the peers can tell.
        let mut joining = false;
        if probe {
            let p = handle.block_on(probe_peers(&inner));
            if p.joined && cfg.dir.is_some() {
                inner.probing.store(false, Relaxed);
                *inner.rt.lock() = Some(rt);
                Cluster { inner }.shutdown();
                return Err(std::io::Error::other(WIPED_MEMBER_ERROR));
            }
            if p.initialized && !p.listed {
                tracing::info!(
                    "the cluster exists and this node is not a member: waiting to be added"
                );
                joining = true;
            } else if p.initialized {
                // Listed: an added node whose CLUSTER ADDNODE committed
                // before it asked, an initial member that starts after
                // the others formed the cluster, or a volatile member
                // restarted empty. Bootstrapping here would give groups
                // this node's own idea of their first voters (its peer
                // list), not the placement's: it waits for the leaders'
                // snapshots instead.
                tracing::info!(
                    joined = p.joined,
                    "the cluster exists and lists this node: catching up from the leaders"
                );
                joining = true;
            }
        }
        // Bootstrap: every initial member starts each fresh group from
        // the same initial snapshot (the members as voters); the group's
        // preferred member (g mod n) campaigns at once. Only a node with
        // no stored state at all bootstraps: one that has some groups
        // (added to a cluster with a replication factor, then restarted
        // before any replica of the others was placed on it) leaves the
        // rest empty, for a leader's snapshot if one is ever placed here;
        // starting them from its own peer list as voters would give them a
        // first configuration no other member has.
        let ids: Vec<u64> = cfg.members.keys().copied().collect();
        let my_pos = ids.iter().position(|&i| i == cfg.node_id).unwrap_or(0);
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut cores: Vec<Vec<GroupCore>> = (0..loops_n).map(|_| Vec::new()).collect();
        for (g, (mut st, mut snap_index, fresh)) in storages.into_iter().enumerate() {
            let g = g as u16;
            let mut campaign = false;
            if fresh && all_fresh && !joining {
                let meta = SnapshotMeta {
                    index: INIT_INDEX,
                    term: INIT_TERM,
                    voters: ids.clone(),
                    ..Default::default()
                };
                if let Some(d) = &snap_dir {
                    let data = host.snapshot(g);
                    let data = snapfile::payload(0, &data);
                    snapfile::write(&d.join(format!("g{g}.snap")), &meta, &data)?;
                }
                st.apply_snapshot(&meta.to_raft());
                snap_index = Some(INIT_INDEX);
                campaign = g as usize % ids.len() == my_pos;
            }
            let applied = st.applied;
            let mut raw = RawNode::new(&raft_config(&cfg, applied), st, &logger).map_err(io_err)?;
            if campaign {
                let _ = raw.campaign();
            }
            cores[g as usize % loops_n].push(GroupCore::new(g, raw, snap_index));
        }
        inner.probing.store(false, Relaxed);
        let ctx = Arc::new(Ctx {
            me: cfg.node_id,
            host: host.clone(),
            store,
            net: Box::new(inner.net.clone()),
            clock: crate::driver::wall_clock(),
            views,
            addrs: inner.addrs.clone(),
            stats: inner.stats.clone(),
            snapshot_logs: cfg.snapshot_logs.max(1),
            snap_dir,
            tick: Duration::from_millis((cfg.heartbeat_ms / 2).max(1)),
            failed: inner.failed.clone(),
            abort_on_storage_failure: cfg.exit_on_storage_failure,
            now_us: inner.now_us.clone(),
            lease_us: inner.lease_us,
            quiesce: cfg.quiesce,
            heard: inner.heard.clone(),
            raft_cfg: raft_config(&cfg, 0),
            direct_log: loops_n == 1,
            // Any value that differs between two lives of this node: the
            // wall clock's nanoseconds at start.
            incarnation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        });
        for (i, (groups, rx)) in cores.into_iter().zip(rxs).enumerate() {
            let lp = Loop::new(ctx.clone(), groups);
            let t = std::thread::Builder::new()
                .name(format!("cairn-loop-{i}"))
                .spawn(move || lp.run(rx))?;
            inner.loops.lock().push(t);
        }
        handle.spawn(reconcile(Arc::downgrade(&inner), stop_rx.clone()));
        handle.spawn(auto_rebalance(Arc::downgrade(&inner), stop_rx.clone()));
        handle.spawn(send_hints(Arc::downgrade(&inner), stop_rx.clone()));
        handle.spawn(learn_addresses(Arc::downgrade(&inner), stop_rx));
        *inner.rt.lock() = Some(rt);
        Ok(Cluster { inner })
    }

    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    pub fn groups(&self) -> u16 {
        self.inner.cfg.groups
    }

    /// The group owning a slot.
    pub fn group_of_slot(&self, slot: u32) -> u16 {
        (slot * self.inner.cfg.groups as u32 / SLOTS) as u16
    }

    /// Proposes one command to `group` and returns its RESP3 reply once
    /// committed and applied here. Commands proposed in the same loop
    /// iteration are batched into one log entry.
    pub async fn write<A: AsRef<[u8]>>(
        &self,
        group: u16,
        argv: &[A],
    ) -> Result<Vec<u8>, ClusterError> {
        self.inner.propose(group, argv).await
    }

    /// Returns once a read on this node's copy of `group` is
    /// linearizable: this node was confirmed leader by a quorum after the
    /// call began (raft-rs ReadIndex) and has applied everything committed
    /// before. All reads arriving in one loop iteration share one round.
    pub async fn read_barrier(&self, group: u16) -> Result<(), ClusterError> {
        let inner = &self.inner;
        if group > inner.cfg.groups {
            return Err(ClusterError::Shutdown);
        }
        if !inner.is_leader(group) {
            return Err(ClusterError::NotLeader(self.leader(group)));
        }
        let (tx, rx) = oneshot::channel();
        inner.submit(group, Input::Read { group, tx }).await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClusterError::Shutdown),
            Err(_) => Err(ClusterError::NoQuorum("read not confirmed in time".into())),
        }
    }

    /// True when a read of `group` on this node's copy is linearizable
    /// right now without asking the loop: this node leads the group under
    /// a lease with at least half of it left (see `GroupView::lease_until_us`;
    /// the loop renews a lease only when reads reach it, so the second
    /// half goes through `read_barrier`), and no write this node proposed
    /// to the group is still waiting for its outcome — a read pipelined
    /// behind a write (here or through a proxy, whose requests arrive and
    /// are proposed in order) must see it, and only the loop orders the
    /// two.
    pub fn lease_read(&self, group: u16) -> bool {
        let inner = &self.inner;
        let Some(v) = inner.views.get(group as usize) else {
            return false;
        };
        let Some(in_flight) = inner.in_flight.get(group as usize) else {
            return false;
        };
        let in_flight = in_flight.load(SeqCst);
        if in_flight != 0 {
            return false;
        }
        // Published only while this node leads (0 otherwise).
        let until = v.lock().lease_until_us;
        let ok = crate::driver::lease_read_ok(until, in_flight, (inner.now_us)(), inner.lease_us);
        if ok {
            inner.stats.fast_reads.fetch_add(1, Relaxed);
        }
        ok
    }

    /// Sends a client command to node `to` (the group's leader) and
    /// returns its RESP3 reply. `NotLeader(None)` means nothing was
    /// applied: nothing was sent, or a read (`write` false) was abandoned.
    ///
    /// A proxy does not wait out a leader that went silent: once this
    /// node's copy of the group sees another leader, or a newer term, the
    /// request is abandoned — a read with `NotLeader` (the caller asks the
    /// new leader), a write with `Unknown` (it may still commit).
    pub async fn forward<A: AsRef<[u8]>>(
        &self,
        to: &(u64, NodeInfo),
        group: u16,
        argv: &[A],
        write: bool,
    ) -> Result<Vec<u8>, ClusterError> {
        let mut enc = Vec::new();
        encode_argv(&mut enc, argv);
        let fwd = {
            let inner = &self.inner;
            let mut all = inner.forwarders.lock();
            all.entry(to.0)
                .or_insert_with(|| {
                    let _rt = inner.handle.enter();
                    Arc::new(Forwarder::new(inner.net.clone(), to.0, FORWARD_TIMEOUT))
                })
                .clone()
        };
        let Some(slot) = self.inner.views.get(group as usize) else {
            return Err(ClusterError::NotLeader(None));
        };
        let moved = slot.lock().moved.clone();
        let call = fwd.call(&to.1.peer, Forward { group, argv: enc });
        tokio::pin!(call);
        let mut term0 = None;
        loop {
            let changed = moved.notified();
            tokio::pin!(changed);
            // Registered before the check: no change is missed.
            changed.as_mut().enable();
            let sent = term0.is_some();
            let replaced = {
                let v = slot.lock();
                let (leader, term) = (v.route_leader(), v.route_term());
                let t0 = *term0.get_or_insert(term);
                // A pre-candidate forgets the leader without a new term:
                // wait for the election's outcome.
                leader != to.0 && (leader != 0 || term > t0)
            };
            if replaced {
                // A leader handing over on purpose (a transfer) is alive
                // and answers at once: give it that chance.
                if sent {
                    if let Ok(r) = tokio::time::timeout(ABANDON_GRACE, &mut call).await {
                        return r;
                    }
                }
                return Err(if write && sent {
                    ClusterError::Unknown(format!(
                        "forwarded to node {} which is no longer the leader",
                        to.0
                    ))
                } else {
                    ClusterError::NotLeader(None)
                });
            }
            tokio::select! {
                biased;
                r = &mut call => return r,
                () = &mut changed => {}
            }
        }
    }

    /// A write for a group this node follows, sent to its leader inside
    /// the Raft traffic and answered from this node's own apply — no
    /// forward request, handler or reply (docs/design/multiraft.md,
    /// "Relayed writes"). `NotLeader` means nothing was applied (no leader
    /// known, or a new term began before the write was proposed): retry.
    pub async fn relay<A: AsRef<[u8]>>(
        &self,
        group: u16,
        argv: &[A],
    ) -> Result<Vec<u8>, ClusterError> {
        let inner = &self.inner;
        if group > inner.cfg.groups || !inner.hosts(group) {
            return Err(ClusterError::NotLeader(self.leader(group)));
        }
        // Counted before the first await: a read of this group that this
        // node forwards later waits for it (`relay_gate`).
        let _in_flight = inner.in_flight.get(group as usize).map(InFlight::new);
        inner
            .write_through_loop(group, argv, "not applied in time", |argv, tx| {
                Input::Relay { group, argv, tx }
            })
            .await
    }

    /// Returns once every write this node relayed to `group` before the
    /// call has its outcome: a read forwarded to the leader after a
    /// pipelined write must not overtake it. Free while none is in flight.
    pub async fn relay_gate(&self, group: u16) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let busy = inner
            .in_flight
            .get(group as usize)
            .is_some_and(|c| c.load(Relaxed) > 0);
        if !busy {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        inner.submit(group, Input::RelayGate { group, tx }).await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClusterError::Shutdown),
            Err(_) => Err(ClusterError::NoQuorum(
                "relayed writes not answered in time".into(),
            )),
        }
    }

    /// The group's current leader as this node knows it.
    pub fn leader(&self, group: u16) -> Option<(u64, NodeInfo)> {
        self.inner.leader(group)
    }

    pub fn is_leader(&self, group: u16) -> bool {
        self.inner.is_leader(group)
    }

    /// Whether this node holds a replica of `group` (a READONLY read may
    /// be served from it).
    pub fn hosts(&self, group: u16) -> bool {
        self.inner.hosts(group)
    }

    /// How far the data groups are from the stored placement, as this node
    /// sees them (its replicas, or leaders' hints for the others): groups
    /// whose voters are their placement, of all; and whether the placement
    /// controller still has a new placement to store.
    pub fn placement_progress(&self) -> PlacementProgress {
        let st = self.inner.meta.get();
        let groups = self.inner.cfg.groups;
        let (mut done, mut adds_left, mut removes_left) = (0, 0, 0);
        for g in 0..groups {
            let (voters, learners): (BTreeSet<u64>, Vec<u64>) = {
                let v = self.inner.views[g as usize].lock();
                (
                    v.route_voters().iter().copied().collect(),
                    v.route_learners().to_vec(),
                )
            };
            if voters.is_empty() {
                continue;
            }
            let target = st.target_voters(g, groups);
            done += usize::from(voters == target);
            adds_left += target.difference(&voters).count();
            removes_left += voters.difference(&target).count()
                + learners.iter().filter(|id| !target.contains(id)).count();
        }
        let t = &self.inner.snap_throttle;
        PlacementProgress {
            replication_factor: st.replication_factor(),
            groups: groups as usize,
            placed: done,
            placing: st.wanted_placement(groups).is_some(),
            hosted: (0..groups).filter(|&g| self.inner.hosts(g)).count(),
            adds_left,
            removes_left,
            paused: st.rebalance_paused(),
            throttle: st.rebalance_throttle(),
            max_moves: st.rebalance_max_moves(),
            snapshots_sent: t.sent.load(Relaxed),
            snapshot_bytes_sent: t.bytes.load(Relaxed),
            snapshots_deferred: t.deferred.load(Relaxed),
            plan: self.inner.last_plan.lock().clone(),
        }
    }

    /// The cluster's members: the meta group's voters, or the configured
    /// members before any is known.
    pub fn members(&self) -> BTreeMap<u64, NodeInfo> {
        self.inner.members()
    }

    /// Adds node `id` (already running, started with an empty data
    /// directory and the members' addresses): records it in the meta
    /// group, then waits until every group has it as a voter (each
    /// group's leader adds it as a learner, sends it a snapshot and the
    /// log, then promotes it). Idempotent.
    pub async fn add_node(&self, id: u64, node: NodeInfo) -> Result<(), String> {
        let id_s = id.to_string();
        self.meta_write(&[
            b"META.MEMBER".as_slice(),
            id_s.as_bytes(),
            node.resp.as_bytes(),
            node.peer.as_bytes(),
        ])
        .await?;
        self.wait_members(|_, _, st| st.members.contains_key(&id))
            .await
    }

    /// Removes node `id` from the meta group's members, then waits until
    /// no group has it as a voter (groups it leads hand leadership over).
    pub async fn remove_node(&self, id: u64) -> Result<(), String> {
        let id_s = id.to_string();
        self.meta_write(&[b"META.FORGET".as_slice(), id_s.as_bytes()])
            .await?;
        self.wait_members(|_, voters, st| !voters.contains(&id) && !st.members.contains_key(&id))
            .await
    }

    /// Moves each data group's leadership to its preferred node — the
    /// placement's leader when a replication factor is set, else group g
    /// to the (g mod n)-th of the n voters, by id — one group at a time
    /// (raft-rs leadership transfer: the target campaigns once it has the
    /// whole log). Returns how many groups moved; errors name the groups
    /// that did not.
    pub async fn rebalance(&self) -> Result<usize, String> {
        let inner = &self.inner;
        let mut moved = 0;
        let mut failed = Vec::new();
        let st = inner.meta.get();
        for g in 0..inner.cfg.groups {
            let (voters, leader) = {
                let v = inner.views[g as usize].lock();
                (v.route_voters().to_vec(), v.route_leader())
            };
            let Some(want) = crate::balance::preferred(g, &voters, st.preferred_leader(g)) else {
                continue;
            };
            if leader == want {
                continue;
            }
            let limit = Duration::from_millis(4 * inner.cfg.election_max_ms + 4000);
            match inner.admin_on_leader(g, Admin::Transfer(want), limit).await {
                Ok(()) => moved += 1,
                Err(e) => failed.push(format!("group {g}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(moved)
        } else {
            Err(format!(
                "moved {moved}, {} not: {}",
                failed.len(),
                failed.join("; ")
            ))
        }
    }

    /// The meta group's state as this node has applied it.
    pub fn meta(&self) -> MetaState {
        self.inner.meta.get()
    }

    /// Sees every change of the meta state applied here.
    pub fn subscribe_meta(&self) -> watch::Receiver<MetaState> {
        self.inner.meta.subscribe()
    }

    /// Sets a cluster-wide setting through the meta group; every node
    /// sees it once applied (see [`Cluster::subscribe_meta`]).
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), String> {
        self.meta_write(&[b"META.SET".as_slice(), name.as_bytes(), value.as_bytes()])
            .await
    }

    /// Sets member `id`'s placement weight (0: drain it) and zone through
    /// the meta group; the placement controller moves groups to match.
    pub async fn set_weight(&self, id: u64, weight: u32, zone: Option<&str>) -> Result<(), String> {
        let (id_s, w_s) = (id.to_string(), weight.to_string());
        let mut argv: Vec<&[u8]> = vec![b"META.WEIGHT", id_s.as_bytes(), w_s.as_bytes()];
        if let Some(z) = zone {
            argv.push(z.as_bytes());
        }
        self.meta_write(&argv).await
    }

    /// Appends audit records (fragments, see [`crate::meta::audit_line`])
    /// to the cluster's audit chain through the meta group, as batch
    /// `batch` of sender (`node`, `boot`): a batch resent after a lost
    /// answer is appended once. Gives up after `timeout`.
    pub async fn audit_append(
        &self,
        boot: u64,
        batch: u64,
        fragments: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        let head = [
            self.inner.id.to_string(),
            boot.to_string(),
            batch.to_string(),
        ];
        let mut argv: Vec<&[u8]> = vec![b"META.AUDIT"];
        argv.extend(head.iter().map(|a| a.as_bytes()));
        argv.extend(fragments.iter().map(|f| f.as_bytes()));
        self.inner
            .admin_on_leader(self.inner.cfg.groups, meta_cmd(&argv), timeout)
            .await
    }

    /// Up to `max` records of the audit chain after record `after`, as
    /// applied here (from the oldest kept when `after` is older).
    pub fn audit_since(&self, after: u64, max: usize) -> crate::meta::AuditSlice {
        self.inner.meta.audit_since(after, max)
    }

    /// The last audit batch of this node applied here, as (`boot`,
    /// `batch`): a restarted node numbers its batches above it.
    pub fn audit_sent(&self) -> Option<(u64, u64)> {
        self.inner.meta.audit_sent_by(self.inner.id)
    }

    /// Sees the audit chain's record count change.
    pub fn subscribe_audit(&self) -> watch::Receiver<u64> {
        self.inner.meta.subscribe_audit()
    }

    /// Commits one meta command through the meta group's leader.
    async fn meta_write(&self, argv: &[&[u8]]) -> Result<(), String> {
        let op = meta_cmd(argv);
        self.inner
            .admin_on_leader(self.inner.cfg.groups, op, Duration::from_secs(30))
            .await
    }

    /// Waits (at most two minutes) until the placement controller rests
    /// and every group's voters, as this node sees them, are the ones the
    /// meta state places it on and satisfy `ok` (group, voters, state).
    async fn wait_members(
        &self,
        ok: impl Fn(u16, &BTreeSet<u64>, &MetaState) -> bool,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let groups = self.inner.cfg.groups;
        loop {
            let st = self.inner.meta.get();
            let placing = st.wanted_placement(groups).is_some();
            let pending: Vec<usize> = (0..self.inner.views.len())
                .filter(|&g| {
                    let voters: BTreeSet<u64> = self.inner.views[g]
                        .lock()
                        .route_voters()
                        .iter()
                        .copied()
                        .collect();
                    placing
                        || voters != st.target_voters(g as u16, groups)
                        || !ok(g as u16, &voters, &st)
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} groups not reconciled yet (first: {}); reconciliation goes on in the background",
                    pending.len(),
                    pending[0]
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn topology(&self) -> Vec<GroupStatus> {
        let n = self.inner.cfg.groups as u32;
        let per = SLOTS / n;
        let addrs = self.inner.addrs.lock().clone();
        (0..self.inner.cfg.groups)
            .map(|g| {
                let v = self.inner.views[g as usize].lock().clone();
                let info = |id: u64| addrs.get(&id).cloned().unwrap_or_default();
                let leader = v.route_leader();
                GroupStatus {
                    group: g,
                    slots: (g as u32 * per, (g as u32 + 1) * per - 1),
                    leader: (leader != 0).then(|| (leader, info(leader))),
                    voters: v.route_voters().iter().map(|&id| (id, info(id))).collect(),
                    term: v.route_term(),
                    last_applied: v.applied,
                    last_log: v.last_index,
                    is_leader: v.role_leader,
                    cached_entries: (v.last_index + 1).saturating_sub(v.first_index) as usize,
                    snapshot_index: v.snapshot_index,
                }
            })
            .collect()
    }

    /// Test hook: make this node unable to reach `peer` (both directions
    /// need blocking on both nodes for a full partition).
    pub fn block_peer(&self, peer: u64) {
        self.inner.net.faults.block(peer);
    }

    pub fn heal(&self) {
        self.inner.net.faults.heal();
    }

    /// Counters: commands proposed and log entries they were batched
    /// into; reads confirmed by a ReadIndex round; loop iterations.
    pub fn stats(&self) -> ClusterStats {
        let log = self.inner.store.stats();
        let s = &self.inner.stats;
        ClusterStats {
            writes: s.writes.load(Relaxed),
            batches: s.batches.load(Relaxed),
            lease_reads: s.lease_reads.load(Relaxed),
            fast_reads: s.fast_reads.load(Relaxed),
            index_reads: s.index_reads.load(Relaxed),
            log_appends: log.appends,
            log_fsyncs: log.fsyncs,
            log_bytes: log.bytes,
            loop_iterations: s.iterations.load(Relaxed),
            frames_sent: s.frames_sent.load(Relaxed),
            groups_quiet: self.inner.views.iter().filter(|v| v.lock().quiet).count() as u64,
            quiesced: s.quiesced.load(Relaxed),
            messages_sent: s.messages_sent.load(Relaxed),
            woken: s.woken.load(Relaxed),
            relay_fences: s.relay_fences.load(Relaxed),
            peer_silent_closes: self.inner.net.silent_closes.load(Relaxed),
        }
    }

    /// Forces a snapshot of every group (tests and operators).
    pub fn snapshot_all(&self) {
        for g in 0..=self.inner.cfg.groups {
            let _ = self.inner.inbox(g).try_send(Input::Snapshot { group: g });
        }
    }

    /// Stops the loops, flushes the log, stops the runtime. Call from
    /// outside any async runtime.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.net.shutdown();
        for tx in &self.inner.inboxes {
            let _ = tx.send(Input::Stop);
        }
        let loops = std::mem::take(&mut *self.inner.loops.lock());
        for t in loops {
            let _ = t.join();
        }
        let rt = self.inner.rt.lock().take();
        if let Some(rt) = rt {
            rt.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.store.sync()).await;
                // Releases the data directory's lock, so the same process
                // (tests) or a new one can open it again.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), self.inner.store.close()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Inner {
    async fn propose<A: AsRef<[u8]>>(
        &self,
        group: u16,
        argv: &[A],
    ) -> Result<Vec<u8>, ClusterError> {
        if group > self.cfg.groups {
            return Err(ClusterError::Shutdown);
        }
        if !self.is_leader(group) {
            return Err(ClusterError::NotLeader(self.leader(group)));
        }
        // Counted before the first await: a request handled after this
        // one's first poll sees it (`Cluster::lease_read`).
        let _in_flight = self.in_flight.get(group as usize).map(InFlight::new);
        self.write_through_loop(group, argv, "not committed in time", |argv, tx| {
            Input::Propose { group, argv, tx }
        })
        .await
    }

    /// Encodes a write, hands it to the group's loop as `input` and waits
    /// (at most `REQUEST_TIMEOUT`, then `late` as an unknown outcome) for
    /// the reply the loop sends once it is applied.
    async fn write_through_loop<A: AsRef<[u8]>>(
        &self,
        group: u16,
        argv: &[A],
        late: &str,
        input: impl FnOnce(Vec<u8>, Reply<Vec<u8>>) -> Input,
    ) -> Result<Vec<u8>, ClusterError> {
        let mut enc = Vec::new();
        encode_argv(&mut enc, argv);
        let (tx, rx) = oneshot::channel();
        self.submit(group, input(enc, tx)).await?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClusterError::Unknown("node stopping".into())),
            Err(_) => Err(ClusterError::Unknown(late.into())),
        }
    }

    fn inbox(&self, group: u16) -> &SyncSender<Input> {
        &self.inboxes[group as usize % self.inboxes.len()]
    }

    /// Hands an input to the group's loop, waiting while its inbox is full.
    async fn submit(&self, group: u16, mut input: Input) -> Result<(), ClusterError> {
        if self.failed.load(Relaxed) {
            // Nothing proposed: safe to retry on another node.
            return Err(ClusterError::NotLeader(None));
        }
        let deadline = std::time::Instant::now() + INBOX_WAIT;
        loop {
            match self.inbox(group).try_send(input) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(ClusterError::Shutdown),
                Err(TrySendError::Full(i)) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(ClusterError::NoQuorum("raft loop overloaded".into()));
                    }
                    input = i;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Runs `op` on `g`'s leader (here or by a peer call), retrying while
    /// there is no leader or it moves, until `timeout`. Errors starting
    /// with "refused:" are final.
    async fn admin_on_leader(&self, g: u16, op: Admin, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let r = match self.leader(g) {
                Some((id, _)) if id == self.id => self.admin(g, op.clone()).await,
                Some((id, node)) => {
                    let body = postcard::to_allocvec(&op).map_err(|e| e.to_string())?;
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match self
                        .net
                        .call(
                            id,
                            &node.peer,
                            g,
                            K_ADMIN,
                            body,
                            left.max(Duration::from_secs(1)),
                        )
                        .await
                    {
                        Ok(b) => postcard::from_bytes::<Result<(), String>>(&b)
                            .unwrap_or_else(|e| Err(e.to_string())),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => Err("no leader".into()),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.starts_with("refused:") => return Err(e),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(group = g, error = %e, "admin retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("group {g}: {e}")),
            }
        }
    }

    /// The answer to a starting node's [`Admin::Probe`].
    fn probe_answer(&self, id: u64) -> Probe {
        let st = self.meta.get();
        Probe {
            // A node that started on stored Raft state belongs to a
            // cluster that exists, even before it has applied its meta
            // log again after a restart.
            initialized: !st.members.is_empty() || self.had_state,
            listed: st.members.contains_key(&id),
            joined: st.joined.contains(&id),
        }
    }

    fn view(&self, group: u16) -> Option<GroupView> {
        self.views.get(group as usize).map(|v| v.lock().clone())
    }

    fn is_leader(&self, group: u16) -> bool {
        self.views
            .get(group as usize)
            .is_some_and(|v| v.lock().role_leader)
    }

    /// Records leaders' hints (bounded: one per group, known groups only,
    /// at most [`crate::meta::MAX_MEMBERS`] ids each, never an older term
    /// over a newer one).
    fn take_hints(&self, hints: Vec<GroupHint>) {
        for h in hints.into_iter().take(self.views.len()) {
            let Some(slot) = self.views.get(h.group as usize) else {
                continue;
            };
            if h.voters.len() + h.learners.len() > crate::meta::MAX_MEMBERS || h.leader == 0 {
                continue;
            }
            let mut v = slot.lock();
            if v.hint.as_ref().is_some_and(|old| old.term > h.term) {
                continue;
            }
            // A replica here that the leader's configuration (newer than
            // what this replica applied) no longer has: it missed its
            // removal; the loop retires it (docs/design/sharding.md).
            let missed_removal = v.hosted
                && !h.voters.contains(&self.id)
                && !h.learners.contains(&self.id)
                && h.conf_index > v.applied;
            let (group, conf_index) = (h.group, h.conf_index);
            let before = (v.route_leader(), v.route_term());
            v.hint = Some(h);
            if (v.route_leader(), v.route_term()) != before {
                v.moved.notify_waiters();
            }
            drop(v);
            if missed_removal {
                let _ = self
                    .inbox(group)
                    .try_send(Input::Removed { group, conf_index });
            }
        }
    }

    /// Whether this node holds a replica (voter or learner) of `group`.
    fn hosts(&self, group: u16) -> bool {
        self.views
            .get(group as usize)
            .is_some_and(|v| v.lock().hosted)
    }

    fn leader(&self, group: u16) -> Option<(u64, NodeInfo)> {
        let id = self.views.get(group as usize)?.lock().route_leader();
        if id == 0 {
            return None;
        }
        let info = self.addrs.lock().get(&id).cloned()?;
        Some((id, info))
    }

    fn members(&self) -> BTreeMap<u64, NodeInfo> {
        let voters = self
            .view(self.cfg.groups)
            .map(|v| v.voters)
            .unwrap_or_default();
        if voters.is_empty() {
            return self.cfg.members.clone();
        }
        let addrs = self.addrs.lock();
        voters
            .into_iter()
            .map(|id| (id, addrs.get(&id).cloned().unwrap_or_default()))
            .collect()
    }

    /// Proposes a membership change of `group` here (the leader) and
    /// waits until it is applied.
    async fn conf(&self, group: u16, cc: ConfChangeV2) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.submit(group, Input::Conf { group, cc, tx })
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("node stopping".into()),
            Err(_) => Err("membership change not applied in time".into()),
        }
    }

    async fn admin(&self, group: u16, op: Admin) -> Result<(), String> {
        let v = self.view(group).ok_or("refused: no such group")?;
        if !v.role_leader {
            return Err("not the leader".into());
        }
        match op {
            Admin::Meta(cmds) => {
                if group != self.cfg.groups {
                    return Err("refused: meta commands go to the meta group".into());
                }
                let mut argv: Vec<Vec<u8>> = Vec::new();
                let mut n = 0;
                decode_argvs(&cmds, |a| {
                    n += 1;
                    argv = a.iter().map(|x| x.to_vec()).collect();
                })
                .map_err(|_| "refused: undecodable meta command".to_string())?;
                if n != 1 {
                    return Err("refused: one meta command at a time".into());
                }
                let r = self
                    .propose(group, &argv)
                    .await
                    .map_err(|e| e.to_string())?;
                crate::meta::meta_outcome(&r).map_err(|why| format!("refused: {why}"))
            }
            Admin::AddVoter(id, node) => {
                if v.voters.contains(&id) {
                    return Ok(());
                }
                if !v.learners.contains(&id) {
                    let ctx = postcard::to_allocvec(&(id, node)).map_err(|e| e.to_string())?;
                    self.conf(group, conf_change(ConfChangeType::AddLearnerNode, id, ctx))
                        .await?;
                }
                self.wait_caught_up(group, id).await?;
                self.conf(group, conf_change(ConfChangeType::AddNode, id, Vec::new()))
                    .await
            }
            Admin::RemoveVoter(id) => {
                if !v.voters.contains(&id) && !v.learners.contains(&id) {
                    return Ok(());
                }
                if v.voters.len() == 1 && v.voters.contains(&id) {
                    return Err("refused: the last voter stays".into());
                }
                if id == self.id {
                    // A leader does not remove itself: it hands the group
                    // to another voter, whose admin call then removes it.
                    let to = v.voters.iter().copied().find(|&x| x != id);
                    if let Some(to) = to {
                        let _ = self.inbox(group).try_send(Input::Transfer { group, to });
                    }
                    return Err("handing leadership over before leaving; retry".into());
                }
                self.conf(
                    group,
                    conf_change(ConfChangeType::RemoveNode, id, Vec::new()),
                )
                .await
            }
            Admin::Transfer(to) => self.transfer(group, to).await,
            Admin::Probe(_) | Admin::Hints(_) => Err("refused: not a membership change".into()),
        }
    }

    /// Waits (up to 60 s) until learner `id` has the leader's whole log.
    async fn wait_caught_up(&self, group: u16, id: u64) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (tx, rx) = oneshot::channel();
            self.submit(group, Input::Progress { group, tx })
                .await
                .map_err(|e| e.to_string())?;
            match rx.await {
                Ok(Some((last, matched))) => {
                    if matched.get(&id).is_some_and(|&m| m + 16 >= last) {
                        return Ok(());
                    }
                }
                _ => return Err("not the leader".into()),
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("node {id} did not catch up within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Hands `group`'s leadership to voter `to` (raft-rs: the leader stops
    /// taking proposals, brings `to` up to date, and tells it to campaign
    /// at once) and waits until this node sees `to` lead.
    async fn transfer(&self, group: u16, to: u64) -> Result<(), String> {
        if to == self.id {
            return Ok(());
        }
        let v = self.view(group).ok_or("refused: no such group")?;
        if !v.voters.contains(&to) {
            return Err(format!(
                "refused: node {to} is not a voter of group {group}"
            ));
        }
        let deadline =
            std::time::Instant::now() + Duration::from_millis(2 * self.cfg.election_max_ms + 1000);
        let mut last_ask = None::<std::time::Instant>;
        loop {
            let v = self.view(group).ok_or("refused: no such group")?;
            if v.leader == to {
                return Ok(());
            }
            if v.role_leader
                && last_ask
                    .is_none_or(|t| t.elapsed() > Duration::from_millis(self.cfg.election_min_ms))
            {
                let _ = self.inbox(group).try_send(Input::Transfer { group, to });
                last_ask = Some(std::time::Instant::now());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("node {to} did not take over group {group} in time"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn handle_peer(
        &self,
        host: &Arc<dyn Host>,
        group: u16,
        kind: u8,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        if kind == K_ADMIN {
            let op: Admin = postcard::from_bytes(&body).ok()?;
            if let Admin::Probe(id) = op {
                return postcard::to_allocvec(&self.probe_answer(id)).ok();
            }
            if let Admin::Hints(hints) = op {
                self.take_hints(hints);
                return postcard::to_allocvec(&Ok::<(), String>(())).ok();
            }
            let r = self.admin(group, op).await;
            return postcard::to_allocvec(&r).ok();
        }
        if kind == K_FORWARD {
            if self.probing.load(Relaxed) {
                return None;
            }
            let reqs = forward::decode_batch(&body)?;
            return forward::encode_replies(host.forward(reqs).await);
        }
        None
    }
}

fn conf_change(t: ConfChangeType, id: u64, context: Vec<u8>) -> ConfChangeV2 {
    ConfChangeV2 {
        changes: vec![ConfChangeSingle {
            change_type: t as i32,
            node_id: id,
        }],
        context,
        ..Default::default()
    }
}

/// A meta command as the request its leader runs.
fn meta_cmd(argv: &[&[u8]]) -> Admin {
    let mut enc = Vec::new();
    encode_argv(&mut enc, argv);
    Admin::Meta(enc)
}

/// Asks every peer whether the cluster exists and knows this node, for
/// up to two maximum election timeouts (at least a second) or until all
/// answered; merges the answers.
async fn probe_peers(inner: &Arc<Inner>) -> Probe {
    let body = match postcard::to_allocvec(&Admin::Probe(inner.id)) {
        Ok(b) => b,
        Err(_) => return Probe::default(),
    };
    let deadline = std::time::Instant::now()
        + Duration::from_millis((inner.cfg.election_max_ms * 2).max(1000));
    let mut pending: BTreeMap<u64, NodeInfo> = inner
        .cfg
        .members
        .iter()
        .filter(|(id, _)| **id != inner.id)
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let mut merged = Probe::default();
    while !pending.is_empty() && std::time::Instant::now() < deadline {
        let mut calls = tokio::task::JoinSet::new();
        for (id, n) in &pending {
            let (net, body) = (inner.net.clone(), body.clone());
            let (id, peer, group) = (*id, n.peer.clone(), inner.cfg.groups);
            calls.spawn(async move {
                let r = net
                    .call(id, &peer, group, K_ADMIN, body, Duration::from_millis(300))
                    .await;
                (
                    id,
                    r.ok().and_then(|b| postcard::from_bytes::<Probe>(&b).ok()),
                )
            });
        }
        while let Some(joined) = calls.join_next().await {
            if let Ok((id, Some(p))) = joined {
                merged.initialized |= p.initialized;
                merged.listed |= p.listed;
                merged.joined |= p.joined;
                pending.remove(&id);
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    merged
}

/// Keeps the address book in step with the meta group's members.
async fn learn_addresses(weak: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let Some(mut rx) = weak.upgrade().map(|i| i.meta.subscribe()) else {
        return;
    };
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let members = rx.borrow_and_update().members.clone();
        let mut addrs = inner.addrs.lock();
        for (id, n) in members {
            addrs.insert(id, n);
        }
    }
}

/// Makes the Raft membership of every group match the meta group's
/// members. Runs on every node; acts only on the meta group's leader once
/// it has applied an entry of its own term (so its meta state includes
/// everything committed), which sends each change to the group's leader.
/// Also seeds the meta state from the initial membership, and records
/// that this node has stored Raft state (`META.JOINED`).
async fn reconcile(weak: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let busy: Arc<Mutex<BTreeSet<u16>>> = Arc::default();
    // Since when this node leads the meta group (with an entry of its
    // term applied): a member counts as down only after a whole repair
    // timeout of leading without hearing from it.
    let mut leading_since: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let meta_g = inner.cfg.groups;
        let st = inner.meta.get();
        inner.snap_throttle.set_rate(st.rebalance_throttle());
        if st.members.contains_key(&inner.id) && !st.joined.contains(&inner.id) {
            let op = meta_cmd(&[b"META.JOINED".as_slice(), inner.id.to_string().as_bytes()]);
            let i2 = inner.clone();
            inner.handle.spawn(async move {
                let _ = i2.admin_on_leader(meta_g, op, Duration::from_secs(5)).await;
            });
        }
        let Some(mv) = inner.view(meta_g) else {
            continue;
        };
        if !(mv.role_leader && mv.applied_term == mv.term) {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(std::time::Instant::now);
        if st.members.is_empty() {
            // A new cluster: its replication factor (first, so that the
            // members below are placed by it), and the meta group's
            // initial voters as the members.
            if let Some(rf) = inner.cfg.replication_factor {
                let (k, v) = (crate::meta::REPLICATION_FACTOR, rf.to_string());
                let op = meta_cmd(&[b"META.SET".as_slice(), k.as_bytes(), v.as_bytes()]);
                if let Err(e) = inner.admin(meta_g, op).await {
                    tracing::debug!(error = %e, "seeding the replication factor");
                    continue;
                }
            }
            let addrs = inner.addrs.lock().clone();
            for id in mv.voters {
                let Some(n) = addrs.get(&id) else {
                    continue;
                };
                let id_s = id.to_string();
                let op = meta_cmd(&[
                    b"META.MEMBER".as_slice(),
                    id_s.as_bytes(),
                    n.resp.as_bytes(),
                    n.peer.as_bytes(),
                ]);
                if let Err(e) = inner.admin(meta_g, op).await {
                    tracing::debug!(error = %e, "seeding the meta state");
                }
            }
            continue;
        }
        // Repair (docs/design/sharding.md): with a replication factor set,
        // a member not heard from for the repair timeout is marked down
        // (placed as weight 0, so its replicas go elsewhere), and up again
        // once heard; one change per tick, and never this node itself.
        // (With `all` there is nowhere else to go: nothing is marked.)
        if let Some(timeout) = st
            .repair_timeout()
            .filter(|_| st.replication_factor().is_some())
        {
            let now = (inner.now_us)();
            let window = timeout.as_micros() as u64;
            let change = st.members.keys().copied().find_map(|id| {
                let alive = id == inner.id || inner.heard.alive(id, now, window);
                match (alive, st.down.contains(&id)) {
                    (false, false) if since.elapsed() >= timeout => {
                        Some((b"META.DOWN".as_slice(), id))
                    }
                    (true, true) => Some((b"META.UP".as_slice(), id)),
                    _ => None,
                }
            });
            if let Some((cmd, id)) = change {
                let id_s = id.to_string();
                match inner.admin(meta_g, meta_cmd(&[cmd, id_s.as_bytes()])).await {
                    Ok(()) => tracing::warn!(
                        node = id,
                        "{}",
                        if cmd == b"META.DOWN" {
                            "member not heard from for the repair timeout: placing its replicas elsewhere"
                        } else {
                            "member heard from again: placing replicas on it again"
                        }
                    ),
                    Err(e) => tracing::debug!(error = %e, "marking a member down or up"),
                }
                continue;
            }
        }
        // The placement controller (docs/design/sharding.md, step 1): a
        // change of members, weights or the replication factor is placed
        // again, from the stored placement (minimal movement), and stored;
        // `META.PLACE` names the epoch it was computed at, so a placement
        // from a stale state is refused.
        if let Some(want) = st.wanted_placement(meta_g) {
            let mut argv: Vec<Vec<u8>> =
                vec![b"META.PLACE".to_vec(), st.epoch.to_string().into_bytes()];
            argv.extend(want.iter().map(|r| {
                r.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
                    .into_bytes()
            }));
            let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            match inner.admin(meta_g, meta_cmd(&refs)).await {
                Ok(()) => {
                    let plan = plan_report(&st, meta_g, want);
                    tracing::info!(
                        epoch = st.epoch,
                        copies = plan.copies,
                        minimum = ?plan.minimum,
                        "stored a new placement"
                    );
                    *inner.last_plan.lock() = Some(plan);
                }
                Err(e) => tracing::debug!(error = %e, "storing the placement"),
            }
            continue;
        }
        let (paused, max_moves) = (st.rebalance_paused(), st.rebalance_max_moves());
        for g in 0..=meta_g {
            // Pausing holds back the data groups' moves; the meta group
            // (membership itself) is always reconciled.
            if g < meta_g && paused {
                continue;
            }
            let Some(v) = inner.view(g) else {
                continue;
            };
            let voters: BTreeSet<u64> = v.route_voters().iter().copied().collect();
            let learners: Vec<u64> = v.route_learners().to_vec();
            let target = st.target_voters(g, meta_g);
            let add = target
                .iter()
                .find(|id| !voters.contains(id))
                .and_then(|id| st.members.get(id).map(|n| (*id, n.clone())));
            let op = if let Some((id, n)) = add {
                Admin::AddVoter(id, n)
            } else if let Some(id) = voters.iter().find(|id| !target.contains(id)) {
                Admin::RemoveVoter(*id)
            } else if let Some(id) = learners.iter().find(|id| !target.contains(id)) {
                Admin::RemoveVoter(*id)
            } else {
                continue;
            };
            {
                let mut b = busy.lock();
                if g < meta_g && b.iter().filter(|&&x| x < meta_g).count() >= max_moves {
                    continue;
                }
                if !b.insert(g) {
                    continue;
                }
            }
            let (i2, busy2) = (inner.clone(), busy.clone());
            inner.handle.spawn(async move {
                tracing::info!(group = g, ?op, "reconciling membership with the meta group");
                if let Err(e) = i2.admin_on_leader(g, op, Duration::from_secs(60)).await {
                    tracing::warn!(group = g, error = %e, "membership change failed; will retry");
                }
                busy2.lock().remove(&g);
            });
        }
    }
}

/// Tells every member outside a group this node leads who leads it, every
/// [`HINT_PERIOD`]: one small call per such member, listing all those
/// groups (nothing is sent while every member hosts every group).
async fn send_hints(weak: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HINT_PERIOD) => {}
            _ = stop.changed() => return,
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let members = inner.members();
        let mut per_peer: BTreeMap<u64, Vec<GroupHint>> = BTreeMap::new();
        for g in 0..inner.cfg.groups {
            let Some(v) = inner.view(g) else {
                continue;
            };
            if !v.role_leader {
                continue;
            }
            let hint = GroupHint {
                group: g,
                term: v.term,
                leader: inner.id,
                voters: v.voters.clone(),
                learners: v.learners.clone(),
                conf_index: v.conf_index,
            };
            for &id in members.keys() {
                if id != inner.id && !v.voters.contains(&id) && !v.learners.contains(&id) {
                    per_peer.entry(id).or_default().push(hint.clone());
                }
            }
        }
        for (id, hints) in per_peer {
            let Some(node) = members.get(&id).cloned() else {
                continue;
            };
            let Ok(body) = postcard::to_allocvec(&Admin::Hints(hints)) else {
                continue;
            };
            let net = inner.net.clone();
            inner.handle.spawn(async move {
                let _ = net
                    .call(id, &node.peer, 0, K_ADMIN, body, HINT_PERIOD)
                    .await;
            });
        }
    }
}

/// The automatic leader rebalancer (see `balance.rs`): this node takes
/// back, one at a time, the data groups that prefer it, once the cluster
/// has settled.
async fn auto_rebalance(weak: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    use crate::balance::{next_move, AUTO_REBALANCE, PACE, SETTLE};
    let mut settled_since = std::time::Instant::now();
    let mut start = 0usize;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PACE) => {}
            _ = stop.changed() => return,
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let now = std::time::Instant::now();
        let st = inner.meta.get();
        let off =
            st.settings.get(AUTO_REBALANCE).is_some_and(|v| v == "no") || st.rebalance_paused();
        let groups: Vec<(Vec<u64>, u64, Option<u64>)> = (0..inner.cfg.groups)
            .map(|g| {
                let (voters, leader) = inner
                    .view(g)
                    .map(|v| (v.route_voters().to_vec(), v.route_leader()))
                    .unwrap_or_default();
                (voters, leader, st.preferred_leader(g))
            })
            .collect();
        if off || groups.iter().any(|(_, leader, _)| *leader == 0) {
            settled_since = now;
            continue;
        }
        if now.duration_since(settled_since) < SETTLE {
            continue;
        }
        let Some(g) = next_move(inner.id, &groups, start) else {
            continue;
        };
        start = g as usize + 1;
        let limit = Duration::from_millis(2 * inner.cfg.election_max_ms + 2000);
        match inner
            .admin_on_leader(g, Admin::Transfer(inner.id), limit)
            .await
        {
            Ok(()) => tracing::info!(group = g, "took leadership back (automatic rebalance)"),
            Err(e) => {
                tracing::debug!(group = g, error = %e, "automatic rebalance: transfer failed");
                settled_since = std::time::Instant::now();
            }
        }
    }
}

#[doc(hidden)]
pub(crate) fn fuzz_bodies(data: &[u8]) {
    let _ = wire::decode_batch(data);
    let _ = wire::decode_entry_data(data);
    let _ = decode_entry(data);
    let _ = decode_hard_state(data);
    let _ = forward::decode_batch(data);
    let _ = postcard::from_bytes::<Admin>(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::GroupRecovered;
    use raft::eraftpb::HardState;

    struct NoHost;
    impl Host for NoHost {
        fn apply(&self, _: u16, _: crate::Stamp, _: &[&[u8]], _: &mut Vec<u8>) {}
        fn snapshot(&self, _: u16) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&self, _: u16, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn clear(&self, _: u16) {}
        fn forward(&self, _: Vec<Forward>) -> crate::host::BoxFuture<Vec<Vec<u8>>> {
            Box::pin(async { Vec::new() })
        }
    }

    /// A replica killed after it heard its leader's term but before its
    /// first snapshot arrived comes back with that term and vote and no
    /// data (found by the 3 -> 5 -> 4 lab run: it used to refuse to start);
    /// entries with no snapshot still refuse.
    #[test]
    fn a_hard_state_without_a_snapshot_is_a_replica_waiting_for_one() {
        let host: Arc<dyn Host> = Arc::new(NoHost);
        let hs = HardState {
            term: 9,
            vote: 2,
            commit: 0,
        };
        let rec = GroupRecovered {
            vote: Some(crate::storage::encode_hard_state(&hs).into()),
            ..Default::default()
        };
        let (st, snap, fresh) = recover_group(3, &host, None, rec).unwrap();
        assert_eq!((st.hs.term, st.hs.vote, st.hs.commit), (9, 2, 0));
        assert_eq!((snap, fresh, st.last_index()), (None, false, 0));
        let rec = GroupRecovered {
            vote: Some(crate::storage::encode_hard_state(&hs).into()),
            entries: vec![(7, Vec::new().into())],
            ..Default::default()
        };
        let e = recover_group(3, &host, None, rec).err().unwrap();
        assert!(e.to_string().contains("snapshot file is missing"), "{e}");
        let (_, _, fresh) = recover_group(3, &host, None, GroupRecovered::default()).unwrap();
        assert!(fresh);
    }
}
