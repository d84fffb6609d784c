//! The raft loop: one OS thread that steps many groups' raft-rs cores
//! and batches their work — one log write and one `fdatasync` per
//! iteration for every group, one frame per peer carrying every group's
//! messages. A node runs `raft_loops` of them; group g belongs to loop
//! `g mod raft_loops`. See docs/design/multiraft.md.
//!
//! The thing not to get wrong: nothing a Ready asks to persist may be
//! acknowledged (persisted messages: votes, append responses) before the
//! fsync covering it returned; and entries are applied in log order,
//! each exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

use crate::host::{Host, Stamp};
use crate::log::{LogBatch, LogStore, MetaKey};
use crate::net::{PeerNet, K_RAFT};
use crate::node::ClusterError;
use crate::snapfile::{self, SnapshotMeta};
use crate::storage::{encode_entry, encode_hard_state, GroupStorage};
use crate::types::{decode_argvs, NodeInfo};
use crate::wire;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ClusterError>>;

/// Commands in one log entry at most, and bytes.
const BATCH_CMDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
/// Inputs taken per iteration at most (the rest wait for the next one).
const DRAIN_MAX: usize = 16384;
/// Entries kept in the log below a snapshot, for followers that lag a
/// little (they get entries instead of a whole snapshot).
const KEEP_BELOW_SNAPSHOT: u64 = 1000;
/// Keys hinted to the host before one iteration's apply, at most
/// (`hinted_keys`): a few cache lines each, so they stay in L2 until
/// apply reaches them.
const PREFETCH_KEYS: usize = 256;

pub(crate) enum Input {
    /// One client command ([`crate::types::encode_argv`] encoding).
    Propose {
        group: u16,
        argv: Vec<u8>,
        tx: Reply<Vec<u8>>,
    },
    /// A client write for a group this node follows: sent to the leader
    /// inside the next Raft frame, answered from this node's own apply
    /// (docs/design/multiraft.md, "Relayed writes").
    Relay {
        group: u16,
        argv: Vec<u8>,
        tx: Reply<Vec<u8>>,
    },
    /// Answers once every write this node relayed to the group before it
    /// has its outcome (a read forwarded behind them must see them).
    RelayGate {
        group: u16,
        tx: Reply<()>,
    },
    /// A linearizable-read barrier.
    Read {
        group: u16,
        tx: Reply<()>,
    },
    /// Messages from a peer.
    Raft(Vec<(u16, Message)>),
    /// A membership change, run by the leader.
    Conf {
        group: u16,
        cc: ConfChangeV2,
        tx: oneshot::Sender<Result<(), String>>,
    },
    Transfer {
        group: u16,
        to: u64,
    },
    /// Write a snapshot and compact the log now.
    Snapshot {
        group: u16,
    },
    /// The group's leader says this node left the group's configuration
    /// at `conf_index` (a hint): a replica that never applied its removal
    /// (the leader stops talking to a removed node, which may miss the
    /// commit) retires if it has not applied that far.
    Removed {
        group: u16,
        conf_index: u64,
    },
    /// The leader's view of each replica's matched index, and its own last.
    Progress {
        group: u16,
        tx: oneshot::Sender<Option<(u64, BTreeMap<u64, u64>)>>,
    },
    Stop,
}

/// What the API reads about a group (published by its loop).
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupView {
    pub leader: u64,
    pub term: u64,
    pub role_leader: bool,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub applied: u64,
    /// Term of the last applied entry (a leader whose applied term is its
    /// term has applied everything committed before it).
    pub applied_term: u64,
    pub last_index: u64,
    pub first_index: u64,
    pub snapshot_index: Option<u64>,
    /// While this node leads: reads may skip the loop until this time
    /// (monotonic µs, `Ctx::now_us`); 0 = not now. Set only while the
    /// lease of a quorum-confirmed round holds in the current term, no
    /// transfer is under way, and an entry of this term is applied (so
    /// everything an earlier leader acknowledged is applied here).
    pub lease_until_us: u64,
    /// The group is quiesced on this node: no ticks, no heartbeats.
    pub quiet: bool,
    /// Woken whenever `leader` or `term` changes (a proxy waiting on a
    /// forwarded request gives up on a deposed leader).
    pub moved: Arc<tokio::sync::Notify>,
    /// This node is a voter or learner of the group. When it is not (the
    /// group is placed elsewhere), its own replica knows nothing current,
    /// and routing follows the hints the group's leader sends
    /// (docs/design/sharding.md, step 2).
    pub hosted: bool,
    pub hint: Option<GroupHint>,
    /// Index of the last configuration this replica applied.
    pub conf_index: u64,
}

/// What a group's leader tells the members that do not host the group.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GroupHint {
    pub group: u16,
    pub term: u64,
    pub leader: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// The index of the configuration `voters` and `learners` are from.
    pub conf_index: u64,
}

impl GroupView {
    /// The hint, when routing should follow it: the group is not hosted
    /// here and the hint is at least as recent as the local replica.
    fn live_hint(&self) -> Option<&GroupHint> {
        self.hint
            .as_ref()
            .filter(|h| !self.hosted && h.term >= self.term && h.leader != 0)
    }

    /// The leader requests for the group go to (0: none known).
    pub fn route_leader(&self) -> u64 {
        self.live_hint().map_or(self.leader, |h| h.leader)
    }

    pub fn route_term(&self) -> u64 {
        self.live_hint().map_or(self.term, |h| h.term)
    }

    pub fn route_voters(&self) -> &[u64] {
        self.live_hint().map_or(&self.voters, |h| &h.voters)
    }

    pub fn route_learners(&self) -> &[u64] {
        self.live_hint().map_or(&self.learners, |h| &h.learners)
    }
}

#[derive(Default)]
pub(crate) struct EngineStats {
    pub writes: AtomicU64,
    pub batches: AtomicU64,
    pub index_reads: AtomicU64,
    pub lease_reads: AtomicU64,
    /// Reads answered under the lease without reaching the loop.
    pub fast_reads: AtomicU64,
    pub iterations: AtomicU64,
    pub frames_sent: AtomicU64,
    /// Raft messages queued for peers (all groups).
    pub messages_sent: AtomicU64,
    /// Empty relayed batches sent to flush out lost ones.
    pub relay_fences: AtomicU64,
    /// Times a group was quiesced by this node as leader, and times a
    /// quiesced group woke here.
    pub quiesced: AtomicU64,
    pub woken: AtomicU64,
}

/// Where a loop's peer frames go: the peer transport, or the simulation.
pub(crate) trait Outbound: Send + Sync {
    /// Queues one frame (a `wire` batch) for node `to`; false when it
    /// cannot be sent (unreachable, queue full): Raft resends.
    fn send(&self, to: u64, addr: &str, batch: &[u8]) -> bool;
}

impl Outbound for Arc<PeerNet> {
    fn send(&self, to: u64, addr: &str, batch: &[u8]) -> bool {
        self.send_oneway(to, addr, K_RAFT, batch)
    }
}

/// The leader's clock for entry timestamps (ms since the epoch).
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Whether a read may be answered from the leader's copy without asking
/// the loop (`Cluster::lease_read`; the simulation's clients take the same
/// decision): the published lease (0 unless this node leads under one)
/// has more than half of it left, and no write this node proposed to the
/// group is still waiting for its outcome (a read pipelined behind a
/// write must see it, and only the loop orders the two).
pub(crate) fn lease_read_ok(
    lease_until_us: u64,
    writes_in_flight: u64,
    now_us: u64,
    lease_us: u64,
) -> bool {
    writes_in_flight == 0 && lease_until_us > now_us + lease_us / 2
}

/// A monotonic clock in µs since it was made.
pub(crate) fn monotonic_clock() -> Clock {
    let t0 = Instant::now();
    Arc::new(move || t0.elapsed().as_micros() as u64)
}

/// Share of the shortest time a follower refuses other candidates that a
/// leader lease lasts: the rest is margin for clock-rate differences
/// between nodes (up to 20%).
pub(crate) const LEASE_FRACTION: f64 = 0.8;

/// The leader lease. A follower that heard from the leader refuses to
/// vote for another candidate while fewer than `election_tick` of its
/// ticks passed (raft-rs check-quorum), i.e. for at least
/// `(election_tick - 1) * tick` after it received the message (a tick may
/// come right after the receipt). The message was sent before it was
/// received, so a lease counted from the send time is safe.
pub(crate) fn lease_duration_us(election_tick: usize, tick: Duration) -> u64 {
    let refuse_us = election_tick.saturating_sub(1) as f64 * tick.as_micros() as f64;
    (refuse_us * LEASE_FRACTION) as u64
}

pub(crate) fn wall_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// The `context` of the heartbeat a leader sends when it quiesces a
/// group (and that its followers echo back): see `Loop::quiesce`.
pub(crate) const QUIESCE_CTX: &[u8] = b"cairn-quiesce";
/// The `context` of the heartbeat response a follower sends to wake its
/// leader's quiesced group.
pub(crate) const WAKE_CTX: &[u8] = b"cairn-wake";

/// When this node last heard from each peer (any frame, monotonic µs of
/// `Ctx::now_us`): quiesced groups watch their peers through it instead of
/// per-group heartbeats.
#[derive(Default)]
pub(crate) struct Liveness(Mutex<HashMap<u64, u64>>);

impl Liveness {
    pub fn note(&self, peer: u64, now_us: u64) {
        self.0.lock().insert(peer, now_us);
    }

    /// True when `peer` was heard from within `window_us` before `now_us`.
    pub fn alive(&self, peer: u64, now_us: u64, window_us: u64) -> bool {
        self.0
            .lock()
            .get(&peer)
            .is_some_and(|&t| now_us.saturating_sub(t) <= window_us)
    }
}

