//! Deterministic simulation of the Raft engine (feature `sim`): the real
//! raft loops (`driver.rs`: batching, ReadIndex reads, leadership transfer,
//! snapshots, apply), the real group storage and its recovery, the real
//! wire encoding of every message and snapshot files on disk — driven by
//! one seed on a virtual clock in one thread. The network (loss, delay,
//! reordering, duplication, partitions), crashes and restarts, leadership
//! transfers and the clients all draw from the seed, so a seed replays
//! bit for bit. See docs/design/simulation.md.
//!
//! What stays out: the peer transport's TCP and the log store's files (a
//! crash keeps exactly what the loop had persisted: between iterations,
//! everything it appended).

use std::collections::{BTreeMap, BinaryHeap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_check::{Call, History, Op, Outcome, Value};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::driver::{Clock, Ctx, EngineStats, GroupCore, GroupView, Input, Loop, Outbound};
use crate::host::{BoxFuture, Forward, Host, Stamp};
use crate::log::{GroupRecovered, LogStore};
use crate::node::{raft_config, recover_group, ClusterConfig, ClusterError};
use crate::snapfile::{self, SnapshotMeta};
use crate::storage::{encode_entry, encode_hard_state, INIT_INDEX, INIT_TERM};
use crate::types::{encode_argv, NodeInfo};

/// A bug planted on purpose, to show the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    None,
    /// Reads are served from the local copy of whichever node the client
    /// asked, without a ReadIndex round (what READONLY allows, wrongly
    /// used for a linearizable read).
    ReadWithoutBarrier,
    /// Writes are acknowledged when proposed, before they commit.
    AckBeforeCommit,
    /// The leader lease lasts 100 times too long (far longer than
    /// followers refuse other candidates). Check-quorum makes a cut-off
    /// leader step down within an election timeout anyway, so what this
    /// exposes is a paused leader answering reads under its lease the
    /// moment it resumes, before its loop learns of the new leader (6 of
    /// seeds 1–600 catch it).
    LeaseTooLong,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: u64,
    pub groups: u16,
    /// Simulated time the clients and the nemesis run.
    pub duration: Duration,
    pub sabotage: Sabotage,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: if seed.is_multiple_of(3) { 5 } else { 3 },
            groups: 2,
            duration: Duration::from_secs(30),
            sabotage: Sabotage::None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub ops_ok: u64,
    pub ops_fail: u64,
    pub ops_info: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub partitions: u64,
    pub transfers: u64,
    pub lost: u64,
    pub delivered: u64,
    /// Reads served under a leader lease / after a ReadIndex round.
    pub lease_reads: u64,
    pub index_reads: u64,
    /// Reads answered under the lease without the loop (the client side
    /// of `Cluster::lease_read`).
    pub fast_reads: u64,
    /// Writes relayed by a follower (`Input::Relay`).
    pub relayed: u64,
    /// Empty relayed batches sent to flush out lost ones.
    pub relay_fences: u64,
    /// Lulls (all clients idle for a while, so groups quiesce under the
    /// nemesis), groups quiesced by their leaders, quiesced groups woken.
    pub lulls: u64,
    pub quiesced: u64,
    pub woken: u64,
}

pub struct SimOutcome {
    pub seed: u64,
    pub registers: History,
    pub counters: History,
    pub stats: SimStats,
    /// Safety violations seen while running (diverging applies, two
    /// leaders in one term, replicas not converged at the end).
    pub violations: Vec<String>,
    /// One line per event of note; equal traces = equal runs.
    pub trace: Vec<String>,
}

impl SimOutcome {
    /// Safety first, then linearizability of both histories.
    pub fn check(&self) -> Result<String, String> {
        if let Some(v) = self.violations.first() {
            return Err(format!("seed {}: {v}", self.seed));
        }
        let budget = cairn_check::Budget::steps(5_000_000);
        for (name, h, r) in [
            (
                "register",
                &self.registers,
                cairn_check::check(&self.registers, &cairn_check::Register, &budget),
            ),
            (
                "counter",
                &self.counters,
                cairn_check::check(&self.counters, &cairn_check::Counter, &budget),
            ),
        ] {
            let r = r.map_err(|e| format!("seed {}: {name} history: {e}", self.seed))?;
            if r.verdict == cairn_check::Verdict::NotLinearizable {
                let why: Vec<String> = r
                    .keys
                    .iter()
                    .filter(|(_, k)| k.is_violation())
                    .map(|(k, res)| format!("{k}: {res:?}").chars().take(400).collect())
                    .collect();
                return Err(format!(
                    "seed {}: {name} history of {} ops is not linearizable: {}",
                    self.seed,
                    h.ops.len(),
                    why.join("; ")
                ));
            }
        }
        let s = &self.stats;
        Ok(format!(
            "seed {}: {} ok, {} fail, {} info; {} crashes, {} pauses, {} partitions, {} transfers, {} lost of {} messages; reads {} fast, {} lease, {} read-index; {} relayed writes ({} fences); {} lulls, {} quiesced, {} woken",
            self.seed, s.ops_ok, s.ops_fail, s.ops_info, s.crashes, s.pauses, s.partitions, s.transfers,
            s.lost, s.lost + s.delivered, s.fast_reads, s.lease_reads, s.index_reads, s.relayed, s.relay_fences, s.lulls, s.quiesced, s.woken
        ))
    }
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The state machine: integer registers and counters, and a hash chain of
/// every command applied, per group, to compare replicas.
#[derive(Default)]
struct SimHost {
    groups: Mutex<BTreeMap<u16, GroupState>>,
    /// (group, commands applied) → chain hash, shared by every node: two
    /// replicas that applied the same number of commands must agree.
    chains: Arc<Mutex<BTreeMap<(u16, u64), u64>>>,
    violations: Arc<Mutex<Vec<String>>>,
    node: u64,
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct GroupState {
    kv: BTreeMap<Vec<u8>, i64>,
    applied: u64,
    chain: u64,
    /// The last command's stamp: indexes and times never go backwards.
    last: (u64, u64),
}

fn mix(h: u64, bytes: &[u8]) -> u64 {
    let mut h = h ^ 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x1000_0000_01b3);
    }
    h
}

