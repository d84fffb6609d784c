//! A cluster node: one Raft group per slot range (all hosted here), the
//! shared log store and peer transport, proposal batching, coalesced
//! linearizable reads, request forwarding, and leader spreading.
//!
//! The server sees only this module's API: [`Cluster::write`],
//! [`Cluster::read_barrier`], [`Cluster::forward`], [`Cluster::leader`]
//! and [`Cluster::topology`]. openraft types stay inside the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::host::{Forward, Host};
use crate::lease::{LeaseClock, LEASE_FRACTION};
use crate::log::{LogOptions, LogStore};
use crate::meta::{HostMux, Meta, MetaState};
use crate::net::{self, NetError, PeerNet, K_ADMIN, K_APPEND, K_FORWARD, K_SNAPSHOT, K_VOTE};
use crate::raftlog::GroupLog;
use crate::raftnet::{Factory, Hold};
use crate::sm::GroupSm;
use crate::types::{decode_argvs, encode_argv, Batch, NodeInfo, Raft};

/// Slots of Redis Cluster.
pub const SLOTS: u32 = 16384;

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// Address the peer listener binds.
    pub peer_listen: SocketAddr,
    /// Initial members, this node included. The lowest id bootstraps
    /// every group the first time the cluster starts.
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
    /// Move group leadership to each group's preferred node when it is
    /// healthy (spreads leaders evenly).
    pub spread_leaders: bool,
    /// Threads of the runtime that drives every group's Raft tasks and
    /// the peer transport (at least 1).
    pub raft_threads: usize,
}

impl ClusterConfig {
    pub fn new(node_id: u64, peer_listen: SocketAddr, members: BTreeMap<u64, NodeInfo>) -> Self {
        ClusterConfig {
            node_id,
            peer_listen,
            members,
            groups: 64,
            dir: None,
            // openraft also uses the heartbeat interval as the timeout of
            // every AppendEntries (which includes the follower's fsync).
            heartbeat_ms: 100,
            // A follower that has a leader waits the leader lease
            // (openraft: election_max) plus a random election timeout
            // before it campaigns, so failover ≈ max + U(min, max):
            // measured p50 ≈ 0.8 s with these values.
            election_min_ms: 250,
            election_max_ms: 400,
            snapshot_logs: 20_000,
            // Off: without leadership transfer in openraft 0.9, a claim
            // is an election that the followers' leader lease refuses,
            // and the leader steps down anyway on seeing the higher term
            // (measured: groups churned every round). Kept for 0.10.
            spread_leaders: false,
            raft_threads: 2,
        }
    }
}

/// Why a request got no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Nothing was proposed: this node does not lead the group (the
    /// leader, if known, is named). Safe to retry anywhere.
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
    pub index_reads: u64,
    pub log_appends: u64,
    pub log_fsyncs: u64,
    pub log_bytes: u64,
}

struct Proposal {
    argv: Vec<u8>,
    tx: oneshot::Sender<Result<Vec<u8>, ClusterError>>,
}

#[derive(Default)]
struct Barrier {
    running: bool,
    waiters: Vec<oneshot::Sender<Result<(), ClusterError>>>,
}

struct Group {
    raft: Raft,
    metrics: watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
    props: mpsc::Sender<Proposal>,
    reads: Mutex<Barrier>,
    log: GroupLog,
    sm: GroupSm,
    lease: Arc<LeaseClock>,
    /// Set while this node hands the group's leadership to another.
    hold: Arc<Hold>,
    /// Last log index recovered at start-up. No read is served here until
    /// the state machine has applied at least this far: openraft 0.9 may
    /// restore a restarted node as leader of its old term at once, before
    /// it re-applied entries it had committed before the crash (found by
    /// the fault lab: stale reads right after a fast leader restart).
    read_fence: u64,
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
    /// a node starting with an empty data directory. Answered with a
    /// [`Probe`].
    Probe(u64),
    /// Hand the group's leadership to this voter, run by the leader (see
    /// `Inner::transfer`).
    Transfer(u64),
    /// "Campaign for the group now", sent by its leader to the node it
    /// hands leadership to, once the followers' leases have lapsed.
    Elect,
}