/// What every loop of a node shares.
pub(crate) struct Ctx {
    pub me: u64,
    pub host: Arc<dyn Host>,
    pub store: LogStore,
    pub net: Box<dyn Outbound>,
    pub clock: Clock,
    pub views: Arc<Vec<Mutex<GroupView>>>,
    pub addrs: Arc<Mutex<BTreeMap<u64, NodeInfo>>>,
    pub stats: Arc<EngineStats>,
    pub snapshot_logs: u64,
    pub snap_dir: Option<PathBuf>,
    pub tick: Duration,
    /// Set when a loop stopped on a storage error.
    pub failed: Arc<AtomicBool>,
    /// Exit the process on a storage error (the server); tests and the
    /// simulation keep running.
    pub abort_on_storage_failure: bool,
    /// A monotonic clock in µs (the simulation's is virtual).
    pub now_us: Clock,
    /// How long a ReadIndex round's quorum lets the leader serve reads
    /// without another (0: never). See `lease_duration_us`.
    pub lease_us: u64,
    /// Idle groups stop ticking (see `Loop::tick`).
    pub quiesce: bool,
    /// Frames heard from each peer.
    pub heard: Arc<Liveness>,
    /// The Raft settings every group was built with (`applied` aside): a
    /// retired group's `RawNode` is built again from them.
    pub raft_cfg: raft::Config,
    /// Tells this process life's relayed writes from an earlier one's
    /// (their numbers start again at 1 on every start).
    pub incarnation: u64,
    /// The loop writes its log batches itself (`LogStore::commit_now`)
    /// instead of queueing them for the writer thread and waiting: right
    /// for one loop per node; several loops share fsyncs through the queue.
    pub direct_log: bool,
}

/// Whether node `me` is in the conf state: voter, learner, or either in
/// a joint configuration.
fn in_conf(cs: &ConfState, me: u64) -> bool {
    cs.voters.contains(&me)
        || cs.learners.contains(&me)
        || cs.voters_outgoing.contains(&me)
        || cs.learners_next.contains(&me)
}

enum Waiter {
    Write(Vec<Reply<Vec<u8>>>),
    Conf(oneshot::Sender<Result<(), String>>),
}

impl Waiter {
    /// Tells everyone waiting on the entry that it did not give them a
    /// result (`err` says whether it may still have been applied).
    fn fail(self, err: ClusterError) {
        match self {
            Waiter::Write(txs) => {
                for tx in txs {
                    let _ = tx.send(Err(err.clone()));
                }
            }
            Waiter::Conf(tx) => {
                let _ = tx.send(Err(err.to_string()));
            }
        }
    }
}

struct Pending {
    index: u64,
    term: u64,
    waiter: Waiter,
}

/// One ReadIndex round: sent at `sent_us` (monotonic) in `term`, when the
/// leader's last index was `last`, for `waiters` (none for a round that
/// only renews the lease).
struct ReadRound {
    term: u64,
    sent_us: u64,
    last: u64,
    waiters: Vec<Reply<()>>,
}

pub(crate) struct GroupCore {
    pub id: u16,
    pub raw: RawNode<GroupStorage>,
    props: Vec<(Vec<u8>, Reply<Vec<u8>>)>,
    pending: VecDeque<Pending>,
    /// Writes to relay to the leader this iteration.
    relays: Vec<(Vec<u8>, Reply<Vec<u8>>)>,
    /// Relayed batches waiting for their entry to apply here, by `seq`.
    relayed: VecDeque<Relayed>,
    /// The next relayed batch's number.
    relay_seq: u64,
    /// Reads waiting for the relayed writes up to this `seq` (inclusive).
    relay_gates: Vec<(u64, Reply<()>)>,
    /// As leader: the highest relayed batch proposed in this term per
    /// (node, incarnation). A batch that arrives twice (a network that
    /// duplicates) or after a later one is not proposed again: it would
    /// apply twice. Only this term's leader proposes batches of this term,
    /// so its memory is enough.
    relay_seen: (u64, HashMap<(u64, u64), u64>),
    /// When this node last sent an empty relayed batch to flush out lost
    /// ones (µs, `Ctx::now_us`), see `RELAY_PROBE_US`.
    relay_fence_us: u64,
    reads_new: Vec<Reply<()>>,
    /// Reads sent for confirmation: ReadIndex context → the round.
    reads_sent: BTreeMap<u64, ReadRound>,
    /// Leader lease: reads are served without a round until this time
    /// (monotonic µs) in this term.
    lease: Option<(u64, u64)>,
    reads_ready: VecDeque<(u64, Vec<Reply<()>>)>,
    last_ts: u64,
    applied_term: u64,
    snapshot_index: Option<u64>,
    /// Quiesced: not ticked, sends nothing until something wakes it.
    quiet: bool,
    /// This node applied its own removal from the group: it retires the
    /// replica once it has applied everything committed (`Loop::retire`).
    retire: bool,
    /// The leader's hint that this node left at this configuration index,
    /// which this replica has not applied (`Input::Removed`).
    removed_at: Option<u64>,
    /// Index of the last configuration change applied (or of the snapshot
    /// that carried the configuration): sent in leaders' hints.
    conf_index: u64,
    /// Something happened to the group since the last tick (an input or
    /// a peer's message), so it is not idle.
    busy: bool,
    /// Ticks in a row this leader found the group idle.
    idle_ticks: usize,
}

impl GroupCore {
    /// The lease's end (monotonic µs) while it may serve reads: in the
    /// current term, with no leadership transfer under way (a transferee
    /// campaigns without waiting the lease out).
    fn lease_end(&self) -> Option<u64> {
        let term = self.raw.raft.term;
        self.lease
            .filter(|&(t, _)| t == term && self.raw.raft.lead_transferee.is_none())
            .map(|(_, until)| until)
    }

    pub fn new(id: u16, raw: RawNode<GroupStorage>, snapshot_index: Option<u64>) -> GroupCore {
        let applied_term = raw.store().snapshot_meta().term;
        GroupCore {
            id,
            raw,
            props: Vec::new(),
            pending: VecDeque::new(),
            relays: Vec::new(),
            relayed: VecDeque::new(),
            relay_seq: 1,
            relay_gates: Vec::new(),
            relay_seen: (0, HashMap::new()),
            relay_fence_us: 0,
            reads_new: Vec::new(),
            reads_sent: BTreeMap::new(),
            lease: None,
            reads_ready: VecDeque::new(),
            last_ts: 0,
            applied_term,
            snapshot_index,
            quiet: false,
            retire: false,
            removed_at: None,
            conf_index: snapshot_index.unwrap_or(0),
            busy: false,
            idle_ticks: 0,
        }
    }

    /// A leader whose group has nothing to do: every replica holds and
    /// has applied the whole log (as far as this leader knows: every
    /// replica acknowledged its last entry, which is committed and
    /// applied here), no request waits, no transfer or snapshot is under
    /// way.
    fn idle_leader(&self) -> bool {
        let r = &self.raw.raft;
        let last = r.raft_log.last_index();
        r.state == StateRole::Leader
            && r.lead_transferee.is_none()
            && r.raft_log.committed == last
            && r.raft_log.term(last).ok() == Some(r.term)
            && self.raw.store().applied == last
            && self.props.is_empty()
            && self.pending.is_empty()
            && self.relays.is_empty()
            && self.relayed.is_empty()
            && self.reads_new.is_empty()
            && self.reads_sent.is_empty()
            && self.reads_ready.is_empty()
            && r.prs().iter().all(|(_, p)| p.matched == last)
    }

    /// Every other replica of the group (voters and learners).
    fn peers(&self, me: u64) -> impl Iterator<Item = u64> + '_ {
        self.raw
            .raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(move |&id| id != me)
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Remembers who waits on the entry just proposed (the log's last).
    fn track(&mut self, waiter: Waiter) {
        self.pending.push_back(Pending {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
            waiter,
        });
    }
}

pub(crate) struct Loop {
    ctx: Arc<Ctx>,
    groups: Vec<GroupCore>,
    /// Group id → position in `groups`.
    pos: HashMap<u16, usize>,
    outbox: BTreeMap<u64, Vec<u8>>,
    /// (group position, peer) of snapshots sent this iteration.
    snaps_sent: Vec<(usize, u64)>,
    read_seq: u64,
    scratch: Vec<u8>,
    /// When a frame last left for each peer (monotonic µs).
    sent_at: HashMap<u64, u64>,
    /// Log operations for the next commit, in order: every log write of
    /// this loop goes through it, so truncations and purges stay ordered
    /// with the appends around them.
    log: LogBatch,
}

impl Loop {
    pub fn new(ctx: Arc<Ctx>, groups: Vec<GroupCore>) -> Loop {
        let pos = groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
        Loop {
            ctx,
            groups,
            pos,
            outbox: BTreeMap::new(),
            snaps_sent: Vec::new(),
            read_seq: 0,
            scratch: Vec::new(),
            sent_at: HashMap::new(),
            log: LogBatch::new(),
        }
    }

    /// Writes what `self.log` gathered and returns once it is durable (a
    /// batch of lazy values only: once written, or queued).
    fn commit_log(&mut self) -> std::io::Result<()> {
        let batch = std::mem::take(&mut self.log);
        if self.ctx.direct_log {
            return self.ctx.store.commit_now(batch);
        }
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        self.ctx.store.submit(
            batch,
            Box::new(move |r| {
                let _ = done_tx.send(r);
            }),
        );
        done_rx
            .recv()
            .map_err(|_| std::io::Error::other("log writer gone"))?
    }