fn int(a: &[u8]) -> Option<i64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

impl Host for SimHost {
    fn apply(&self, group: u16, at: Stamp, argv: &[&[u8]], out: &mut Vec<u8>) {
        let mut gs = self.groups.lock();
        let st = gs.entry(group).or_default();
        if at.index < st.last.0 || at.ts_ms < st.last.1 {
            self.violations.lock().push(format!(
                "node {} group {group}: stamp went backwards: {:?} after {:?}",
                self.node, at, st.last
            ));
        }
        st.last = (at.index, at.ts_ms);
        // Replicas must agree on each command's stamp as on its bytes.
        st.chain = mix(st.chain, &at.index.to_le_bytes());
        st.chain = mix(st.chain, &at.ts_ms.to_le_bytes());
        for a in argv {
            st.chain = mix(st.chain, a);
        }
        st.applied += 1;
        {
            let mut chains = self.chains.lock();
            let e = chains.entry((group, st.applied)).or_insert(st.chain);
            if *e != st.chain {
                self.violations.lock().push(format!(
                    "node {} group {group}: command {} differs from another replica's",
                    self.node, st.applied
                ));
            }
        }
        match argv {
            [b"SET", k, v] => {
                if let Some(v) = int(v) {
                    st.kv.insert(k.to_vec(), v);
                }
                out.extend_from_slice(b"+OK\r\n");
            }
            [b"CAS", k, e, n] => match (int(e), int(n)) {
                (Some(e), Some(n)) if st.kv.get(*k) == Some(&e) => {
                    st.kv.insert(k.to_vec(), n);
                    out.extend_from_slice(b":1\r\n");
                }
                _ => out.extend_from_slice(b":0\r\n"),
            },
            [b"INCRBY", k, d] => {
                let v = st.kv.get(*k).copied().unwrap_or(0) + int(d).unwrap_or(0);
                st.kv.insert(k.to_vec(), v);
                out.extend_from_slice(format!(":{v}\r\n").as_bytes());
            }
            _ => out.extend_from_slice(b"-ERR unknown\r\n"),
        }
    }
    fn snapshot(&self, group: u16) -> Vec<u8> {
        let st = self.groups.lock().get(&group).cloned().unwrap_or_default();
        postcard::to_allocvec(&st).unwrap_or_default()
    }
    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String> {
        let st: GroupState = if data.is_empty() {
            GroupState::default()
        } else {
            postcard::from_bytes(data).map_err(|e| e.to_string())?
        };
        self.groups.lock().insert(group, st);
        Ok(())
    }
    fn clear(&self, group: u16) {
        self.groups.lock().remove(&group);
    }
    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        let n = reqs.len();
        Box::pin(async move { vec![b"-ERR not simulated\r\n".to_vec(); n] })
    }
}

impl SimHost {
    fn get(&self, group: u16, key: &[u8]) -> Option<i64> {
        self.groups.lock().get(&group)?.kv.get(key).copied()
    }
}

/// Frames sent and not yet scheduled: (from, to, bytes).
type Sent = Arc<Mutex<Vec<(u64, u64, Vec<u8>)>>>;

/// Frames a loop sends, collected for the scheduler.
struct SimOut {
    from: u64,
    sent: Sent,
}

impl Outbound for SimOut {
    fn send(&self, to: u64, _addr: &str, batch: &[u8]) -> bool {
        self.sent.lock().push((self.from, to, batch.to_vec()));
        true
    }
}