/// A node's answer to [`Admin::Probe`], from its copy of the meta state.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Probe {
    /// The cluster has formed: the meta state lists members.
    initialized: bool,
    /// The asking node is one of them.
    listed: bool,
    /// The asking node has stored Raft state before (`META.JOINED`).
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
    /// Data groups `0..cfg.groups`, then the meta group at `cfg.groups`.
    groups: Vec<Group>,
    meta: Arc<Meta>,
    /// Set while a node with empty storage asks its peers whether the
    /// cluster already exists; Raft messages are not answered meanwhile
    /// (no vote from a node that may have forgotten one).
    probing: std::sync::atomic::AtomicBool,
    net: Arc<PeerNet>,
    store: LogStore,
    stop: watch::Sender<bool>,
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    pub writes: AtomicU64,
    pub batches: AtomicU64,
    pub lease_reads: AtomicU64,
    pub index_reads: AtomicU64,
    lease: Duration,
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

const BATCH_CMDS: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
const INFLIGHT_BATCHES: usize = 2;
const PROPOSAL_QUEUE: usize = 8192;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Starts the node: opens (or creates) the log and snapshots,
    /// starts every group's Raft, listens for peers, and bootstraps the
    /// groups if this is the lowest member id and nothing was ever
    /// stored. Must be called outside any async runtime.
    pub fn start(cfg: ClusterConfig, host: Arc<dyn Host>) -> std::io::Result<Cluster> {
        if cfg.groups == 0 || !cfg.groups.is_power_of_two() || cfg.groups as u32 > SLOTS {
            return Err(std::io::Error::other(
                "groups must be a power of two between 1 and 16384",
            ));
        }
        if !cfg.members.contains_key(&cfg.node_id) {
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
                std::fs::create_dir_all(d.join("snapshots"))?;
                LogStore::open(&d.join("log"), LogOptions::default())?
            }
            None => (LogStore::volatile(), Default::default()),
        };
        let net = PeerNet::new(cfg.node_id, Some(cfg.peer_listen.ip()), handle.clone());
        let meta = Meta::new();
        let host: Arc<dyn Host> = Arc::new(HostMux {
            meta_group: cfg.groups,
            meta: meta.clone(),
            host,
        });
        let rcfg = Arc::new(
            Config {
                cluster_name: "cairn".into(),
                heartbeat_interval: cfg.heartbeat_ms,
                election_timeout_min: cfg.election_min_ms,
                election_timeout_max: cfg.election_max_ms,
                max_payload_entries: 64,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
                max_in_snapshot_log_to_keep: 1000,
                snapshot_max_chunk_size: 4 << 20,
                ..Default::default()
            }
            .validate()
            .map_err(|e| std::io::Error::other(e.to_string()))?,
        );
        let mut groups = Vec::with_capacity(cfg.groups as usize + 1);
        let mut fresh = Vec::new();
        let mut prop_rxs = Vec::new();
        // The data groups, then the meta group (index cfg.groups).
        for g in 0..=cfg.groups {
            let rec = recovered.groups.remove(&g).unwrap_or_default();
            let empty = rec.vote.is_none() && rec.entries.is_empty() && rec.purged.is_none();
            let log = GroupLog::new(g, store.clone(), rec)?;
            let read_fence = log.last_index();
            let snap = cfg
                .dir
                .as_ref()
                .map(|d| d.join("snapshots").join(format!("g{g}.snap")));
            let sm = GroupSm::open(g, host.clone(), snap)?;
            let empty = empty && sm.state.lock().last_applied.is_none();
            let lease = Arc::new(LeaseClock::default());
            let hold = Arc::new(Hold::default());
            let factory = Factory {
                net: net.clone(),
                group: g,
                lease: lease.clone(),
                hold: hold.clone(),
            };
            let raft = handle
                .block_on(Raft::new(
                    cfg.node_id,
                    rcfg.clone(),
                    factory,
                    log.clone(),
                    sm.clone(),
                ))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let (ptx, prx) = mpsc::channel(PROPOSAL_QUEUE);
            prop_rxs.push(prx);
            fresh.push(empty);
            groups.push(Group {
                metrics: raft.metrics(),
                raft,
                props: ptx,
                reads: Mutex::new(Barrier::default()),
                log,
                sm,
                lease,
                hold,
                read_fence,
            });
        }
        let all_fresh = fresh.iter().all(|&f| f);
        let (stop, stop_rx) = watch::channel(false);
        let probe = all_fresh && cfg.members.len() > 1;
        let inner = Arc::new(Inner {
            id: cfg.node_id,
            cfg: cfg.clone(),
            groups,
            meta,
            probing: std::sync::atomic::AtomicBool::new(probe),
            net,
            store,
            stop,
            rt: Mutex::new(None),
            handle: handle.clone(),
            writes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            lease_reads: AtomicU64::new(0),
            index_reads: AtomicU64::new(0),
            lease: Duration::from_secs_f64(cfg.election_min_ms as f64 / 1000.0 * LEASE_FRACTION),
        });
        // Peer listener.
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
        for (g, prx) in prop_rxs.into_iter().enumerate() {
            handle.spawn(batcher(inner.clone(), g as u16, prx));
        }
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
            } else if p.joined {
                tracing::info!("volatile member restarted empty: catching up from the leaders");
                joining = true;
            }
            inner.probing.store(false, Relaxed);
        }
        handle.spawn(reconcile(Arc::downgrade(&inner), stop_rx.clone()));
        // Bootstrap: the first time the cluster starts, each group is
        // initialized by its preferred member (group g: the (g mod n)-th
        // member), which becomes its first leader, so leadership starts
        // spread evenly. Every member gets the same member list, so exactly
        // one node initializes each group. (openraft 0.9 has no leadership
        // transfer; moving leaders later would need one.)
        //
        // A node with empty storage cannot tell a new cluster from one it
        // lost its state in (volatile mode, or a wiped directory), so it
        // first listens for two maximum election timeouts: a group that
        // already has a leader heartbeats it meanwhile, and is left alone.
        let ids: Vec<u64> = cfg.members.keys().copied().collect();
        if let Some(pos) = ids
            .iter()
            .position(|&i| i == cfg.node_id)
            .filter(|_| !joining)
        {
            let mine: Vec<usize> = (0..inner.groups.len())
                .filter(|&g| fresh[g] && g % ids.len() == pos)
                .collect();
            if !mine.is_empty() {
                let weak = Arc::downgrade(&inner);
                let members = cfg.members.clone();
                let wait = Duration::from_millis(cfg.election_max_ms * 2);
                handle.spawn(async move {
                    tokio::time::sleep(wait).await;
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    for g in mine {
                        let grp = &inner.groups[g];
                        let untouched = {
                            let m = grp.metrics.borrow();
                            m.current_term == 0
                                && m.current_leader.is_none()
                                && m.last_log_index.is_none()
                        };
                        if !untouched {
                            tracing::info!(group = g, "group already running; not initializing");
                            continue;
                        }
                        if let Err(e) = grp.raft.initialize(members.clone()).await {
                            tracing::debug!(group = g, error = %e, "initialize skipped");
                        }
                    }
                });
            }
        }
        if cfg.spread_leaders && cfg.members.len() > 1 {
            handle.spawn(spread_leaders(Arc::downgrade(&inner), stop_rx));
        } else {
            drop(stop_rx);
        }
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
    /// committed and applied here. Commands proposed at the same time are
    /// batched into one log entry.
    pub async fn write<A: AsRef<[u8]>>(
        &self,
        group: u16,
        argv: &[A],
    ) -> Result<Vec<u8>, ClusterError> {
        let g = self
            .inner
            .groups
            .get(group as usize)
            .ok_or(ClusterError::Shutdown)?;
        if !self.inner.is_leader(group) {
            return Err(ClusterError::NotLeader(self.leader(group)));
        }
        let mut enc = Vec::new();
        encode_argv(&mut enc, argv);
        let (tx, rx) = oneshot::channel();
        g.props
            .send(Proposal { argv: enc, tx })
            .await
            .map_err(|_| ClusterError::Shutdown)?;
        rx.await.map_err(|_| ClusterError::Shutdown)?
    }

    /// Returns once a read on this node's copy of `group` is
    /// linearizable: this node is confirmed leader by a quorum after the
    /// call began and has applied everything committed before it. All
    /// reads waiting on a group share one confirmation round.
    pub async fn read_barrier(&self, group: u16) -> Result<(), ClusterError> {
        let inner = &self.inner;
        let g = inner
            .groups
            .get(group as usize)
            .ok_or(ClusterError::Shutdown)?;
        if !inner.is_leader(group) {
            return Err(ClusterError::NotLeader(self.leader(group)));
        }
        let applied = g
            .metrics
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        if applied < g.read_fence {
            // Commit a new (empty) entry: applying it applies everything
            // before it, including what was committed before a restart.
            let raft = g.raft.clone();
            inner.handle.spawn(async move {
                let _ = raft
                    .client_write(Batch {
                        ts_ms: unix_ms(),
                        cmds: Vec::new(),
                    })
                    .await;
            });
            g.raft
                .wait(Some(Duration::from_secs(2)))
                .applied_index_at_least(Some(g.read_fence), "read fence")
                .await
                .map_err(|e| ClusterError::NoQuorum(e.to_string()))?;
        }
        if inner.lease_valid(group) {
            inner.lease_reads.fetch_add(1, Relaxed);
            return Ok(());
        }
        inner.index_reads.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut b = g.reads.lock();
            b.waiters.push(tx);
            if !b.running {
                b.running = true;
                inner.handle.spawn(read_rounds(inner.clone(), group));
            }
        }
        rx.await.map_err(|_| ClusterError::Shutdown)?
    }

    /// Sends a client command to node `to` (the group's leader) and
    /// returns its RESP3 reply. `Unreachable` means nothing was sent.
    pub async fn forward<A: AsRef<[u8]>>(
        &self,
        to: &(u64, NodeInfo),
        group: u16,
        argv: &[A],
    ) -> Result<Vec<u8>, ClusterError> {
        let mut enc = Vec::new();
        encode_argv(&mut enc, argv);
        let body = postcard::to_allocvec(&Forward { group, argv: enc })
            .map_err(|e| ClusterError::Unknown(e.to_string()))?;
        match self
            .inner
            .net
            .call(to.0, &to.1.peer, group, K_FORWARD, body, FORWARD_TIMEOUT)
            .await
        {
            Ok(r) => Ok(r),
            Err(NetError::Unreachable(_)) => Err(ClusterError::NotLeader(None)),
            Err(e) => Err(ClusterError::Unknown(e.to_string())),
        }
    }

    /// The group's current leader as this node knows it.
    pub fn leader(&self, group: u16) -> Option<(u64, NodeInfo)> {
        self.inner.leader(group)
    }

    pub fn is_leader(&self, group: u16) -> bool {
        self.inner.is_leader(group)
    }

    /// The cluster's members as the groups know them (every group has
    /// the same members), or the configured ones before any is known.
    pub fn members(&self) -> BTreeMap<u64, NodeInfo> {
        self.inner.members()
    }

    /// Adds node `id` (already running, started with an empty data
    /// directory and the members' addresses): records it in the meta
    /// group, then waits until every group has it as a voter (each
    /// group's leader adds it as a learner, streams it the log or a
    /// snapshot, then promotes it). Idempotent.
    pub async fn add_node(&self, id: u64, node: NodeInfo) -> Result<(), String> {
        let id_s = id.to_string();
        self.meta_write(&[
            b"META.MEMBER".as_slice(),
            id_s.as_bytes(),
            node.resp.as_bytes(),
            node.peer.as_bytes(),
        ])
        .await?;
        self.wait_members(|voters| voters.contains(&id)).await
    }

    /// Removes node `id` from the meta group's members, then waits until
    /// no group has it as a voter (groups it leads elect another leader).
    pub async fn remove_node(&self, id: u64) -> Result<(), String> {
        let id_s = id.to_string();
        self.meta_write(&[b"META.FORGET".as_slice(), id_s.as_bytes()])
            .await?;
        self.wait_members(|voters| !voters.contains(&id)).await
    }

    /// Moves each data group's leadership to its preferred node — group g
    /// to the (g mod n)-th of the n voters, by id, as at bootstrap — one
    /// group at a time, so leaders are spread evenly again after
    /// failovers or membership changes. Each move leaves that group
    /// unavailable for about one election timeout (clients retry).
    /// Returns how many groups moved; errors name the groups that did not.
    pub async fn rebalance(&self) -> Result<usize, String> {
        let inner = &self.inner;
        let mut moved = 0;
        let mut failed = Vec::new();
        for g in 0..inner.cfg.groups {
            let (voters, leader) = {
                let m = inner.groups[g as usize].metrics.borrow();
                let v: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                (v, m.current_leader)
            };
            if voters.is_empty() {
                continue;
            }
            let want = voters[g as usize % voters.len()];
            if leader == Some(want) {
                continue;
            }
            // A transfer takes up to ~1 s of draining, election_max, and 2 s
            // of election; one retry fits.
            let limit = Duration::from_millis(2 * inner.cfg.election_max_ms + 4000);
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

    /// Commits one meta command through the meta group's leader.
    async fn meta_write(&self, argv: &[&[u8]]) -> Result<(), String> {
        let op = meta_cmd(argv);
        self.inner
            .admin_on_leader(self.inner.cfg.groups, op, Duration::from_secs(30))
            .await
    }

    /// Waits (at most two minutes) until every group's voters, as this
    /// node sees them, satisfy `ok`.
    async fn wait_members(&self, ok: impl Fn(&BTreeSet<u64>) -> bool) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let pending: Vec<usize> = (0..self.inner.groups.len())
                .filter(|&g| {
                    let voters: BTreeSet<u64> = self.inner.groups[g]
                        .metrics
                        .borrow()
                        .membership_config
                        .membership()
                        .voter_ids()
                        .collect();
                    !ok(&voters)
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
        (0..self.inner.cfg.groups)
            .map(|g| {
                let grp = &self.inner.groups[g as usize];
                // Everything that borrows the metrics itself (leader) or
                // takes other locks comes first: a second borrow of the
                // same watch while one is held deadlocks as soon as the
                // Raft core waits to publish (the lock prefers writers).
                let leader = self.inner.leader(g);
                let snap = grp
                    .sm
                    .state
                    .lock()
                    .current
                    .as_ref()
                    .and_then(|s| s.meta.last_log_id.map(|l| l.index));
                let cached_entries = grp.log.cached();
                let m = grp.metrics.borrow();
                let voters = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, _)| {
                        m.membership_config
                            .membership()
                            .voter_ids()
                            .any(|v| v == **id)
                    })
                    .map(|(id, n)| (*id, n.clone()))
                    .collect();
                GroupStatus {
                    group: g,
                    slots: (g as u32 * per, (g as u32 + 1) * per - 1),
                    leader,
                    voters,
                    term: m.current_term,
                    last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
                    last_log: m.last_log_index.unwrap_or(0),
                    is_leader: m.state == ServerState::Leader,
                    cached_entries,
                    snapshot_index: snap,
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
    /// into; reads served under the lease and by a read-index round.
    pub fn stats(&self) -> ClusterStats {
        let log = self.inner.store.stats();
        ClusterStats {
            writes: self.inner.writes.load(Relaxed),
            batches: self.inner.batches.load(Relaxed),
            lease_reads: self.inner.lease_reads.load(Relaxed),
            index_reads: self.inner.index_reads.load(Relaxed),
            log_appends: log.appends,
            log_fsyncs: log.fsyncs,
            log_bytes: log.bytes,
        }
    }

    /// Forces a snapshot of every group (tests and operators).
    pub fn snapshot_all(&self) {
        for g in &self.inner.groups {
            let raft = g.raft.clone();
            self.inner.handle.spawn(async move {
                let _ = raft.trigger().snapshot().await;
            });
        }
    }

    /// Stops every group, flushes the log, stops the runtime. Call from
    /// outside any async runtime.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.net.shutdown();
        let rt = self.inner.rt.lock().take();
        if let Some(rt) = rt {
            rt.block_on(async {
                for g in &self.inner.groups {
                    let _ = tokio::time::timeout(Duration::from_secs(2), g.raft.shutdown()).await;
                }
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

    /// Hands `group`'s leadership from this node to voter `to` (openraft
    /// 0.9 has no leadership transfer; this builds one from what it has):
    /// 1. stop taking reads and writes for the group here (callers get
    ///    "not the leader" and retry), and wait until `to` holds every
    ///    entry this leader appended, so nothing in flight is lost;
    /// 2. stop sending the followers anything, so their leader leases
    ///    (openraft refuses votes for `election_max` after hearing from a
    ///    leader) lapse — exactly what a partition of this leader does;
    /// 3. ask `to` to campaign: its log is as long as any, so it wins;
    /// 4. wait until this node sees that it lost the lead, then resume.
    ///
    /// Safety is Raft's own (dropping messages never breaks it); reads
    /// stay linearizable because this node's read lease runs out
    /// (0.8 × election_min after the last acknowledgement) before any
    /// follower's vote lease does, as in any failover. The group is
    /// unavailable for about `election_max` plus one election.
    async fn transfer(&self, group: u16, to: u64) -> Result<(), String> {
        let g = self
            .groups
            .get(group as usize)
            .ok_or("refused: no such group")?;
        if to == self.id {
            return Ok(());
        }
        let target = {
            let m = g.metrics.borrow();
            let member = m.membership_config.membership();
            if !member.voter_ids().any(|v| v == to) {
                return Err(format!(
                    "refused: node {to} is not a voter of group {group}"
                ));
            }
            member.get_node(&to).cloned()
        };
        let target = target.ok_or("refused: no address for the target")?;
        struct Release<'a>(&'a Hold);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.network.store(false, Relaxed);
                self.0.refuse.store(false, Relaxed);
            }
        }
        if g.hold.refuse.swap(true, Relaxed) {
            return Err("a transfer of this group is under way".into());
        }
        let _release = Release(&g.hold);
        // 1. Drain: `to` has everything this leader appended.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let (leader, caught_up) = {
                let m = g.metrics.borrow();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&to).copied().flatten())
                    .map(|l| l.index);
                (
                    m.state == ServerState::Leader && m.current_leader == Some(self.id),
                    matched.is_some() && matched == m.last_log_index,
                )
            };
            if !leader {
                return Err("not the leader".into());
            }
            if caught_up {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("node {to} did not catch up within 1 s"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 2. Let the followers' leases lapse.
        g.hold.network.store(true, Relaxed);
        tokio::time::sleep(Duration::from_millis(self.cfg.election_max_ms + 50)).await;
        // 3. The target campaigns.
        let body = postcard::to_allocvec(&Admin::Elect).map_err(|e| e.to_string())?;
        let answer = self
            .net
            .call(
                to,
                &target.peer,
                group,
                K_ADMIN,
                body,
                Duration::from_secs(1),
            )
            .await
            .map_err(|e| e.to_string())?;
        postcard::from_bytes::<Result<(), String>>(&answer).map_err(|e| e.to_string())??;
        // 4. Until this node has lost the lead (to `to`, normally).
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let still = {
                let m = g.metrics.borrow();
                m.state == ServerState::Leader && m.current_leader == Some(self.id)
            };
            if !still {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("node {to} did not win the election within 2 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The answer to a starting node's [`Admin::Probe`].
    fn probe_answer(&self, id: u64) -> Probe {
        let st = self.meta.get();
        Probe {
            initialized: !st.members.is_empty(),
            listed: st.members.contains_key(&id),
            joined: st.joined.contains(&id),
        }
    }

    /// This node leads `group` and is not handing it over (a group being
    /// transferred takes no new reads or writes here; callers retry).
    fn is_leader(&self, group: u16) -> bool {
        self.groups.get(group as usize).is_some_and(|g| {
            let m = g.metrics.borrow();
            m.state == ServerState::Leader
                && m.current_leader == Some(self.id)
                && !g.hold.refuse.load(Relaxed)
        })
    }

    /// Whether a read of `group` may be served locally right now: this
    /// node leads the group, has applied an entry of its own term (so
    /// everything committed by earlier leaders is applied), and a quorum
    /// acknowledged its leadership recently enough (see `lease.rs`).
    fn lease_valid(&self, group: u16) -> bool {
        let Some(g) = self.groups.get(group as usize) else {
            return false;
        };
        let (term, voters) = {
            let m = g.metrics.borrow();
            if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
                return false;
            }
            if m.last_applied.map(|l| l.leader_id.term) != Some(m.current_term) {
                return false;
            }
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            (m.current_term, voters)
        };
        let now = std::time::Instant::now();
        g.lease
            .valid_until(term, self.id, &voters, self.lease, now)
            .is_some_and(|until| now < until)
    }

    fn leader(&self, group: u16) -> Option<(u64, NodeInfo)> {
        let g = self.groups.get(group as usize)?;
        let m = g.metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    fn members(&self) -> BTreeMap<u64, NodeInfo> {
        match self.groups.first() {
            Some(g) => {
                let m = g.metrics.borrow();
                let nodes: BTreeMap<u64, NodeInfo> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect();
                if nodes.is_empty() {
                    self.cfg.members.clone()
                } else {
                    nodes
                }
            }
            None => self.cfg.members.clone(),
        }
    }

    async fn admin(&self, group: u16, op: Admin) -> Result<(), String> {
        let g = self.groups.get(group as usize).ok_or("no such group")?;
        if !self.is_leader(group) {
            return Err("not the leader".into());
        }
        if let Admin::Meta(cmds) = op {
            if group != self.cfg.groups {
                return Err("refused: meta commands go to the meta group".into());
            }
            if decode_argvs(&cmds, |_| {}).is_err() {
                return Err("refused: undecodable meta command".into());
            }
            let r = g
                .raft
                .client_write(Batch {
                    ts_ms: unix_ms(),
                    cmds,
                })
                .await
                .map_err(|e| e.to_string())?;
            return match r.data.get(0) {
                Some(b) if b.starts_with(b"-") => Err(format!(
                    "refused: {}",
                    String::from_utf8_lossy(&b[1..]).trim_end()
                )),
                Some(_) => Ok(()),
                None => Err("no reply from the meta group".into()),
            };
        }
        let voters: BTreeSet<u64> = g
            .metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        match op {
            Admin::AddVoter(id, node) => {
                if voters.contains(&id) {
                    return Ok(());
                }
                g.raft
                    .add_learner(id, node, true)
                    .await
                    .map_err(|e| e.to_string())?;
                g.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Admin::RemoveVoter(id) => {
                if !voters.contains(&id) {
                    return Ok(());
                }
                if voters.len() == 1 {
                    return Err("refused: the last voter stays".into());
                }
                g.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Admin::Transfer(to) => return self.transfer(group, to).await,
            Admin::Meta(_) | Admin::Probe(_) | Admin::Elect => {
                return Err("refused: not a membership change".into())
            }
        }
        Ok(())
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
            if let Admin::Elect = op {
                let r: Result<(), String> = match self.groups.get(group as usize) {
                    Some(g) => g.raft.trigger().elect().await.map_err(|e| e.to_string()),
                    None => Err("refused: no such group".into()),
                };
                return postcard::to_allocvec(&r).ok();
            }
            let r = self.admin(group, op).await;
            return postcard::to_allocvec(&r).ok();
        }
        if self.probing.load(Relaxed) && matches!(kind, K_APPEND | K_VOTE | K_SNAPSHOT) {
            // No Raft state may be shared before the peers said whether
            // this node lost its data (no answer: the sender retries).
            return None;
        }
        if kind == K_FORWARD {
            let fwd: Forward = postcard::from_bytes(&body).ok()?;
            if fwd.group != group {
                return None;
            }
            return Some(host.forward(fwd).await);
        }
        let g = self.groups.get(group as usize)?;
        let out = match kind {
            K_APPEND => {
                let req = postcard::from_bytes(&body).ok()?;
                postcard::to_allocvec(&g.raft.append_entries(req).await)
            }
            K_VOTE => {
                let req = postcard::from_bytes(&body).ok()?;
                postcard::to_allocvec(&g.raft.vote(req).await)
            }
            K_SNAPSHOT => {
                let req = postcard::from_bytes(&body).ok()?;
                postcard::to_allocvec(&g.raft.install_snapshot(req).await)
            }
            _ => return None,
        };
        out.ok()
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Gathers the proposals queued for a group into log entries: one entry
/// per wake-up, up to BATCH_CMDS commands or BATCH_BYTES, at most
/// INFLIGHT_BATCHES entries awaiting commit at once.
async fn batcher(inner: Arc<Inner>, group: u16, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(INFLIGHT_BATCHES));
    let mut last_ts = 0u64;
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut cmds = first.argv;
        let mut txs = vec![first.tx];
        while txs.len() < BATCH_CMDS && cmds.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    cmds.extend_from_slice(&p.argv);
                    txs.push(p.tx);
                }
                Err(_) => break,
            }
        }
        if !inner.is_leader(group) {
            let leader = inner.leader(group);
            for tx in txs {
                let _ = tx.send(Err(ClusterError::NotLeader(leader.clone())));
            }
            continue;
        }
        // The leader's clock, never going backwards within this leader.
        last_ts = last_ts.max(unix_ms());
        let batch = Batch {
            ts_ms: last_ts,
            cmds,
        };
        inner.writes.fetch_add(txs.len() as u64, Relaxed);
        inner.batches.fetch_add(1, Relaxed);
        let raft = inner.groups[group as usize].raft.clone();
        inner.handle.spawn(async move {
            let r = raft.client_write(batch).await;
            drop(permit);
            match r {
                Ok(resp) => {
                    for (i, tx) in txs.into_iter().enumerate() {
                        let reply = resp.data.get(i).map(|b| b.to_vec()).ok_or_else(|| {
                            ClusterError::Unknown("reply missing from the applied entry".into())
                        });
                        let _ = tx.send(reply);
                    }
                }
                Err(e) => {
                    // The entry may have been appended before leadership
                    // was lost: a later leader may still commit it.
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                            ClusterError::Unknown("leadership lost while committing".into())
                        }
                        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                            ClusterError::Unknown(e.to_string())
                        }
                        RaftError::Fatal(e) => ClusterError::Unknown(e.to_string()),
                    };
                    for tx in txs {
                        let _ = tx.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// Runs confirmation rounds for a group's waiting reads until none wait.
/// A round serves only reads that were waiting before it started.
async fn read_rounds(inner: Arc<Inner>, group: u16) {
    let g = &inner.groups[group as usize];
    loop {
        let waiters = {
            let mut b = g.reads.lock();
            if b.waiters.is_empty() {
                b.running = false;
                return;
            }
            std::mem::take(&mut b.waiters)
        };
        let r = match g.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(ClusterError::NotLeader(inner.leader(group)))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(ClusterError::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(_)) => Err(ClusterError::Shutdown),
        };
        for w in waiters {
            let _ = w.send(r.clone());
        }
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

/// Makes the Raft membership of every group match the meta group's
/// members. Runs on every node; acts only on the meta group's leader once
/// it has applied an entry of its own term (so its meta state includes
/// everything committed), which sends each change to the group's leader.
/// Also seeds the meta state from the initial membership, and records
/// that this node has stored Raft state (`META.JOINED`).
async fn reconcile(weak: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let busy: Arc<Mutex<BTreeSet<u16>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(8));
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
        if st.members.contains_key(&inner.id) && !st.joined.contains(&inner.id) {
            let op = meta_cmd(&[b"META.JOINED".as_slice(), inner.id.to_string().as_bytes()]);
            let i2 = inner.clone();
            inner.handle.spawn(async move {
                let _ = i2.admin_on_leader(meta_g, op, Duration::from_secs(5)).await;
            });
        }
        let caught_up = {
            let m = inner.groups[meta_g as usize].metrics.borrow();
            m.state == ServerState::Leader
                && m.current_leader == Some(inner.id)
                && m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term)
        };
        if !caught_up {
            continue;
        }
        if st.members.is_empty() {
            // A new cluster: the meta group's initial voters are the members.
            let nodes: Vec<(u64, NodeInfo)> = inner.groups[meta_g as usize]
                .metrics
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, n)| (*id, n.clone()))
                .collect();
            for (id, n) in nodes {
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
        for g in 0..=meta_g {
            let voters: BTreeSet<u64> = inner.groups[g as usize]
                .metrics
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect();
            let op = if let Some((id, n)) = st.members.iter().find(|(id, _)| !voters.contains(id)) {
                Admin::AddVoter(*id, n.clone())
            } else if let Some(id) = voters.iter().find(|id| !st.members.contains_key(id)) {
                Admin::RemoveVoter(*id)
            } else {
                continue;
            };
            if !busy.lock().insert(g) {
                continue;
            }
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                busy.lock().remove(&g);
                break;
            };
            let (i2, busy2) = (inner.clone(), busy.clone());
            inner.handle.spawn(async move {
                tracing::info!(group = g, ?op, "reconciling membership with the meta group");
                if let Err(e) = i2.admin_on_leader(g, op, Duration::from_secs(60)).await {
                    tracing::warn!(group = g, error = %e, "membership change failed; will retry");
                }
                busy2.lock().remove(&g);
                drop(permit);
            });
        }
    }
}

/// Every few seconds, claims leadership of the groups this node is the
/// preferred leader of (group g prefers the (g mod n)-th member) when
/// another node leads them and this node's log is caught up.
async fn spread_leaders(inner: std::sync::Weak<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let ids: Vec<u64> = inner.members().keys().copied().collect();
        let Some(pos) = ids.iter().position(|&i| i == inner.id) else {
            return;
        };
        // Leaders per node as this node sees them; only a node below its
        // fair share claims, and only from a node above it, so the
        // distribution settles instead of churning.
        let mut led: BTreeMap<u64, usize> = ids.iter().map(|&i| (i, 0)).collect();
        for grp in &inner.groups {
            if let Some(l) = grp.metrics.borrow().current_leader {
                *led.entry(l).or_default() += 1;
            }
        }
        let fair = inner.groups.len().div_ceil(ids.len());
        for (g, grp) in inner.groups.iter().enumerate() {
            if g % ids.len() != pos || led.get(&inner.id).copied().unwrap_or(0) >= fair {
                continue;
            }
            let claim = {
                let m = grp.metrics.borrow();
                let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
                m.current_leader
                    .is_some_and(|l| l != inner.id && led.get(&l).copied().unwrap_or(0) > fair)
                    && voters.contains(&inner.id)
                    && m.state == ServerState::Follower
                    && m.last_applied.map(|l| l.index) == m.last_log_index
            };
            if claim {
                if let Some(l) = grp.metrics.borrow().current_leader {
                    *led.entry(l).or_default() -= 1;
                }
                *led.entry(inner.id).or_default() += 1;
                let _ = grp.raft.trigger().elect().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[doc(hidden)]
pub(crate) fn fuzz_bodies(data: &[u8]) {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    let _ = postcard::from_bytes::<AppendEntriesRequest<crate::types::C>>(data);
    let _ = postcard::from_bytes::<VoteRequest<u64>>(data);
    let _ = postcard::from_bytes::<InstallSnapshotRequest<crate::types::C>>(data);
    let _ = postcard::from_bytes::<Forward>(data);
    let _ = postcard::from_bytes::<Admin>(data);
}