    /// Runs until [`Input::Stop`], the inbox closing, or a storage error.
    pub fn run(mut self, rx: Receiver<Input>) {
        self.publish_all();
        self.wake_peers();
        let tick = self.ctx.tick;
        let mut next_tick = Instant::now() + tick;
        'outer: loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(i) => self.input(i),
                Err(RecvTimeoutError::Timeout) => {}
            }
            for _ in 0..DRAIN_MAX {
                match rx.try_recv() {
                    Ok(Input::Stop) => break 'outer,
                    Ok(i) => self.input(i),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick += tick;
                if next_tick < now {
                    next_tick = now + tick;
                }
            }
            if let Err(e) = self.iterate() {
                self.storage_failed(&e);
                break;
            }
        }
        self.fail_all();
    }

    /// The log or a snapshot file could not be written. The node can no
    /// longer keep a promise it made (a failed fsync may have dropped the
    /// dirty pages), so it stops: the process exits when
    /// `ctx.abort_on_storage_failure` (the server), and otherwise this
    /// loop's groups answer nothing more. A restart recovers from what is
    /// on disk.
    fn storage_failed(&mut self, e: &std::io::Error) {
        tracing::error!(error = %e, "raft log storage failed; stopping this node");
        self.ctx.failed.store(true, Relaxed);
        for v in self.ctx.views.iter() {
            *v.lock() = GroupView::default();
        }
        self.fail_all();
        if self.ctx.abort_on_storage_failure {
            eprintln!("cairn: raft log storage failed ({e}); exiting");
            std::process::exit(70);
        }
    }

    pub fn publish_all(&self) {
        for i in 0..self.groups.len() {
            self.publish(i);
        }
    }

    /// Advances the logical clock of every group that is not quiesced by
    /// one tick, quiesces the groups this node leads that stayed idle for
    /// an election timeout, wakes quiesced groups whose peers went
    /// silent, and keeps the peers of quiesced groups hearing from this
    /// node (one small frame per peer and heartbeat interval in place of
    /// every group's heartbeats). See docs/design/multiraft.md,
    /// "Quiescence".
    pub fn tick(&mut self) {
        let now = (self.ctx.now_us)();
        for i in 0..self.groups.len() {
            expire_relayed(&mut self.groups[i], now);
            self.relay_fence(i, now);
        }
        let tick_us = self.ctx.tick.as_micros() as u64;
        let me = self.ctx.me;
        let mut watch: BTreeSet<u64> = BTreeSet::new();
        let mut heartbeat_us = u64::MAX;
        for i in 0..self.groups.len() {
            let g = &self.groups[i];
            // Silence of an election timeout is what a ticking follower
            // would act on too.
            let dead_after = g.raw.raft.election_timeout() as u64 * tick_us;
            heartbeat_us = heartbeat_us.min(g.raw.raft.heartbeat_timeout() as u64 * tick_us);
            if g.quiet {
                let silent = if g.is_leader() {
                    g.peers(me)
                        .any(|p| !self.ctx.heard.alive(p, now, dead_after))
                } else {
                    !self.ctx.heard.alive(g.raw.raft.leader_id, now, dead_after)
                };
                if silent {
                    self.wake(i, false);
                } else {
                    watch.extend(self.groups[i].peers(me));
                    continue;
                }
            }
            let g = &mut self.groups[i];
            g.raw.tick();
            if !self.ctx.quiesce || g.busy || !g.idle_leader() {
                g.idle_ticks = 0;
                g.busy = false;
                continue;
            }
            g.idle_ticks += 1;
            let all_up = g
                .peers(me)
                .all(|p| self.ctx.heard.alive(p, now, dead_after));
            if g.idle_ticks >= g.raw.raft.election_timeout() && all_up {
                self.quiesce(i);
                watch.extend(self.groups[i].peers(me));
            }
        }
        for p in watch {
            let due = self
                .sent_at
                .get(&p)
                .is_none_or(|&t| now.saturating_sub(t) + tick_us / 2 >= heartbeat_us);
            if due {
                self.outbox.entry(p).or_insert_with(wire::empty_batch);
            }
        }
    }

    /// Quiesces group `i`, which this node leads and found idle: one
    /// last heartbeat (marked with `QUIESCE_CTX`) carries the commit
    /// index to every replica, which quiesces too if its log ends there.
    /// From now on neither side ticks: a proposal, a read, any other
    /// message of the group, or a peer falling silent wakes it.
    fn quiesce(&mut self, i: usize) {
        let me = self.ctx.me;
        let g = &mut self.groups[i];
        g.quiet = true;
        g.idle_ticks = 0;
        let (term, commit) = (g.raw.raft.term, g.raw.raft.raft_log.committed);
        let msgs: Vec<Message> = g
            .peers(me)
            .map(|to| {
                let mut m = Message {
                    to,
                    from: me,
                    term,
                    commit,
                    context: QUIESCE_CTX.to_vec(),
                    ..Default::default()
                };
                m.set_msg_type(MessageType::MsgHeartbeat);
                m
            })
            .collect();
        self.queue_messages(i, msgs);
        self.ctx.stats.quiesced.fetch_add(1, Relaxed);
        self.publish(i);
    }

    /// Wakes group `i` if it is quiesced. A follower woken by anything
    /// but its leader's message tells the leader, so the leader resumes
    /// heartbeats before this follower's election timeout runs out.
    fn wake(&mut self, i: usize, from_leader: bool) {
        let g = &mut self.groups[i];
        if !g.quiet {
            return;
        }
        g.quiet = false;
        g.idle_ticks = 0;
        if !from_leader {
            self.tell_leader(i);
        }
        self.ctx.stats.woken.fetch_add(1, Relaxed);
        self.publish(i);
    }

    /// A starting loop wakes its groups on every other node. A node that
    /// restarted quicker than a quiesced leader notices silence would
    /// otherwise hear nothing: its groups know no leader yet, and a
    /// volatile node's (rejoining empty, not a voter yet) never campaign.
    /// Cheap: one small message per group and peer, once.
    pub fn wake_peers(&mut self) {
        let me = self.ctx.me;
        let known: Vec<u64> = self.ctx.addrs.lock().keys().copied().collect();
        for i in 0..self.groups.len() {
            let g = &self.groups[i];
            let mut to: BTreeSet<u64> = g.peers(me).collect();
            to.extend(known.iter().copied().filter(|&p| p != me));
            let term = g.raw.raft.term;
            let msgs = to
                .into_iter()
                .map(|p| {
                    let mut m = Message {
                        to: p,
                        from: me,
                        term,
                        context: WAKE_CTX.to_vec(),
                        ..Default::default()
                    };
                    m.set_msg_type(MessageType::MsgHeartbeatResponse);
                    m
                })
                .collect();
            self.queue_messages(i, msgs);
        }
    }

    /// A follower asks its leader to wake the group: a heartbeat
    /// response marked `WAKE_CTX` (raft-rs ignores a context it has no
    /// read waiting on).
    fn tell_leader(&mut self, i: usize) {
        let me = self.ctx.me;
        let g = &self.groups[i];
        let leader = g.raw.raft.leader_id;
        if g.is_leader() || leader == 0 || leader == me {
            return;
        }
        let mut m = Message {
            to: leader,
            from: me,
            term: g.raw.raft.term,
            context: WAKE_CTX.to_vec(),
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgHeartbeatResponse);
        self.queue_messages(i, vec![m]);
    }

    /// After stepping a quiescing heartbeat: the follower quiesces if it
    /// follows that leader in that term and its log ends at the leader's
    /// commit index (nothing of its own to resolve); otherwise it stays
    /// awake and keeps the leader awake.
    fn quiesce_follower(&mut self, i: usize, from: u64, term: u64, commit: u64) {
        let g = &mut self.groups[i];
        let r = &g.raw.raft;
        let ok = self.ctx.quiesce
            && r.state == StateRole::Follower
            && r.leader_id == from
            && r.term == term
            && r.raft_log.last_index() == commit
            && r.raft_log.committed == commit;
        if !ok {
            if g.quiet {
                self.wake(i, false);
            } else {
                self.tell_leader(i);
            }
        } else if !g.quiet {
            g.quiet = true;
            g.idle_ticks = 0;
            self.publish(i);
        }
    }

    /// Why group `id` is (not) quiesced here, for the simulation's reports.
    #[cfg(feature = "sim")]
    pub fn quiet_state(&self, id: u16) -> String {
        let Some(&i) = self.pos.get(&id) else {
            return "no such group".into();
        };
        let g = &self.groups[i];
        let r = &g.raw.raft;
        let now = (self.ctx.now_us)();
        let peers: Vec<String> = g
            .peers(self.ctx.me)
            .map(|p| {
                let m = r.prs().get(p).map(|x| x.matched).unwrap_or(0);
                let up = self.ctx.heard.alive(p, now, 1_000_000);
                format!("n{p} matched {m} heard<1s {up}")
            })
            .collect();
        format!(
            "role {:?} quiet {} busy {} idle_ticks {} last {} committed {} applied {} \
             pending {:?} reads {}/{}/{} transferee {:?}; {}",
            r.state,
            g.quiet,
            g.busy,
            g.idle_ticks,
            r.raft_log.last_index(),
            r.raft_log.committed,
            g.raw.store().applied,
            g.pending
                .iter()
                .map(|p| format!("{}@{}", p.index, p.term))
                .collect::<Vec<_>>(),
            g.reads_new.len(),
            g.reads_sent.len(),
            g.reads_ready.len(),
            r.lead_transferee,
            peers.join(", ")
        )
    }

    /// Notes a frame from `peer` (the simulation; the server's transport
    /// notes frames as they arrive).
    #[cfg(feature = "sim")]
    pub fn heard(&self, peer: u64) {
        self.ctx.heard.note(peer, (self.ctx.now_us)());
    }