struct Node {
    id: u64,
    lp: Option<Loop>,
    host: Arc<SimHost>,
    views: Arc<Vec<Mutex<GroupView>>>,
    stats: Arc<EngineStats>,
    dir: PathBuf,
    /// What a restart finds: per group, the persisted log and hard state.
    disk: BTreeMap<u16, GroupRecovered>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver { to: u64, from: u64, bytes: Vec<u8> },
    Tick { node: u64 },
    Client { c: usize },
    Nemesis,
}

struct Pending {
    node: u64,
    call: Call,
    key: String,
    invoke_ms: u64,
    rx: PendingRx,
}

enum PendingRx {
    Write(oneshot::Receiver<Result<Vec<u8>, ClusterError>>),
    Read(oneshot::Receiver<Result<(), ClusterError>>, u16),
}

struct Client {
    id: u64,
    target: u64,
    pending: Option<Pending>,
}

const TICK_MS: u64 = 50;
const CLIENT_TIMEOUT_MS: u64 = 5_000;
const EPOCH_MS: u64 = 1_700_000_000_000;
const REGISTER_KEYS: u64 = 5;

struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<std::cmp::Reverse<(u64, u64, Event)>>,
    nodes: BTreeMap<u64, Node>,
    sent: Sent,
    clock: Arc<Mutex<u64>>,
    /// Directed links cut: (from, to).
    cut: std::collections::BTreeSet<(u64, u64)>,
    /// Nodes paused (SIGSTOP) until this time: their ticks and deliveries
    /// wait, and requests sent to them queue in their loop.
    paused: BTreeMap<u64, u64>,
    loss: u64,
    delay: (u64, u64),
    dup: u64,
    clients: Vec<Client>,
    /// Clients send nothing before this time (ms).
    lull_until: u64,
    registers: History,
    counters: History,
    stats: SimStats,
    trace: Vec<String>,
    violations: Arc<Mutex<Vec<String>>>,
    chains: Arc<Mutex<BTreeMap<(u16, u64), u64>>>,
    leaders: BTreeMap<(u16, u64), u64>,
    _tmp: tempfile::TempDir,
}

fn cluster_config(cfg: &SimConfig, id: u64) -> ClusterConfig {
    let members = (1..=cfg.nodes).map(|i| (i, NodeInfo::default())).collect();
    let mut c = ClusterConfig::new(id, "127.0.0.1:1".parse().expect("literal"), members);
    c.groups = cfg.groups;
    c.heartbeat_ms = 2 * TICK_MS;
    c.election_min_ms = 5 * TICK_MS;
    c.election_max_ms = 8 * TICK_MS;
    c.snapshot_logs = 40;
    c
}