    /// One iteration after the inputs were taken: propose, ask for read
    /// confirmations, handle every Ready (one fsync), send.
    pub fn iterate(&mut self) -> std::io::Result<()> {
        for i in 0..self.groups.len() {
            self.flush_relays(i);
            self.flush_proposals(i);
            self.flush_reads(i);
        }
        self.process_readies()?;
        for i in 0..self.groups.len() {
            if self.groups[i].retire {
                self.retire(i)?;
            }
        }
        // Reads served under the lease need no Ready: answer those whose
        // index is applied already.
        for g in &mut self.groups {
            release_reads(g);
            release_relay_gates(g);
        }
        self.send_outbox();
        self.ctx.stats.iterations.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The groups' durable state, as a restart would find it (between
    /// iterations everything is persisted): for the simulation.
    #[cfg(feature = "sim")]
    pub fn groups(&self) -> impl Iterator<Item = &GroupCore> {
        self.groups.iter()
    }

    fn fail_all(&mut self) {
        for g in &mut self.groups {
            // Not proposed, or not confirmed: nothing was applied.
            for (_, tx) in g.props.drain(..) {
                let _ = tx.send(Err(ClusterError::NotLeader(None)));
            }
            for p in g.pending.drain(..) {
                p.waiter.fail(ClusterError::Unknown("node stopping".into()));
            }
            fail_relayed(g, ClusterError::Unknown("node stopping".into()));
            let reads = g
                .reads_new
                .drain(..)
                .chain(
                    std::mem::take(&mut g.reads_sent)
                        .into_values()
                        .flat_map(|r| r.waiters),
                )
                .chain(g.reads_ready.drain(..).flat_map(|(_, w)| w));
            for tx in reads {
                let _ = tx.send(Err(ClusterError::NotLeader(None)));
            }
        }
    }

    fn leader_of(&self, i: usize) -> Option<(u64, NodeInfo)> {
        let l = self.groups[i].raw.raft.leader_id;
        if l == 0 {
            return None;
        }
        let info = self.ctx.addrs.lock().get(&l).cloned().unwrap_or_default();
        Some((l, info))
    }

    pub fn input(&mut self, input: Input) {
        match input {
            Input::Propose { group, argv, tx } => match self.pos.get(&group) {
                Some(&i) => {
                    self.leader_wake(i);
                    self.groups[i].props.push((argv, tx));
                }
                None => {
                    let _ = tx.send(Err(ClusterError::Shutdown));
                }
            },
            Input::Relay { group, argv, tx } => match self.pos.get(&group) {
                Some(&i) => self.groups[i].relays.push((argv, tx)),
                None => {
                    let _ = tx.send(Err(ClusterError::NotLeader(None)));
                }
            },
            Input::RelayGate { group, tx } => match self.pos.get(&group) {
                Some(&i) => {
                    let g = &mut self.groups[i];
                    // Commands not flushed yet get `relay_seq` this iteration.
                    let upto = if g.relays.is_empty() {
                        g.relay_seq - 1
                    } else {
                        g.relay_seq
                    };
                    g.relay_gates.push((upto, tx));
                }
                None => {
                    let _ = tx.send(Ok(()));
                }
            },
            Input::Read { group, tx } => match self.pos.get(&group) {
                Some(&i) => {
                    self.leader_wake(i);
                    self.groups[i].reads_new.push(tx);
                }
                None => {
                    let _ = tx.send(Err(ClusterError::Shutdown));
                }
            },
            Input::Raft(msgs) => {
                for (group, mut m) in msgs {
                    let Some(&i) = self.pos.get(&group) else {
                        continue;
                    };
                    if m.to != self.ctx.me {
                        continue;
                    }
                    // Heartbeats and their responses neither keep a
                    // group busy nor wake it (a quiesced follower steps
                    // them without ticking) — except a follower's wake-up
                    // call; any other message does both.
                    let hb = m.msg_type == MessageType::MsgHeartbeat as i32;
                    let hb_resp = m.msg_type == MessageType::MsgHeartbeatResponse as i32;
                    let quiescing = hb && m.context == QUIESCE_CTX;
                    if !(hb || hb_resp) || m.context == WAKE_CTX {
                        let from_leader = m.from == self.groups[i].raw.raft.leader_id;
                        self.groups[i].busy = true;
                        self.wake(i, from_leader);
                    }
                    if hb_resp && m.context == WAKE_CTX {
                        // Only a wake-up call (its term may be anything: a
                        // restarted node's): never stepped.
                        continue;
                    }
                    if m.msg_type == MessageType::MsgPropose as i32 {
                        // A follower's relayed writes: proposed here with
                        // this leader's time, never stepped as they came.
                        self.relay_in(i, m);
                        continue;
                    }
                    let (from, term, commit) = (m.from, m.term, m.commit);
                    if let Some(reject) = lost_log_fixups(&mut self.groups[i].raw, &mut m) {
                        self.queue_messages(i, vec![reject]);
                    }
                    if let Err(e) = self.groups[i].raw.step(m) {
                        tracing::trace!(group, error = %e, "raft message not stepped");
                    }
                    if quiescing {
                        self.quiesce_follower(i, from, term, commit);
                    }
                }
            }
            Input::Conf { group, cc, tx } => {
                let Some(&i) = self.pos.get(&group) else {
                    let _ = tx.send(Err("refused: no such group".into()));
                    return;
                };
                self.leader_wake(i);
                let g = &mut self.groups[i];
                if !g.is_leader() {
                    let _ = tx.send(Err("not the leader".into()));
                    return;
                }
                let ctx = cc.context.clone();
                match g.raw.propose_conf_change(ctx, cc) {
                    Ok(()) => g.track(Waiter::Conf(tx)),
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            }
            Input::Transfer { group, to } => {
                if let Some(&i) = self.pos.get(&group) {
                    self.leader_wake(i);
                    let g = &mut self.groups[i];
                    if g.is_leader() && to != self.ctx.me {
                        g.raw.transfer_leader(to);
                        // The transferee campaigns without waiting out the
                        // lease: no read may skip the loop from now on.
                        self.publish(i);
                    }
                }
            }
            Input::Snapshot { group } => {
                if let Some(&i) = self.pos.get(&group) {
                    if let Err(e) = self.take_snapshot(i) {
                        tracing::warn!(group, error = %e, "snapshot failed");
                    }
                }
            }
            Input::Removed { group, conf_index } => {
                if let Some(&i) = self.pos.get(&group) {
                    let g = &mut self.groups[i];
                    if conf_index > g.raw.store().applied && !g.is_leader() {
                        g.removed_at = Some(conf_index);
                        g.retire = true;
                    }
                }
            }
            Input::Progress { group, tx } => {
                let r = self.pos.get(&group).and_then(|&i| {
                    let g = &self.groups[i];
                    g.is_leader().then(|| {
                        let m = g
                            .raw
                            .raft
                            .prs()
                            .iter()
                            .map(|(id, p)| (*id, p.matched))
                            .collect();
                        (g.raw.raft.raft_log.last_index(), m)
                    })
                });
                let _ = tx.send(r);
            }
            Input::Stop => {}
        }
    }

    /// A request for group `i` arrived: a leader wakes it (a follower
    /// answers "not the leader" and stays as it is).
    fn leader_wake(&mut self, i: usize) {
        if self.groups[i].is_leader() {
            self.groups[i].busy = true;
            self.wake(i, true);
        }
    }

    /// Proposes the commands gathered for group `i` since the last
    /// iteration, as few entries as the batch bounds allow.
    /// Sends this iteration's relayed writes of group `i` to its leader
    /// as one tagged entry (a `MsgPropose` in the next frame to it); as
    /// the leader, proposes them itself.
    fn flush_relays(&mut self, i: usize) {
        if self.groups[i].relays.is_empty() {
            return;
        }
        let relays = std::mem::take(&mut self.groups[i].relays);
        let me = self.ctx.me;
        let g = &mut self.groups[i];
        if g.is_leader() {
            g.props.extend(relays);
            return;
        }
        let leader = g.raw.raft.leader_id;
        if leader == 0 || leader == me {
            for (_, tx) in relays {
                let _ = tx.send(Err(ClusterError::NotLeader(None)));
            }
            return;
        }
        if g.relayed.len() >= RELAYED_MAX {
            for (_, tx) in relays {
                let _ = tx.send(Err(ClusterError::NoQuorum(
                    "too many relayed writes waiting".into(),
                )));
            }
            return;
        }
        self.send_relayed(i, leader, relays);
    }

    /// When the oldest batch this node relayed to group `i` has waited
    /// `RELAY_PROBE_US` (and no probe went out since), relays an empty
    /// batch: once it applies, every earlier batch of its term that has
    /// not applied is known never to (a connection that broke lost it,
    /// or the leader could not propose it) and its writers retry. A
    /// leader that is gone does not answer either; a new term settles
    /// those batches instead.
    fn relay_fence(&mut self, i: usize, now: u64) {
        let me = self.ctx.me;
        let g = &mut self.groups[i];
        let Some(oldest) = g.relayed.front() else {
            return;
        };
        if now.saturating_sub(oldest.sent_us) < RELAY_PROBE_US
            || now.saturating_sub(g.relay_fence_us) < RELAY_PROBE_US
            || g.is_leader()
        {
            return;
        }
        let leader = g.raw.raft.leader_id;
        if leader == 0 || leader == me {
            return;
        }
        g.relay_fence_us = now;
        self.ctx.stats.relay_fences.fetch_add(1, Relaxed);
        self.send_relayed(i, leader, Vec::new());
    }

    /// Sends `relays` (possibly none: a probe) to `leader` as one tagged
    /// entry, remembered in `relayed` unless empty.
    fn send_relayed(&mut self, i: usize, leader: u64, relays: Vec<(Vec<u8>, Reply<Vec<u8>>)>) {
        let me = self.ctx.me;
        let g = &mut self.groups[i];
        let term = g.raw.raft.term;
        let seq = g.relay_seq;
        g.relay_seq += 1;
        let mut data = Vec::new();
        let mut txs = Vec::with_capacity(relays.len());
        for (argv, tx) in relays {
            data.extend_from_slice(&argv);
            txs.push(tx);
        }
        let tag = RelayTag {
            incarnation: self.ctx.incarnation,
            node: me,
            seq,
            term,
        };
        let entry = Entry {
            data,
            context: tag.encode(),
            ..Default::default()
        };
        let m = Message {
            msg_type: MessageType::MsgPropose as i32,
            to: leader,
            from: me,
            entries: vec![entry],
            ..Default::default()
        };
        if !txs.is_empty() {
            g.relayed.push_back(Relayed {
                seq,
                term,
                txs,
                sent_us: (self.ctx.now_us)(),
            });
        }
        self.queue_messages(i, vec![m]);
    }

    /// A follower's relayed writes reach the leader: each entry is
    /// proposed with this leader's time and the follower's tag, if the
    /// follower sent it in this leader's term (else it is dropped: the
    /// follower finds out when it applies an entry of a later term, and
    /// retries — nothing of it can ever apply).
    fn relay_in(&mut self, i: usize, m: Message) {
        let g = &mut self.groups[i];
        if !g.is_leader() {
            return;
        }
        let term = g.raw.raft.term;
        for e in m.entries.iter() {
            let Some(tag) = RelayTag::decode(&e.context) else {
                continue;
            };
            if tag.term != term || tag.node != m.from {
                continue;
            }
            if g.relay_seen.0 != term {
                g.relay_seen = (term, HashMap::new());
            }
            let last = g
                .relay_seen
                .1
                .entry((tag.node, tag.incarnation))
                .or_insert(0);
            if tag.seq <= *last {
                continue;
            }
            *last = tag.seq;
            let ts = (self.ctx.clock)()
                .max(g.last_ts)
                .max(g.raw.store().applied_ts);
            g.last_ts = ts;
            let mut data = Vec::with_capacity(e.data.len() + 9);
            wire::entry_header(&mut data, ts);
            data.extend_from_slice(&e.data);
            if g.raw.propose(e.context.to_vec(), data).is_ok() {
                self.ctx.stats.batches.fetch_add(1, Relaxed);
            }
        }
        self.leader_wake(i);
    }

    fn flush_proposals(&mut self, i: usize) {
        if self.groups[i].props.is_empty() {
            return;
        }
        let props = std::mem::take(&mut self.groups[i].props);
        if !self.groups[i].is_leader() {
            let leader = self.leader_of(i);
            for (_, tx) in props {
                let _ = tx.send(Err(ClusterError::NotLeader(leader.clone())));
            }
            return;
        }
        let g = &mut self.groups[i];
        let ts = (self.ctx.clock)()
            .max(g.last_ts)
            .max(g.raw.store().applied_ts);
        g.last_ts = ts;
        let mut it = props.into_iter().peekable();
        while it.peek().is_some() {
            let mut data = Vec::new();
            wire::entry_header(&mut data, ts);
            let mut txs = Vec::new();
            while let Some((argv, tx)) = it.next_if(|_| true) {
                data.extend_from_slice(&argv);
                txs.push(tx);
                if txs.len() >= BATCH_CMDS || data.len() >= BATCH_BYTES {
                    break;
                }
            }
            let n = txs.len() as u64;
            match g.raw.propose(Vec::new(), data) {
                Ok(()) => {
                    g.track(Waiter::Write(txs));
                    self.ctx.stats.writes.fetch_add(n, Relaxed);
                    self.ctx.stats.batches.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    // Dropped (leadership being transferred, or too many
                    // uncommitted bytes): nothing was appended.
                    for tx in txs {
                        let _ = tx.send(Err(ClusterError::NotLeader(None)));
                    }
                }
            }
        }
    }

    /// One ReadIndex round for every read that arrived since the last one.
    fn flush_reads(&mut self, i: usize) {
        if self.groups[i].reads_new.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.groups[i].reads_new);
        if !self.groups[i].is_leader() {
            let leader = self.leader_of(i);
            for tx in reads {
                let _ = tx.send(Err(ClusterError::NotLeader(leader.clone())));
            }
            return;
        }
        let g = &mut self.groups[i];
        if g.raw.raft.raft_log.term(g.raw.raft.raft_log.committed).ok() != Some(g.raw.raft.term) {
            // A new leader that has not committed an entry of its term
            // yet (the empty one it appended when elected): raft-rs drops
            // a ReadIndex request then, so the reads wait here for it.
            g.reads_new = reads;
            return;
        }
        let now = (self.ctx.now_us)();
        // A read waits for the writes proposed before it on this leader
        // too (a pipeline's SET k then GET k): raft-rs' read index is the
        // commit index, which may not include them yet.
        let last = g.raw.raft.raft_log.last_index();
        let term = g.raw.raft.term;
        let lease_ok = g.lease_end().is_some_and(|until| now < until)
            && g.raw.raft.raft_log.term(g.raw.raft.raft_log.committed).ok() == Some(term);
        if lease_ok {
            self.ctx
                .stats
                .lease_reads
                .fetch_add(reads.len() as u64, Relaxed);
            let committed = g.raw.raft.raft_log.committed;
            g.reads_ready.push_back((committed.max(last), reads));
            // Renew the lease in the background once half of it is gone.
            let half = g
                .lease
                .is_some_and(|(_, until)| until.saturating_sub(now) < self.ctx.lease_us / 2);
            if half && g.reads_sent.is_empty() {
                self.read_round(i, now, Vec::new());
            }
            return;
        }
        self.ctx
            .stats
            .index_reads
            .fetch_add(reads.len() as u64, Relaxed);
        self.read_round(i, now, reads);
    }

    /// Starts one ReadIndex round for `waiters` (none: a lease renewal).
    fn read_round(&mut self, i: usize, now_us: u64, waiters: Vec<Reply<()>>) {
        self.read_seq += 1;
        let seq = self.read_seq;
        let g = &mut self.groups[i];
        let round = ReadRound {
            term: g.raw.raft.term,
            sent_us: now_us,
            last: g.raw.raft.raft_log.last_index(),
            waiters,
        };
        g.reads_sent.insert(seq, round);
        g.raw.read_index(seq.to_le_bytes().to_vec());
    }

    fn queue_messages(&mut self, i: usize, mut msgs: Vec<Message>) {
        drop_superseded(&mut msgs);
        let group = self.groups[i].id;
        self.ctx
            .stats
            .messages_sent
            .fetch_add(msgs.len() as u64, Relaxed);
        for m in msgs {
            if m.msg_type == MessageType::MsgSnapshot as i32 {
                self.snaps_sent.push((i, m.to));
            }
            let buf = self.outbox.entry(m.to).or_default();
            wire::put_message(buf, group, &m);
        }
    }

    fn send_outbox(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        let mut failed = Vec::new();
        for (to, batch) in outbox {
            let addr = self
                .ctx
                .addrs
                .lock()
                .get(&to)
                .map(|n| n.peer.clone())
                .unwrap_or_default();
            if self.ctx.net.send(to, &addr, &batch) {
                self.ctx.stats.frames_sent.fetch_add(1, Relaxed);
                self.sent_at.insert(to, (self.ctx.now_us)());
            } else {
                failed.push(to);
            }
        }
        for (i, to) in std::mem::take(&mut self.snaps_sent) {
            let status = if failed.contains(&to) {
                SnapshotStatus::Failure
            } else {
                SnapshotStatus::Finish
            };
            self.groups[i].raw.report_snapshot(to, status);
        }
        for to in failed {
            for g in &mut self.groups {
                if g.is_leader() {
                    g.raw.report_unreachable(to);
                }
            }
        }
    }

    /// Handles every group's Ready: sends, restores, applies, persists
    /// with one fsync, then advances each group.
    fn process_readies(&mut self) -> std::io::Result<()> {
        // Every group's entries and hard states of this iteration go to the
        // log as one batch (`self.log`): one write, one fdatasync.
        let mut staged = Vec::new();
        let mut to_apply = Vec::new();
        for i in 0..self.groups.len() {
            if !self.groups[i].raw.has_ready() {
                continue;
            }
            let mut rd = self.groups[i].raw.ready();
            if let Some(ss) = rd.ss() {
                if ss.raft_state != StateRole::Leader {
                    self.lost_leadership(i);
                }
            }
            let msgs = rd.take_messages();
            self.queue_messages(i, msgs);
            if !rd.snapshot().is_empty() {
                self.restore(i, rd.snapshot().clone())?;
            }
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((i, committed));
            }
            let group = self.groups[i].id;
            if !rd.entries().is_empty() {
                let ents: Vec<(u64, Bytes)> = rd
                    .entries()
                    .iter()
                    .map(|e| (e.index, Bytes::from(encode_entry(e))))
                    .collect();
                self.groups[i].raw.mut_store().append(rd.entries());
                self.log.append(group, ents);
            }
            if let Some(hs) = rd.hs() {
                let prev = &self.groups[i].raw.store().hs;
                // Only term and vote must be durable before anything is
                // sent; a commit-only change rides along with the next
                // fsync (Raft re-learns a lost commit point from the
                // leader), which saves an fsync per iteration whose only
                // news is acknowledgements.
                let lazy = hs.term == prev.term && hs.vote == prev.vote;
                let value = Bytes::from(encode_hard_state(hs));
                self.groups[i].raw.mut_store().hs = hs.clone();
                if lazy {
                    self.log.save_meta_lazy(group, MetaKey::Vote, value);
                } else {
                    self.log.save_meta(group, MetaKey::Vote, value);
                }
            }
            for rs in rd.take_read_states() {
                let mut seq = [0u8; 8];
                if rs.request_ctx.len() == 8 {
                    seq.copy_from_slice(&rs.request_ctx);
                }
                let g = &mut self.groups[i];
                if let Some(r) = g.reads_sent.remove(&u64::from_le_bytes(seq)) {
                    // A quorum heard from this leader after `sent_us`: none
                    // of them votes for another before an election timeout
                    // (check-quorum), so no other leader exists before the
                    // lease ends.
                    if r.term == g.raw.raft.term && self.ctx.lease_us > 0 {
                        let until = r.sent_us + self.ctx.lease_us;
                        if g.lease.is_none_or(|(t, u)| t != r.term || u < until) {
                            g.lease = Some((r.term, until));
                        }
                    }
                    if !r.waiters.is_empty() {
                        g.reads_ready.push_back((rs.index.max(r.last), r.waiters));
                    }
                }
            }
            staged.push((i, rd));
        }
        // Every group's committed entries of this iteration, their keys
        // looked up all at once first (the cache misses overlap), then
        // applied group by group.
        self.prefetch_keys(&to_apply);
        for (i, committed) in to_apply {
            self.apply(i, committed);
        }
        // A leader's appends need not wait for its own fsync (raft-rs
        // counts its log in the commit only once persisted): send them
        // now, so followers write while this node does. Messages that
        // depend on this write (votes, append acknowledgements) are the
        // persisted ones, queued below after the fsync.
        if self.log.is_waited() {
            self.send_outbox();
        }
        self.commit_log()?;
        for (i, mut rd) in staged {
            let msgs = rd.take_persisted_messages();
            self.queue_messages(i, msgs);
            let mut light = self.groups[i].raw.advance_append(rd);
            if let Some(c) = light.commit_index() {
                self.groups[i].raw.mut_store().hs.commit = c;
            }
            let msgs = light.take_messages();
            self.queue_messages(i, msgs);
            let committed = light.take_committed_entries();
            self.apply(i, committed);
            let g = &mut self.groups[i];
            let applied = g.raw.store().applied;
            g.raw.advance_apply_to(applied);
            release_reads(g);
            fail_overwritten(g);
            let since = applied.saturating_sub(g.snapshot_index.unwrap_or(0));
            if since >= self.ctx.snapshot_logs {
                if let Err(e) = self.take_snapshot(i) {
                    tracing::warn!(group = self.groups[i].id, error = %e, "snapshot failed");
                }
            }
            self.publish(i);
        }
        Ok(())
    }

    /// The group's node stopped leading: reads not yet confirmed will
    /// never be (confirmed ones still complete once applied).
    fn lost_leadership(&mut self, i: usize) {
        let leader = self.leader_of(i);
        let g = &mut self.groups[i];
        g.lease = None;
        for tx in std::mem::take(&mut g.reads_sent)
            .into_values()
            .flat_map(|r| r.waiters)
        {
            let _ = tx.send(Err(ClusterError::NotLeader(leader.clone())));
        }
    }

    /// Tells the host which keys the entries are about to write (a hint).
    fn prefetch_keys(&self, batches: &[(usize, Vec<Entry>)]) {
        hinted_keys(batches, PREFETCH_KEYS, |i, keys| {
            self.ctx.host.prefetch(self.groups[i].id, keys);
        });
    }

    /// Applies committed entries of group `i` in order and answers the
    /// requests waiting on them.
    fn apply(&mut self, i: usize, entries: Vec<Entry>) {
        let host = self.ctx.host.clone();
        for e in entries {
            let g = &mut self.groups[i];
            if e.index <= g.raw.store().applied {
                continue;
            }
            // A batch this node relayed: answered here, from this apply.
            let mine = RelayTag::decode(&e.context)
                .filter(|t| t.node == self.ctx.me && t.incarnation == self.ctx.incarnation);
            let relayed = mine.and_then(|t| {
                g.relayed
                    .iter()
                    .position(|r| r.seq == t.seq && r.term == e.term)
            });
            let waiting =
                relayed.is_some() || g.pending.front().is_some_and(|p| p.index == e.index);
            let mut replies: Vec<Vec<u8>> = Vec::new();
            let mut conf_ok = false;
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => match wire::decode_entry_data(&e.data) {
                    Ok((ts, cmds)) => {
                        let ts = ts.max(g.raw.store().applied_ts);
                        g.raw.mut_store().applied_ts = ts;
                        let group = g.id;
                        let scratch = &mut self.scratch;
                        let mut position = 0u32;
                        let r = decode_argvs(cmds, |argv| {
                            scratch.clear();
                            let at = Stamp {
                                index: e.index,
                                ts_ms: ts,
                                position,
                            };
                            position = position.saturating_add(1);
                            host.apply(group, at, argv, scratch);
                            if waiting {
                                replies.push(scratch.clone());
                            }
                        });
                        if let Err(err) = r {
                            // Checksummed on disk and on the wire: only a
                            // bug gets here; every replica skips the same.
                            tracing::error!(group, error = err, "undecodable log entry");
                        }
                    }
                    Err(err) => {
                        tracing::error!(group = g.id, error = %err, "undecodable log entry")
                    }
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let cc: Result<ConfChangeV2, String> =
                        if e.get_entry_type() == EntryType::EntryConfChange {
                            ConfChange::decode(&e.data[..])
                                .map(|c| ConfChangeV2 {
                                    changes: vec![ConfChangeSingle {
                                        change_type: c.change_type,
                                        node_id: c.node_id,
                                    }],
                                    context: c.context,
                                    ..Default::default()
                                })
                                .map_err(|x| x.to_string())
                        } else {
                            ConfChangeV2::decode(&e.data[..]).map_err(|x| x.to_string())
                        };
                    match cc {
                        Ok(cc) => {
                            learn_address(&self.ctx, &cc);
                            match g.raw.apply_conf_change(&cc) {
                                Ok(cs) => {
                                    g.retire = !in_conf(&cs, g.raw.raft.id);
                                    g.raw.mut_store().cs = cs;
                                    g.conf_index = e.index;
                                    conf_ok = true;
                                }
                                Err(err) => {
                                    tracing::warn!(group = g.id, error = %err, "conf change refused")
                                }
                            }
                        }
                        Err(err) => {
                            tracing::error!(group = g.id, error = %err, "undecodable conf change")
                        }
                    }
                }
            }
            g.raw.mut_store().applied = e.index;
            g.applied_term = e.term;
            if let Some(r) = relayed.and_then(|at| g.relayed.remove(at)) {
                let mut rs = std::mem::take(&mut replies).into_iter();
                for tx in r.txs {
                    let r = rs
                        .next()
                        .ok_or_else(|| ClusterError::Unknown("reply missing".into()));
                    let _ = tx.send(r);
                }
            }
            // A batch relayed in an earlier term that has not applied by
            // now never will: its leader proposed it in that term, and this
            // entry of a later term follows everything of it in the log.
            // Nor will one this node relayed earlier in this term: the
            // leader proposes a node's batches in the order of their
            // numbers and drops any that arrives after a later one.
            let lost = |r: &Relayed| {
                r.term < e.term || mine.is_some_and(|t| r.term == e.term && r.seq < t.seq)
            };
            while let Some(at) = g.relayed.iter().position(lost) {
                if let Some(r) = g.relayed.remove(at) {
                    for tx in r.txs {
                        let _ = tx.send(Err(ClusterError::NotLeader(None)));
                    }
                }
            }
            // Answer the requests of this index; earlier ones cannot be
            // pending any more (applies are in order).
            while let Some(p) = g.pending.front() {
                if p.index > e.index {
                    break;
                }
                let Some(p) = g.pending.pop_front() else {
                    break;
                };
                let mine = p.index == e.index && p.term == e.term;
                match p.waiter {
                    Waiter::Write(txs) => {
                        if mine {
                            let mut rs = std::mem::take(&mut replies).into_iter();
                            for tx in txs {
                                let r = rs
                                    .next()
                                    .ok_or_else(|| ClusterError::Unknown("reply missing".into()));
                                let _ = tx.send(r);
                            }
                        } else {
                            // Another entry took its place: never applied.
                            Waiter::Write(txs).fail(ClusterError::NotLeader(None));
                        }
                    }
                    Waiter::Conf(tx) => {
                        let r = if mine && conf_ok {
                            Ok(())
                        } else if mine {
                            Err("another membership change is in progress".into())
                        } else {
                            Err("leadership changed; retry".into())
                        };
                        let _ = tx.send(r);
                    }
                }
            }
        }
    }

    /// Installs a snapshot a leader sent: keyspace, file, memory log, log
    /// store. Requests waiting on entries it covers have unknown fates.
    fn restore(&mut self, i: usize, snap: Snapshot) -> std::io::Result<()> {
        let meta = snap.metadata.clone().unwrap_or_default();
        let g = &mut self.groups[i];
        let bad = |e: String| std::io::Error::other(format!("group {}: bad snapshot: {e}", g.id));
        let (ts, keyspace) = snapfile::split_payload(&snap.data).map_err(|e| bad(e.to_string()))?;
        self.ctx.host.restore(g.id, keyspace).map_err(bad)?;
        if let Some(dir) = &self.ctx.snap_dir {
            snapfile::write(
                &dir.join(format!("g{}.snap", g.id)),
                &SnapshotMeta::from_raft(&meta),
                &snap.data,
            )?;
        }
        g.raw.mut_store().apply_snapshot(&meta);
        g.raw.mut_store().applied_ts = ts;
        g.conf_index = meta.index;
        g.applied_term = meta.term;
        g.snapshot_index = Some(meta.index);
        self.log.purge(g.id, meta.index, Bytes::new());
        self.log.truncate(g.id, meta.index + 1);
        while g.pending.front().is_some_and(|p| p.index <= meta.index) {
            if let Some(p) = g.pending.pop_front() {
                p.waiter
                    .fail(ClusterError::Unknown("replaced by a snapshot".into()));
            }
        }
        // Relayed writes the snapshot may cover: never answered by an apply.
        fail_relayed(g, ClusterError::Unknown("replaced by a snapshot".into()));
        Ok(())
    }

    /// Group `i`'s replica here was removed (docs/design/sharding.md,
    /// step 6): once everything committed is applied and this node is
    /// still out of the configuration (a later entry may add it back),
    /// its log, keyspace and snapshot go, leaving a tombstone: the hard
    /// state's term and vote (a replica added back must not vote twice in
    /// a term), commit 0, no entries, an empty snapshot at index 0 with
    /// the configuration it left. The `RawNode` is built again on that
    /// (raft-rs cannot rewind one). Added back later, it has match 0 and
    /// is sent the leader's snapshot. Order for crashes: the snapshot file
    /// says index 0 first; recovery drops whatever entries a crash left
    /// beside such a file (`node::recover_group`).
    fn retire(&mut self, i: usize) -> std::io::Result<()> {
        let g = &mut self.groups[i];
        let me = g.raw.raft.id;
        let s = g.raw.store();
        // Told by the leader (a removal this replica never applied): as
        // long as it still has not applied that far, and does not lead.
        let told = g
            .removed_at
            .is_some_and(|at| at > s.applied && !g.is_leader());
        if !told {
            g.removed_at = None;
            if in_conf(&s.cs, me) {
                g.retire = false;
                return Ok(());
            }
            if s.applied < s.hs.commit {
                return Ok(());
            }
        }
        // The tombstone's configuration never lists this node: told by a
        // hint, its own (stale) configuration still does, and a tombstone
        // that lists it would count as a hosted replica (served READONLY
        // reads and routed by its own empty view instead of the leaders'
        // hints) and be told to retire again at every hint.
        let (id, mut cs) = (g.id, s.cs.clone());
        for ids in [
            &mut cs.voters,
            &mut cs.learners,
            &mut cs.voters_outgoing,
            &mut cs.learners_next,
        ] {
            ids.retain(|&x| x != me);
        }
        let hs = HardState {
            term: g.raw.raft.term,
            vote: g.raw.raft.vote,
            commit: 0,
        };
        tracing::info!(group = id, "this node left the group: dropping its replica");
        self.ctx.host.clear(id);
        let meta = SnapshotMetadata {
            conf_state: Some(cs.clone()),
            index: 0,
            term: 0,
        };
        if let Some(dir) = &self.ctx.snap_dir {
            let data = snapfile::payload(0, &self.ctx.host.snapshot(id));
            snapfile::write(
                &dir.join(format!("g{id}.snap")),
                &SnapshotMeta::from_raft(&meta),
                &data,
            )?;
        }
        self.log.truncate(id, 0);
        self.log
            .save_meta(id, MetaKey::Vote, Bytes::from(encode_hard_state(&hs)));
        let throttle = g.raw.store().throttle.clone();
        self.commit_log()?;
        let mut st = GroupStorage::new(id, self.ctx.host.clone());
        st.throttle = throttle;
        st.apply_snapshot(&meta);
        st.hs = hs;
        let mut rc = self.ctx.raft_cfg.clone();
        rc.applied = 0;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw =
            RawNode::new(&rc, st, &logger).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut old = std::mem::replace(&mut self.groups[i], GroupCore::new(id, raw, Some(0)));
        fail_relayed(
            &mut old,
            ClusterError::Unknown("this node left the group".into()),
        );
        for (_, tx) in old.props {
            let _ = tx.send(Err(ClusterError::NotLeader(None)));
        }
        for p in old.pending {
            p.waiter.fail(ClusterError::NotLeader(None));
        }
        for tx in old.reads_new {
            let _ = tx.send(Err(ClusterError::NotLeader(None)));
        }
        for (_, r) in old.reads_sent {
            for tx in r.waiters {
                let _ = tx.send(Err(ClusterError::NotLeader(None)));
            }
        }
        for (_, waiters) in old.reads_ready {
            for tx in waiters {
                let _ = tx.send(Err(ClusterError::NotLeader(None)));
            }
        }
        self.publish(i);
        Ok(())
    }

    /// Writes group `i`'s keyspace at its applied index to its snapshot
    /// file and compacts the log below it.
    fn take_snapshot(&mut self, i: usize) -> std::io::Result<()> {
        let g = &mut self.groups[i];
        let meta = g.raw.store().snapshot_meta();
        if let Some(dir) = &self.ctx.snap_dir {
            let data = snapfile::payload(g.raw.store().applied_ts, &self.ctx.host.snapshot(g.id));
            snapfile::write(
                &dir.join(format!("g{}.snap", g.id)),
                &SnapshotMeta::from_raft(&meta),
                &data,
            )?;
        }
        g.snapshot_index = Some(meta.index);
        let upto = meta.index.saturating_sub(KEEP_BELOW_SNAPSHOT);
        if upto > g.raw.store().base.0 {
            g.raw.mut_store().compact(upto);
            self.log.purge(g.id, upto, Bytes::new());
        }
        Ok(())
    }

    /// Updates the group's published view (called after every Ready: the
    /// member lists are copied only when they changed).
    fn publish(&self, i: usize) {
        let g = &self.groups[i];
        let s = g.raw.store();
        let Some(slot) = self.ctx.views.get(g.id as usize) else {
            return;
        };
        let mut v = slot.lock();
        let me = g.raw.raft.id;
        let hosted = s.cs.voters.contains(&me) || s.cs.learners.contains(&me);
        if v.leader != g.raw.raft.leader_id || v.term != g.raw.raft.term || v.hosted != hosted {
            v.leader = g.raw.raft.leader_id;
            v.term = g.raw.raft.term;
            v.hosted = hosted;
            v.moved.notify_waiters();
        }
        v.role_leader = g.is_leader();
        v.quiet = g.quiet;
        if v.voters != s.cs.voters {
            v.voters.clone_from(&s.cs.voters);
        }
        if v.learners != s.cs.learners {
            v.learners.clone_from(&s.cs.learners);
        }
        v.applied = s.applied;
        v.applied_term = g.applied_term;
        // Reads outside the loop also need everything an earlier leader
        // acknowledged applied here: an applied entry of this term.
        v.lease_until_us = g
            .lease_end()
            .filter(|_| g.is_leader() && g.applied_term == g.raw.raft.term)
            .unwrap_or(0);
        v.last_index = s.last_index();
        v.first_index = s.first_index();
        v.snapshot_index = g.snapshot_index;
        v.conf_index = g.conf_index;
    }
}