/// Runs one seed.
pub fn run(cfg: SimConfig) -> std::io::Result<SimOutcome> {
    let tmp = tempfile::tempdir()?;
    let mut sim = Sim {
        rng: Rng(cfg.seed),
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        nodes: BTreeMap::new(),
        sent: Arc::default(),
        clock: Arc::new(Mutex::new(0)),
        cut: Default::default(),
        paused: BTreeMap::new(),
        loss: 0,
        delay: (1, 5),
        dup: 0,
        clients: Vec::new(),
        lull_until: 0,
        registers: History::new(),
        counters: History::new(),
        stats: SimStats::default(),
        trace: Vec::new(),
        violations: Arc::default(),
        chains: Arc::default(),
        leaders: BTreeMap::new(),
        cfg,
        _tmp: tmp,
    };
    let root = sim._tmp.path().to_path_buf();
    for id in 1..=sim.cfg.nodes {
        let dir = root.join(format!("n{id}"));
        std::fs::create_dir_all(&dir)?;
        let host = Arc::new(SimHost {
            chains: sim.chains.clone(),
            violations: sim.violations.clone(),
            node: id,
            ..Default::default()
        });
        let views = Arc::new(
            (0..=sim.cfg.groups)
                .map(|_| Mutex::new(GroupView::default()))
                .collect(),
        );
        sim.nodes.insert(
            id,
            Node {
                id,
                lp: None,
                host,
                views,
                stats: Arc::default(),
                dir,
                disk: BTreeMap::new(),
            },
        );
        sim.start(id, true)?;
        let phase = sim.rng.below(TICK_MS);
        sim.at(phase, Event::Tick { node: id });
    }
    for c in 0..4 {
        sim.clients.push(Client {
            id: c as u64 + 1,
            target: 1,
            pending: None,
        });
        let t = sim.rng.range(100, 600);
        sim.at(t, Event::Client { c });
    }
    let t = sim.rng.range(500, 2000);
    sim.at(t, Event::Nemesis);
    let end = sim.cfg.duration.as_millis() as u64;
    sim.run_until(end)?;
    // Heal everything, restart every node, let the groups settle.
    sim.cut.clear();
    sim.paused.clear();
    sim.loss = 0;
    sim.dup = 0;
    let ids: Vec<u64> = sim.nodes.keys().copied().collect();
    for id in ids {
        if sim.nodes[&id].lp.is_none() {
            sim.start(id, false)?;
        }
    }
    sim.run_until(end + 30_000)?;
    for c in 0..sim.clients.len() {
        sim.finish_client(c, true);
    }
    sim.check_converged();
    sim.check_quiet();
    for n in sim.nodes.values() {
        sim.stats.quiesced += n.stats.quiesced.load(std::sync::atomic::Ordering::Relaxed);
        sim.stats.woken += n.stats.woken.load(std::sync::atomic::Ordering::Relaxed);
        sim.stats.relay_fences += n
            .stats
            .relay_fences
            .load(std::sync::atomic::Ordering::Relaxed);
        sim.stats.lease_reads += n
            .stats
            .lease_reads
            .load(std::sync::atomic::Ordering::Relaxed);
        sim.stats.index_reads += n
            .stats
            .index_reads
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    let violations = sim.violations.lock().clone();
    Ok(SimOutcome {
        seed: sim.cfg.seed,
        registers: sim.registers,
        counters: sim.counters,
        stats: sim.stats,
        violations,
        trace: sim.trace,
    })
}

impl Sim {
    fn at(&mut self, after_ms: u64, e: Event) {
        self.seq += 1;
        self.queue
            .push(std::cmp::Reverse((self.now + after_ms, self.seq, e)));
    }

    fn log(&mut self, s: String) {
        self.trace.push(format!("{:>7} {s}", self.now));
    }

    /// (Re)starts node `id` from its directory and persisted log; the
    /// first start bootstraps every group from the initial snapshot.
    fn start(&mut self, id: u64, first: bool) -> std::io::Result<()> {
        let ccfg = cluster_config(&self.cfg, id);
        let lease_us = self.lease_us();
        let node = self.nodes.get_mut(&id).expect("node exists");
        node.host.groups.lock().clear();
        let host: Arc<dyn Host> = node.host.clone();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut cores = Vec::new();
        for g in 0..self.cfg.groups {
            let path = node.dir.join(format!("g{g}.snap"));
            let rec = node.disk.remove(&g).unwrap_or_default();
            let (mut st, mut snap_index, fresh) = recover_group(g, &host, Some(&path), rec)?;
            if first {
                assert!(fresh);
                let meta = SnapshotMeta {
                    index: INIT_INDEX,
                    term: INIT_TERM,
                    voters: (1..=self.cfg.nodes).collect(),
                    ..Default::default()
                };
                snapfile::write(&path, &meta, &snapfile::payload(0, &host.snapshot(g)))?;
                st.apply_snapshot(&meta.to_raft());
                snap_index = Some(INIT_INDEX);
            }
            let mut rc = raft_config(&ccfg, st.applied);
            // raft-rs draws election timeouts from its own thread RNG: a
            // range of one value keeps runs deterministic; the jitter
            // comes from each node's seeded tick schedule instead.
            rc.max_election_tick = rc.min_election_tick + 1;
            let mut raw = raft::RawNode::new(&rc, st, &logger)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if first && (g as u64 % self.cfg.nodes) + 1 == id {
                let _ = raw.campaign();
            }
            cores.push(GroupCore::new(g, raw, snap_index));
        }
        let clock = self.clock.clone();
        // Wall clocks disagree by up to ±3 s between nodes (a new one on
        // every restart): entry times must still never run backwards.
        let skew = self.rng.range(0, 6000) as i64 - 3000;
        let ctx = Arc::new(Ctx {
            me: id,
            host,
            store: LogStore::volatile(),
            net: Box::new(SimOut {
                from: id,
                sent: self.sent.clone(),
            }),
            clock: Arc::new(move || (EPOCH_MS + *clock.lock()).saturating_add_signed(skew))
                as Clock,
            views: node.views.clone(),
            addrs: Arc::new(Mutex::new(ccfg.members.clone())),
            stats: node.stats.clone(),
            snapshot_logs: ccfg.snapshot_logs,
            snap_dir: Some(node.dir.clone()),
            tick: Duration::from_millis(TICK_MS),
            failed: Arc::new(AtomicBool::new(false)),
            abort_on_storage_failure: false,
            now_us: {
                let clock = self.clock.clone();
                Arc::new(move || *clock.lock() * 1000) as Clock
            },
            lease_us,
            quiesce: true,
            heard: Arc::default(),
            raft_cfg: {
                let mut rc = raft_config(&ccfg, 0);
                rc.max_election_tick = rc.min_election_tick + 1;
                rc
            },
            direct_log: true,
            incarnation: self.rng.below(u64::MAX),
        });
        let mut lp = Loop::new(ctx, cores);
        lp.publish_all();
        lp.wake_peers();
        node.lp = Some(lp);
        if !first {
            self.log(format!("restart n{id}"));
        }
        Ok(())
    }

    /// Crash: the keyspace and everything in flight are gone; the log and
    /// snapshot files stay.
    fn lease_us(&self) -> u64 {
        // Ticks here are 40–60 ms (±20%, the clock-rate margin).
        let us = crate::driver::lease_duration_us(
            raft_config(&cluster_config(&self.cfg, 1), 0).election_tick,
            Duration::from_millis(TICK_MS),
        );
        if self.cfg.sabotage == Sabotage::LeaseTooLong {
            us * 100
        } else {
            us
        }
    }

    /// Writes a client sent to `node` for `group` whose outcome it has not
    /// received (`Cluster`'s in-flight counter).
    fn writes_in_flight(&self, node: u64, group: u16) -> u64 {
        self.clients
            .iter()
            .filter_map(|c| c.pending.as_ref())
            .filter(|p| p.node == node && matches!(p.rx, PendingRx::Write(_)))
            .filter(|p| (mix(0, p.key.as_bytes()) % self.cfg.groups as u64) as u16 == group)
            .count() as u64
    }

    fn crash(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(lp) = node.lp.take() else {
            return;
        };
        for g in lp.groups() {
            let s = g.raw.store();
            let entries = s
                .entries
                .iter()
                .map(|e| (e.index, Bytes::from(encode_entry(e))))
                .collect();
            node.disk.insert(
                g.id,
                GroupRecovered {
                    vote: Some(Bytes::from(encode_hard_state(&s.hs))),
                    committed: None,
                    purged: Some((s.base.0, Bytes::new())),
                    entries,
                },
            );
        }
        drop(lp);
        node.host.groups.lock().clear();
        for v in node.views.iter() {
            *v.lock() = GroupView::default();
        }
        self.stats.crashes += 1;
        self.log(format!("crash n{id}"));
    }

    fn run_until(&mut self, end: u64) -> std::io::Result<()> {
        while let Some(std::cmp::Reverse((t, _, _))) = self.queue.peek() {
            if *t > end {
                break;
            }
            let Some(std::cmp::Reverse((t, _, e))) = self.queue.pop() else {
                break;
            };
            self.now = t;
            *self.clock.lock() = t;
            self.event(e, end)?;
            self.poll_clients();
        }
        self.now = end;
        Ok(())
    }

    fn is_paused(&self, node: u64) -> bool {
        self.paused.get(&node).is_some_and(|&t| self.now < t)
    }

    fn event(&mut self, e: Event, end: u64) -> std::io::Result<()> {
        let clients_on = end <= self.cfg.duration.as_millis() as u64;
        let waits = match &e {
            Event::Tick { node } => self.paused.get(node).copied(),
            Event::Deliver { to, .. } => self.paused.get(to).copied(),
            _ => None,
        };
        if let Some(until) = waits.filter(|&t| self.now < t) {
            let after = until - self.now;
            self.at(after, e);
            return Ok(());
        }
        match e {
            Event::Tick { node } => {
                if let Some(lp) = self.nodes.get_mut(&node).and_then(|n| n.lp.as_mut()) {
                    lp.tick();
                }
                self.iterate(node)?;
                let next = TICK_MS - 10 + self.rng.below(21);
                self.at(next, Event::Tick { node });
            }
            Event::Deliver { to, from, bytes } => {
                let Some(lp) = self.nodes.get_mut(&to).and_then(|n| n.lp.as_mut()) else {
                    return Ok(());
                };
                let msgs = crate::wire::decode_batch(&bytes)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let msgs = msgs.into_iter().filter(|(_, m)| m.from == from).collect();
                lp.heard(from);
                lp.input(Input::Raft(msgs));
                self.iterate(to)?;
            }
            Event::Client { c } => {
                if clients_on {
                    self.client_step(c)?;
                }
            }
            Event::Nemesis => {
                if clients_on {
                    self.nemesis()?;
                    let t = self.rng.range(200, 2500);
                    self.at(t, Event::Nemesis);
                }
            }
        }
        Ok(())
    }

    /// One loop iteration of `node`, then its frames onto the network.
    fn iterate(&mut self, node: u64) -> std::io::Result<()> {
        if self.is_paused(node) {
            return Ok(());
        }
        if let Some(lp) = self.nodes.get_mut(&node).and_then(|n| n.lp.as_mut()) {
            lp.iterate()?;
        }
        self.observe_leaders(node);
        let sent = std::mem::take(&mut *self.sent.lock());
        for (from, to, bytes) in sent {
            if self.cut.contains(&(from, to)) || self.rng.chance(self.loss) {
                self.stats.lost += 1;
                continue;
            }
            self.stats.delivered += 1;
            let d = self.rng.range(self.delay.0, self.delay.1);
            if self.rng.chance(self.dup) {
                let d2 = d + self.rng.range(1, 30);
                self.at(
                    d2,
                    Event::Deliver {
                        to,
                        from,
                        bytes: bytes.clone(),
                    },
                );
            }
            self.at(d, Event::Deliver { to, from, bytes });
        }
        Ok(())
    }

    /// At most one leader per term and group.
    fn observe_leaders(&mut self, node: u64) {
        let Some(n) = self.nodes.get(&node) else {
            return;
        };
        let mut new = Vec::new();
        for (g, v) in n.views.iter().enumerate() {
            let v = v.lock();
            if !v.role_leader {
                continue;
            }
            match self.leaders.get(&(g as u16, v.term)) {
                Some(&other) if other != node => self.violations.lock().push(format!(
                    "group {g} term {}: two leaders, n{other} and n{node}",
                    v.term
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert((g as u16, v.term), node);
                    new.push(format!("g{g} term {}: n{node} leads", v.term));
                }
            }
        }
        for l in new {
            self.log(l);
        }
    }

    fn nemesis(&mut self) -> std::io::Result<()> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize];
        if self.now >= self.lull_until && self.rng.chance(12) {
            // The clients go quiet: the groups quiesce, and the faults
            // that follow hit quiesced groups.
            let ms = self.rng.range(800, 4000);
            self.lull_until = self.now + ms;
            self.stats.lulls += 1;
            self.log(format!("lull {ms} ms"));
        }
        match self.rng.below(10) {
            8 => {
                // Mostly a leader: the pause a lease must survive.
                let g = self.rng.below(self.cfg.groups as u64) as usize;
                let leader = ids.iter().copied().find(|id| {
                    self.nodes[id]
                        .views
                        .get(g)
                        .is_some_and(|v| v.lock().role_leader)
                });
                let a = match leader {
                    Some(l) if self.rng.chance(70) => l,
                    _ => pick(&mut self.rng),
                };
                let ms = self.rng.range(300, 3000);
                self.paused.insert(a, self.now + ms);
                self.stats.pauses += 1;
                self.log(format!("pause n{a} for {ms} ms"));
            }
            0 => {
                let a = pick(&mut self.rng);
                for &b in &ids {
                    if b != a {
                        self.cut.insert((a, b));
                        self.cut.insert((b, a));
                    }
                }
                self.stats.partitions += 1;
                self.log(format!("isolate n{a}"));
            }
            1 => {
                let (a, b) = (pick(&mut self.rng), pick(&mut self.rng));
                if a != b {
                    self.cut.insert((a, b));
                    self.stats.partitions += 1;
                    self.log(format!("cut n{a} -> n{b}"));
                }
            }
            2 | 3 => {
                self.cut.clear();
                self.log("heal".into());
            }
            4 => {
                let a = pick(&mut self.rng);
                let down = self.nodes.values().filter(|n| n.lp.is_none()).count() as u64;
                // Keep a majority up most of the time, but not always.
                if down < (self.cfg.nodes - 1) / 2 || self.rng.chance(10) {
                    self.crash(a);
                }
            }
            5 => {
                let down: Vec<u64> = self
                    .nodes
                    .values()
                    .filter(|n| n.lp.is_none())
                    .map(|n| n.id)
                    .collect();
                if let Some(&a) = down.first() {
                    self.start(a, false)?;
                }
            }
            6 => {
                self.loss = [0, 2, 10, 30][self.rng.below(4) as usize];
                self.delay = [(1, 5), (1, 15), (5, 45)][self.rng.below(3) as usize];
                self.dup = [0, 1, 5][self.rng.below(3) as usize];
                self.log(format!(
                    "network loss {}% delay {:?} dup {}%",
                    self.loss, self.delay, self.dup
                ));
            }
            _ => {
                // Leadership transfer, through raft-rs, to a random voter.
                let g = self.rng.below(self.cfg.groups as u64) as u16;
                let to = pick(&mut self.rng);
                let leader = ids.iter().copied().find(|id| {
                    self.nodes[id]
                        .views
                        .get(g as usize)
                        .is_some_and(|v| v.lock().role_leader)
                });
                if let Some(l) = leader {
                    if let Some(lp) = self.nodes.get_mut(&l).and_then(|n| n.lp.as_mut()) {
                        lp.input(Input::Transfer { group: g, to });
                        self.stats.transfers += 1;
                        self.log(format!("transfer g{g} n{l} -> n{to}"));
                        self.iterate(l)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn client_step(&mut self, c: usize) -> std::io::Result<()> {
        if self.clients[c].pending.is_some() {
            return Ok(());
        }
        if self.now < self.lull_until {
            let after = self.lull_until - self.now + self.rng.below(50);
            self.at(after, Event::Client { c });
            return Ok(());
        }
        if self.rng.chance(20) {
            // Clients do not always know the leader.
            self.clients[c].target = self.rng.range(1, self.cfg.nodes);
        }
        let target = self.clients[c].target;
        let counter = self.rng.chance(30);
        let (key, call) = if counter {
            let call = if self.rng.chance(50) {
                Call::Add(self.rng.range(1, 5) as i64)
            } else {
                Call::Read
            };
            ("ctr".to_string(), call)
        } else {
            let key = format!("r{}", self.rng.below(REGISTER_KEYS));
            let v = self.rng.range(1, 4) as i64;
            let call = match self.rng.below(3) {
                0 => Call::Read,
                1 => Call::Write(self.rng.range(1, 1_000_000) as i64),
                _ => Call::Cas {
                    expect: v,
                    new: self.rng.range(1, 4) as i64,
                },
            };
            (key, call)
        };
        let group = (mix(0, key.as_bytes()) % self.cfg.groups as u64) as u16;
        let sabotage = self.cfg.sabotage;
        let Some(node) = self.nodes.get(&target) else {
            return Ok(());
        };
        let leads = node
            .views
            .get(group as usize)
            .is_some_and(|v| v.lock().role_leader);
        let alive = node.lp.is_some();
        let invoke = self.now;
        let id = self.clients[c].id;
        if call == Call::Read && sabotage == Sabotage::ReadWithoutBarrier && alive {
            let v = node.host.get(group, key.as_bytes());
            self.record(id, &key, call, invoke, Outcome::Ok(val(v)));
            self.clients[c].target = self.rng.range(1, self.cfg.nodes);
            let t = self.rng.range(5, 60);
            self.at(t, Event::Client { c });
            return Ok(());
        }
        if call == Call::Read && leads && alive {
            // `Cluster::lease_read`: under a lease with no write of this
            // node's in flight, the read skips the loop. A read sent to a
            // paused node is answered this way the moment it resumes —
            // its connection threads run before its loop has heard what
            // happened meanwhile — with what it had before the pause.
            let at = self
                .paused
                .get(&target)
                .copied()
                .filter(|&t| self.now < t)
                .unwrap_or(self.now);
            let until = node.views[group as usize].lock().lease_until_us;
            let in_flight = self.writes_in_flight(target, group);
            if crate::driver::lease_read_ok(until, in_flight, at * 1000, self.lease_us()) {
                let v = self.nodes[&target].host.get(group, key.as_bytes());
                self.stats.fast_reads += 1;
                self.record_done(id, &key, call, invoke, Outcome::Ok(val(v)), at);
                let t = at - self.now + self.rng.range(5, 60);
                self.at(t, Event::Client { c });
                return Ok(());
            }
        }
        // A write sent to a follower is relayed to the leader half of the
        // time (`Cluster::relay`), as the server does for plain clients.
        let relay = alive && !leads && call != Call::Read && self.rng.chance(50);
        if !relay && (!leads || !alive) {
            // Not proposed anywhere: a failed op; next, the leader this
            // node names, or any node.
            let hint = node.views.get(group as usize).map(|v| v.lock().leader);
            self.record(id, &key, call, invoke, Outcome::Fail);
            self.clients[c].target = match hint {
                Some(l) if l != 0 && alive => l,
                _ => self.rng.range(1, self.cfg.nodes),
            };
            let t = self.rng.range(5, 60);
            self.at(t, Event::Client { c });
            return Ok(());
        }
        let rx = match &call {
            Call::Read => {
                let (tx, rx) = oneshot::channel();
                self.input(target, Input::Read { group, tx });
                PendingRx::Read(rx, group)
            }
            _ => {
                let argv: Vec<Vec<u8>> = match &call {
                    Call::Write(v) => {
                        vec![b"SET".to_vec(), key.clone().into(), v.to_string().into()]
                    }
                    Call::Cas { expect, new } => vec![
                        b"CAS".to_vec(),
                        key.clone().into(),
                        expect.to_string().into(),
                        new.to_string().into(),
                    ],
                    Call::Add(d) => {
                        vec![b"INCRBY".to_vec(), key.clone().into(), d.to_string().into()]
                    }
                    _ => Vec::new(),
                };
                let mut enc = Vec::new();
                encode_argv(&mut enc, &argv);
                let (tx, rx) = oneshot::channel();
                let input = if relay {
                    self.stats.relayed += 1;
                    Input::Relay {
                        group,
                        argv: enc,
                        tx,
                    }
                } else {
                    Input::Propose {
                        group,
                        argv: enc,
                        tx,
                    }
                };
                self.input(target, input);
                if sabotage == Sabotage::AckBeforeCommit && !matches!(call, Call::Add(_)) {
                    let v = match call {
                        Call::Cas { .. } => Value::Bool(true),
                        _ => Value::Ack,
                    };
                    self.record(id, &key, call, invoke, Outcome::Ok(v));
                    self.iterate(target)?;
                    let t = self.rng.range(5, 60);
                    self.at(t, Event::Client { c });
                    return Ok(());
                }
                PendingRx::Write(rx)
            }
        };
        self.clients[c].pending = Some(Pending {
            node: target,
            call,
            key,
            invoke_ms: invoke,
            rx,
        });
        self.iterate(target)
    }

    fn input(&mut self, node: u64, i: Input) {
        if let Some(lp) = self.nodes.get_mut(&node).and_then(|n| n.lp.as_mut()) {
            lp.input(i);
        }
    }

    fn poll_clients(&mut self) {
        for c in 0..self.clients.len() {
            self.finish_client(c, false);
        }
    }

    /// Completes client `c`'s operation if its answer came (or it timed
    /// out, or `force`: the run is over), and schedules its next one.
    fn finish_client(&mut self, c: usize, force: bool) {
        let Some(p) = self.clients[c].pending.as_mut() else {
            return;
        };
        let timed_out = self.now >= p.invoke_ms + CLIENT_TIMEOUT_MS || force;
        let outcome = match &mut p.rx {
            PendingRx::Write(rx) => match rx.try_recv() {
                Ok(Ok(reply)) => Some(Outcome::Ok(parse_reply(&p.call, &reply))),
                Ok(Err(ClusterError::NotLeader(_))) => Some(Outcome::Fail),
                Ok(Err(_)) => Some(Outcome::Info),
                Err(oneshot::error::TryRecvError::Closed) => Some(Outcome::Info),
                Err(oneshot::error::TryRecvError::Empty) => timed_out.then_some(Outcome::Info),
            },
            PendingRx::Read(rx, g) => match rx.try_recv() {
                Ok(Ok(())) => {
                    let v = self
                        .nodes
                        .get(&p.node)
                        .and_then(|n| n.host.get(*g, p.key.as_bytes()));
                    Some(Outcome::Ok(val(v)))
                }
                Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => Some(Outcome::Fail),
                Err(oneshot::error::TryRecvError::Empty) => timed_out.then_some(Outcome::Fail),
            },
        };
        let Some(outcome) = outcome else {
            return;
        };
        let Some(p) = self.clients[c].pending.take() else {
            return;
        };
        if matches!(outcome, Outcome::Fail | Outcome::Info) {
            self.clients[c].target = self.rng.range(1, self.cfg.nodes);
        }
        let id = self.clients[c].id;
        self.record(id, &p.key, p.call, p.invoke_ms, outcome);
        if !force {
            let t = self.rng.range(5, 60);
            self.at(t, Event::Client { c });
        }
    }

    fn record(&mut self, id: u64, key: &str, call: Call, invoke: u64, outcome: Outcome) {
        let now = self.now;
        self.record_done(id, key, call, invoke, outcome, now);
    }

    /// Records an operation that completes at `done_ms` (now or later).
    fn record_done(
        &mut self,
        id: u64,
        key: &str,
        call: Call,
        invoke: u64,
        outcome: Outcome,
        done_ms: u64,
    ) {
        let (i, done) = (invoke * 1_000_000, done_ms * 1_000_000 + 1);
        let op = match outcome {
            Outcome::Ok(v) => {
                self.stats.ops_ok += 1;
                Op::ok(id, key, call, i, done, v)
            }
            Outcome::Fail => {
                self.stats.ops_fail += 1;
                Op::fail(id, key, call, i, done)
            }
            Outcome::Info => {
                self.stats.ops_info += 1;
                Op::info(id, key, call, i)
            }
        };
        if key == "ctr" {
            self.counters.push(op);
        } else {
            self.registers.push(op);
        }
    }

    /// After healing: every node applied the same commands per group.
    /// After the settle period (no clients, no faults) every group is
    /// quiesced on every node: idle groups cost nothing.
    fn check_quiet(&mut self) {
        for g in 0..self.cfg.groups {
            let noisy = self
                .nodes
                .values()
                .any(|n| !n.views[g as usize].lock().quiet);
            if noisy {
                let states: Vec<String> = self
                    .nodes
                    .values()
                    .map(|n| {
                        let st = n.lp.as_ref().map(|lp| lp.quiet_state(g));
                        format!("n{}: {}", n.id, st.unwrap_or_else(|| "down".into()))
                    })
                    .collect();
                self.violations.lock().push(format!(
                    "group {g} not quiesced everywhere after 30 s without clients or \
                     faults: {}",
                    states.join(" | ")
                ));
            }
        }
    }

    fn check_converged(&mut self) {
        for g in 0..self.cfg.groups {
            let states: Vec<(u64, u64, u64)> = self
                .nodes
                .values()
                .map(|n| {
                    let st = n.host.groups.lock().get(&g).cloned().unwrap_or_default();
                    (n.id, st.applied, st.chain)
                })
                .collect();
            let first = states[0];
            if states.iter().any(|s| (s.1, s.2) != (first.1, first.2)) {
                self.violations.lock().push(format!(
                    "group {g}: replicas did not converge after healing: {states:?}"
                ));
            }
        }
    }
}

fn val(v: Option<i64>) -> Value {
    match v {
        Some(v) => Value::Int(v),
        None => Value::Nil,
    }
}

fn parse_reply(call: &Call, reply: &[u8]) -> Value {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end();
    match call {
        Call::Cas { .. } => Value::Bool(text == ":1"),
        Call::Add(_) => text
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .map(Value::Int)
            .unwrap_or(Value::Nil),
        _ => Value::Ack,
    }
}