/// A volatile node that restarted has lost the log it once acknowledged
/// (Raft assumes it cannot). Two adjustments keep raft-rs' assertions and
/// let it catch up by snapshot; neither can trigger while logs are durable:
/// - follower: a heartbeat's commit beyond the local log (the leader
///   still believes the old match: it only ever sends min(match, commit))
///   is cut to the log's end — what is there came from a snapshot, so it
///   is committed — and answered, besides, with the append reject returned
///   here: a leader that believes the follower holds its whole log sends
///   no append that could be rejected, so without it nothing would move;
/// - leader: a follower that rejects an append with a last index below
///   what it had acknowledged is probed again from scratch (raft-rs
///   would ignore the reject as stale and resend the same entries forever).
fn lost_log_fixups(raw: &mut RawNode<GroupStorage>, m: &mut Message) -> Option<Message> {
    if m.msg_type == MessageType::MsgHeartbeat as i32 {
        let last = raw.store().last_index();
        if m.commit <= last {
            return None;
        }
        let beyond = std::mem::replace(&mut m.commit, last);
        if m.term >= raw.raft.term {
            let mut reject = Message {
                to: m.from,
                from: m.to,
                term: m.term,
                index: beyond,
                reject: true,
                reject_hint: last,
                log_term: raw.raft.raft_log.term(last).unwrap_or(0),
                ..Default::default()
            };
            reject.set_msg_type(MessageType::MsgAppendResponse);
            return Some(reject);
        }
    } else if m.msg_type == MessageType::MsgAppendResponse as i32
        && m.reject
        && raw.raft.state == StateRole::Leader
        && m.term == raw.raft.term
    {
        if let Some(pr) = raw.raft.mut_prs().get_mut(m.from) {
            if m.reject_hint < pr.matched {
                tracing::warn!(
                    node = m.from,
                    had = pr.matched,
                    has = m.reject_hint,
                    "a replica lost entries it had acknowledged (volatile restart); resending"
                );
                pr.matched = 0;
                pr.become_probe();
            }
        }
    }
    None
}

/// Fails the writes waiting on entries that can no longer commit: the
/// commit index `c` is below the entry's index and the entry at `c` has
/// a later term. Every future leader holds that committed entry, and
/// terms never decrease along a log, so none of them can hold the
/// waiting entry after it. (This happens when a deposed leader's log was
/// cut back below an entry it proposed; without it the writer would wait
/// until that index is reused, in an idle group never.)
fn fail_overwritten(g: &mut GroupCore) {
    let c = g.raw.raft.raft_log.committed;
    let Ok(tc) = g.raw.raft.raft_log.term(c) else {
        return;
    };
    while g.pending.back().is_some_and(|p| p.index > c && p.term < tc) {
        if let Some(p) = g.pending.pop_back() {
            p.waiter.fail(ClusterError::NotLeader(None));
        }
    }
}

/// Calls `f(group index, keys)` with the keys the batches' normal entries
/// are about to write (each command's first argument), in order, at most
/// `budget` keys in all: a follower catching up applies thousands of
/// entries in one iteration, and lines fetched that far ahead are evicted
/// before apply reaches them (a steady write load applies ~140).
fn hinted_keys<'a>(
    batches: &'a [(usize, Vec<Entry>)],
    mut budget: usize,
    mut f: impl FnMut(usize, &[&'a [u8]]),
) {
    let mut keys: Vec<&'a [u8]> = Vec::new();
    for (i, entries) in batches {
        if budget == 0 {
            return;
        }
        keys.clear();
        for e in entries {
            if keys.len() >= budget {
                break;
            }
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            if let Ok((_, cmds)) = wire::decode_entry_data(&e.data) {
                let _ = decode_argvs(cmds, |argv| {
                    if let Some(k) = argv.get(1) {
                        keys.push(k);
                    }
                });
            }
        }
        keys.truncate(budget);
        if !keys.is_empty() {
            f(*i, &keys);
        }
        budget -= keys.len();
    }
}

/// Relayed batches waiting per group at most (then writes are refused
/// as retryable until some are answered).
const RELAYED_MAX: usize = 4096;

/// How long a relayed batch waits for its entry before its writers are
/// told the outcome is unknown (the client side gives up at the same
/// time; this frees the loop's memory).
const RELAY_TIMEOUT_US: u64 = 10_000_000;

/// A relayed batch not applied after this long draws an empty relayed
/// batch behind it (`relay_fence`): normally a batch applies within one
/// commit round.
const RELAY_PROBE_US: u64 = 400_000;

/// One batch of writes this node relayed to a group's leader.
struct Relayed {
    seq: u64,
    /// The term this node saw its leader in when it sent the batch.
    term: u64,
    txs: Vec<Reply<Vec<u8>>>,
    sent_us: u64,
}

/// Identifies a relayed batch in its entry's context: which process
/// life of which node sent it, its number, and the term it was sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RelayTag {
    incarnation: u64,
    node: u64,
    seq: u64,
    term: u64,
}

impl RelayTag {
    const VERSION: u8 = b'R';
    const LEN: usize = 33;

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.push(Self::VERSION);
        for v in [self.incarnation, self.node, self.seq, self.term] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<RelayTag> {
        if b.len() != Self::LEN || b[0] != Self::VERSION {
            return None;
        }
        let word = |k: usize| {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[1 + 8 * k..9 + 8 * k]);
            u64::from_le_bytes(n)
        };
        Some(RelayTag {
            incarnation: word(0),
            node: word(1),
            seq: word(2),
            term: word(3),
        })
    }
}

/// Drops the messages of one group's batch that a later message of the
/// same batch to the same peer makes redundant (Raft tolerates any lost
/// message, so dropping is always safe; what matters is that nothing is
/// lost that the later message does not carry):
/// - a leader's append without entries (it only carries the commit
///   index, sent when the commit advanced) followed by another append to
///   that follower in the same term: the later one carries a commit index
///   at least as high, and raft-rs tracks no in-flight state for an empty
///   append;
/// - a follower's accepting append response followed by another accepting
///   one to the same leader in the same term for an index at least as
///   high: the leader only needs the highest acknowledged index.
///
/// Under load every group commits in every iteration, and each commit
/// broadcast costs one append and one response per follower.
fn drop_superseded(msgs: &mut Vec<Message>) {
    if msgs.len() < 2 {
        return;
    }
    let n = msgs.len();
    let mut keep = vec![true; n];
    let mut any = false;
    for a in 0..n {
        let m = &msgs[a];
        let t = m.get_msg_type();
        let redundant = match t {
            MessageType::MsgAppend if m.entries.is_empty() => msgs[a + 1..].iter().any(|l| {
                l.get_msg_type() == MessageType::MsgAppend && l.to == m.to && l.term == m.term
            }),
            MessageType::MsgAppendResponse if !m.reject => msgs[a + 1..].iter().any(|l| {
                l.get_msg_type() == MessageType::MsgAppendResponse
                    && !l.reject
                    && l.to == m.to
                    && l.term == m.term
                    && l.index >= m.index
            }),
            _ => false,
        };
        if redundant {
            keep[a] = false;
            any = true;
        }
    }
    if any {
        let mut k = keep.into_iter();
        msgs.retain(|_| k.next().unwrap_or(true));
    }
}

/// Fails every relayed batch of the group: `err` for their writers.
fn fail_relayed(g: &mut GroupCore, err: ClusterError) {
    for r in g.relayed.drain(..) {
        for tx in r.txs {
            let _ = tx.send(Err(err.clone()));
        }
    }
    for (_, tx) in g.relays.drain(..) {
        let _ = tx.send(Err(ClusterError::NotLeader(None)));
    }
    for (_, tx) in g.relay_gates.drain(..) {
        let _ = tx.send(Ok(()));
    }
}

/// Gives up on relayed batches waiting longer than `RELAY_TIMEOUT_US`
/// (their leader may have dropped them without a new term following:
/// the outcome is unknown) and on those nobody waits for any more.
fn expire_relayed(g: &mut GroupCore, now: u64) {
    if g.relayed.is_empty() {
        return;
    }
    let mut kept = VecDeque::with_capacity(g.relayed.len());
    for r in g.relayed.drain(..) {
        if now.saturating_sub(r.sent_us) > RELAY_TIMEOUT_US {
            for tx in r.txs {
                let _ = tx.send(Err(ClusterError::Unknown(
                    "relayed write not applied in time".into(),
                )));
            }
        } else if r.txs.iter().all(|tx| tx.is_closed()) {
            // Its writers timed out: a later apply of it answers no one.
        } else {
            kept.push_back(r);
        }
    }
    g.relayed = kept;
    release_relay_gates(g);
}

/// Lets the reads through whose relayed writes all have their outcome.
fn release_relay_gates(g: &mut GroupCore) {
    if g.relay_gates.is_empty() {
        return;
    }
    let first_open = g.relayed.iter().map(|r| r.seq).min();
    let mut keep = Vec::new();
    for (upto, tx) in std::mem::take(&mut g.relay_gates) {
        if first_open.is_some_and(|f| f <= upto) {
            keep.push((upto, tx));
        } else {
            let _ = tx.send(Ok(()));
        }
    }
    g.relay_gates = keep;
}

/// Answers the confirmed reads whose index is applied.
fn release_reads(g: &mut GroupCore) {
    if g.reads_ready.is_empty() {
        return;
    }
    let applied = g.raw.store().applied;
    g.reads_ready.retain_mut(|(idx, w)| {
        if *idx > applied {
            return true;
        }
        for tx in w.drain(..) {
            let _ = tx.send(Ok(()));
        }
        false
    });
}

/// A conf change's context carries the added node's addresses.
fn learn_address(ctx: &Ctx, cc: &ConfChangeV2) {
    if cc.context.is_empty() {
        return;
    }
    if let Ok((id, info)) = postcard::from_bytes::<(u64, NodeInfo)>(&cc.context) {
        if id != ctx.me {
            ctx.addrs.lock().entry(id).or_insert(info);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::encode_argv;

    fn entry(cmds: &[&[&str]]) -> Entry {
        let mut data = Vec::new();
        wire::entry_header(&mut data, 7);
        for argv in cmds {
            encode_argv(&mut data, argv);
        }
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryNormal);
        e.data = data;
        e
    }

    fn hints(batches: &[(usize, Vec<Entry>)], budget: usize) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        hinted_keys(batches, budget, |i, keys| {
            let keys = keys.iter().map(|k| String::from_utf8_lossy(k).into_owned());
            out.push((i, keys.collect()));
        });
        out
    }

    #[test]
    fn hinted_keys_are_first_arguments_in_order_within_the_budget() {
        let mut conf = Entry::default();
        conf.set_entry_type(EntryType::EntryConfChangeV2);
        conf.data = b"not a command".to_vec();
        let batches = vec![
            (
                3,
                vec![
                    entry(&[&["SET", "a", "1"], &["PING"], &["DEL", "b", "c"]]),
                    conf,
                ],
            ),
            (5, vec![Entry::default(), entry(&[&["INCR", "d"]])]),
            (9, vec![entry(&[&["SET", "e", "1"], &["SET", "f", "2"]])]),
        ];
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            hints(&batches, 100),
            vec![
                (3, all(&["a", "b"])),
                (5, all(&["d"])),
                (9, all(&["e", "f"]))
            ]
        );
        // The budget counts keys across groups and cuts inside an entry.
        assert_eq!(
            hints(&batches, 4),
            vec![(3, all(&["a", "b"])), (5, all(&["d"])), (9, all(&["e"]))]
        );
        assert_eq!(hints(&batches, 1), vec![(3, all(&["a"]))]);
        assert!(hints(&batches, 0).is_empty());
        // A catch-up batch far over the budget hints only the budget.
        let many: Vec<Entry> = (0..2000)
            .map(|n| entry(&[&["SET", &format!("k{n}"), "v"]]))
            .collect();
        let got = hints(&[(1, many)], PREFETCH_KEYS);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), PREFETCH_KEYS);
        assert_eq!(
            got[0].1[PREFETCH_KEYS - 1],
            format!("k{}", PREFETCH_KEYS - 1)
        );
    }
}
