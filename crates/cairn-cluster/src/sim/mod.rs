//! Deterministic simulation of cairn's Raft layer (feature `sim`).
//!
//! One seed drives a whole simulated cluster — openraft over cairn's own
//! [`GroupLog`](crate::raftlog::GroupLog) (volatile [`LogStore`]),
//! [`GroupSm`] (with its snapshot files) and wire encoding — inside one
//! single-threaded tokio runtime with paused time. A seeded network
//! ([`net`]) loses, delays, reorders and duplicates messages and applies
//! symmetric and one-way partitions; a seeded nemesis crashes and restarts
//! nodes; seeded clients run a register and counter workload and record a
//! [`History`]. Everything that happened goes into a trace with simulated
//! timestamps, so one seed gives the same trace, bit for bit, every run.
//!
//! Checked while running: one entry per log id (what "one leader per
//! term" is for; openraft's leader ids are (term, node)), every index
//! applied with the same entry on every node, the same state after the
//! same index on every node. Checked at the end: the nodes converge after
//! healing, committed log prefixes match, and the history is linearizable
//! ([`cairn_check`]). See docs/design/simulation.md.
//!
//! ```no_run
//! let out = cairn_cluster::sim::run(cairn_cluster::sim::SimConfig::new(7)).unwrap();
//! println!("{}", out.check().unwrap());
//! ```

mod net;
mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_check::{Budget, Call, History, KeyResult, Model, Op, Value};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Config, RaftLogReader, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::log::{GroupRecovered, LogStore};
use crate::raftlog::GroupLog;
use crate::sm::GroupSm;
use crate::types::{encode_argv, Batch, Entry, LogId, NodeInfo, Raft};
use net::{Kind, SimFactory};
pub use storage::SimHost;
use storage::{fnv, Recorder, SimLog, SimSm};

/// How the command line of a test reproduces one seed.
pub const REPRODUCE: &str =
    "CAIRN_SIM_SEED={seed} cargo test -p cairn-cluster --features sim --test sim -- --nocapture";

/// A small, fast, seedable generator (SplitMix64). Not `rand`: its
/// algorithms may change between versions, and a seed must replay.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    /// True with probability `pm`/1000.
    pub fn permille(&mut self, pm: u32) -> bool {
        self.below(1000) < u64::from(pm)
    }

    /// An independent stream (so that, say, the clients' choices do not
    /// shift when the network draws one number more).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// A deliberately planted bug, to show the checks catch one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    None,
    /// Reads are served from any node's local state, with no leader
    /// confirmation (follower reads): stale under partitions.
    StaleReads,
    /// A `SET` is acknowledged as soon as the leader accepted it, before
    /// it is committed: lost when leadership changes.
    AckBeforeCommit,
    /// The state machine's compare-and-set always swaps (a plain
    /// application bug; every replica agrees on it).
    BrokenCas,
}

/// What one simulation run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size (node ids 1..=nodes).
    pub nodes: usize,
    /// Simulated time the clients and the nemesis run; healing and the
    /// convergence wait come after it.
    pub duration: Duration,
    pub clients: usize,
    /// Whether the nemesis injects faults (else: a perfect network).
    pub faults: bool,
    pub sabotage: Sabotage,
}

impl SimConfig {
    /// Defaults for a seed: every third seed simulates 5 nodes, the rest 3;
    /// 30 simulated seconds, 4 clients, faults on.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: [5, 3, 3][(seed % 3) as usize],
            duration: Duration::from_secs(30),
            clients: 4,
            faults: true,
            sabotage: Sabotage::None,
        }
    }
}

/// Counters of one run (for the log line and for tests that make sure
/// faults really happened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub partitions: u64,
    /// Distinct leader ids (term, node) seen.
    pub leader_ids: u64,
    /// Leader ids that shared their term with another (allowed by
    /// openraft's advanced leader ids; counted to show it happens).
    pub shared_terms: u64,
    pub ops_ok: u64,
    pub ops_fail: u64,
    pub ops_info: u64,
    /// The index every node had applied at the end (after convergence).
    pub final_applied: Option<u64>,
    pub snapshots_installed: u64,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    pub seed: u64,
    pub nodes: usize,
    /// Every message fate, fault, crash, restart, leader and client
    /// operation, each with its simulated time in nanoseconds.
    pub trace: Vec<String>,
    /// The clients' operations, for the linearizability checker.
    pub history: History,
    /// Safety properties seen violated while running or at the end.
    pub violations: Vec<String>,
    pub stats: SimStats,
}

impl SimOutcome {
    /// A digest of the whole trace (to compare runs at a glance).
    pub fn trace_digest(&self) -> u64 {
        let mut buf = Vec::new();
        for l in &self.trace {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        fnv(&buf)
    }

    /// The checks: no safety violation recorded and every key's history
    /// linearizable (registers `r*`, counter `c*`). `Ok` is a one-line
    /// summary; `Err` says what failed and how to reproduce the seed.
    pub fn check(&self) -> Result<String, String> {
        let mut problems = self.violations.clone();
        let budget = Budget::steps(5_000_000);
        check_model(
            &self.history,
            "r",
            &cairn_check::Register,
            &budget,
            &mut problems,
        );
        check_model(
            &self.history,
            "c",
            &cairn_check::Counter,
            &budget,
            &mut problems,
        );
        let s = &self.stats;
        let summary = format!(
            "seed {}: {} nodes, {} msgs ({} lost, {} dup), {} partitions, {} crashes, \
             {} restarts, {} leader ids ({} sharing a term), {} snapshot installs, ops ok/fail/info {}/{}/{}, \
             final applied {:?}, trace {:016x}",
            self.seed,
            self.nodes,
            s.messages,
            s.lost,
            s.duplicated,
            s.partitions,
            s.crashes,
            s.restarts,
            s.leader_ids,
            s.shared_terms,
            s.snapshots_installed,
            s.ops_ok,
            s.ops_fail,
            s.ops_info,
            s.final_applied,
            self.trace_digest()
        );
        if problems.is_empty() {
            return Ok(summary);
        }
        let tail: Vec<&String> = self.trace.iter().rev().take(20).rev().collect();
        Err(format!(
            "{summary}\nFAILED ({} problems):\n{}\nlast trace lines:\n{}\nreproduce: {}",
            problems.len(),
            problems.join("\n"),
            tail.iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            REPRODUCE.replace("{seed}", &self.seed.to_string())
        ))
    }
}

fn check_model<M: Model>(
    h: &History,
    prefix: &str,
    model: &M,
    budget: &Budget,
    problems: &mut Vec<String>,
) {
    let sub = History::from(
        h.ops
            .iter()
            .filter(|o| o.key.starts_with(prefix))
            .cloned()
            .collect::<Vec<Op>>(),
    );
    match cairn_check::check(&sub, model, budget) {
        Err(e) => problems.push(format!("{} history malformed: {e}", model.name())),
        Ok(rep) => {
            for (k, r) in &rep.keys {
                match r {
                    KeyResult::Linearizable { .. } => {}
                    KeyResult::NotLinearizable { witness, .. } => problems.push(format!(
                        "key {k} ({}) is not linearizable:\n{}",
                        model.name(),
                        witness.describe(&sub)
                    )),
                    KeyResult::Unknown { steps, reason } => problems.push(format!(
                        "key {k} ({}): checker gave up after {steps} steps ({reason:?})",
                        model.name()
                    )),
                }
            }
        }
    }
}

/// Runs one seed to the end. `Err` only when the simulation could not be
/// set up (runtime, temporary directory); failed checks are in the
/// outcome ([`SimOutcome::check`]).
pub fn run(cfg: SimConfig) -> Result<SimOutcome, String> {
    if cfg.nodes == 0 || cfg.clients == 0 {
        return Err("nodes and clients must be positive".into());
    }
    let dir = TempDir::new(cfg.seed).map_err(|e| format!("temp dir: {e}"))?;
    let mut slots = BTreeMap::new();
    for id in 1..=cfg.nodes as u64 {
        let log = GroupLog::new(0, LogStore::volatile(), GroupRecovered::default())
            .map_err(|e| format!("log: {e}"))?;
        slots.insert(
            id,
            Slot {
                log,
                snap: dir.0.join(format!("n{id}.snap")),
                inc: 0,
                live: None,
            },
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let out = rt.block_on(simulate(cfg, slots));
    // Tasks still parked (old incarnations' leftovers) go with the runtime.
    drop(rt);
    Ok(out)
}

/// A per-run directory for the nodes' snapshot files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(seed: u64) -> std::io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "cairn-sim-{}-{seed}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------
// The world: nodes, fault settings, observations.

const HEARTBEAT_MS: u64 = 100;
/// How long a client waits for a reply before it records the operation
/// as indeterminate. Long, because every indeterminate write stays open
/// to the end of the history and the checker's search grows with them.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Register keys per run (the counter is one more key, `c0`).
const REGISTERS: u64 = 5;
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Live {
    raft: Raft,
    host: Arc<SimHost>,
    dead: Arc<AtomicBool>,
    /// The log's last index when this incarnation started: no read before
    /// the state machine applied it (as `read_barrier`, node.rs).
    read_fence: u64,
}

/// A node's durable part (log, snapshot file) outlives its incarnations.
struct Slot {
    log: GroupLog,
    snap: PathBuf,
    inc: u64,
    live: Option<Live>,
}

struct Faults {
    loss_pm: u32,
    dup_pm: u32,
    delay_ms: (u64, u64),
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(u64, u64)>,
}

impl Faults {
    fn calm() -> Faults {
        Faults {
            loss_pm: 0,
            dup_pm: 0,
            delay_ms: (1, 5),
            blocked: BTreeSet::new(),
        }
    }
}

enum Fate {
    Lost(&'static str),
    After(u64),
}

struct World {
    start: Instant,
    last_ts: u64,
    trace: Vec<String>,
    net_rng: Rng,
    node_rng: Rng,
    faults: Faults,
    slots: BTreeMap<u64, Slot>,
    /// Leader ids (term, node) seen.
    leaders: BTreeSet<(u64, u64)>,
    /// (term, node, index) → digest of the entry sent under that log id.
    log_ids: BTreeMap<(u64, u64, u64), u64>,
    /// index → (log id, entry digest) of what was applied there.
    applied: BTreeMap<u64, (LogId, u64)>,
    /// index → (log id, keyspace digest) right after applying it.
    states: BTreeMap<u64, (LogId, u64)>,
    violations: Vec<String>,
    history: Vec<Op>,
    next_msg: u64,
    stats: SimStats,
}

impl World {
    /// Simulated nanoseconds since the start, strictly increasing: paused
    /// time moves in whole milliseconds, so events within one millisecond
    /// get consecutive nanoseconds in the order they happened.
    fn stamp(&mut self) -> u64 {
        let e = self.start.elapsed().as_nanos() as u64;
        let t = e.max(self.last_ts + 1);
        self.last_ts = t;
        t
    }

    fn log(&mut self, ev: String) {
        let t = self.stamp();
        self.trace
            .push(format!("{:>6}.{:06} {ev}", t / 1_000_000, t % 1_000_000));
    }

    fn violation(&mut self, v: String) {
        self.log(format!("VIOLATION {v}"));
        self.violations.push(v);
    }

    fn fate(&mut self, from: u64, to: u64) -> Fate {
        if self.faults.blocked.contains(&(from, to)) {
            return Fate::Lost("partitioned");
        }
        if self.net_rng.permille(self.faults.loss_pm) {
            return Fate::Lost("dropped");
        }
        let (lo, hi) = self.faults.delay_ms;
        Fate::After(self.net_rng.range(lo, hi + 1))
    }

    fn current(&self, id: u64, inc: u64) -> bool {
        self.slots
            .get(&id)
            .is_some_and(|s| s.inc == inc && s.live.is_some())
    }
}

struct Shared {
    cfg: SimConfig,
    world: Mutex<World>,
}

#[derive(Clone)]
pub(crate) struct Sim(Arc<Shared>);

impl Recorder for Shared {
    fn applied(&self, node: u64, before: Option<LogId>, entries: &[Entry]) {
        let mut w = self.world.lock();
        let mut expect = before.map_or(0, |l| l.index + 1);
        for e in entries {
            let i = e.log_id.index;
            if i != expect {
                w.violation(format!(
                    "n{node} applied index {i} after {before:?} (expected {expect})"
                ));
            }
            expect = i + 1;
            let d = fnv(&postcard::to_allocvec(e).unwrap_or_default());
            match w.applied.get(&i).copied() {
                Some((id, dd)) if (id, dd) != (e.log_id, d) => w.violation(format!(
                    "state machine safety: n{node} applied {} at index {i} (digest {d:x}) \
                     but {id} (digest {dd:x}) was applied there before",
                    e.log_id
                )),
                Some(_) => {}
                None => {
                    w.applied.insert(i, (e.log_id, d));
                }
            }
        }
    }

    fn state(&self, node: u64, at: LogId, digest: u64, how: &str) {
        let mut w = self.world.lock();
        if how == "snapshot" {
            w.stats.snapshots_installed += 1;
            w.log(format!("n{node} installed snapshot at {at}"));
        }
        match w.states.get(&at.index).copied() {
            Some((id, d)) if (id, d) != (at, digest) => w.violation(format!(
                "replicas diverged: n{node} has state {digest:x} after {at} ({how}), \
                 another node had {d:x} after {id}"
            )),
            Some(_) => {}
            None => {
                w.states.insert(at.index, (at, digest));
            }
        }
    }
}

fn raft_config(election_ms: u64) -> Result<Arc<Config>, String> {
    let c = Config {
        cluster_name: "cairn-sim".into(),
        heartbeat_interval: HEARTBEAT_MS,
        // openraft draws the timeout from min..max with rand::thread_rng,
        // which no seed controls: a range of one millisecond makes the
        // draw constant. The simulation picks `election_ms` per node
        // incarnation from its own seeded generator instead.
        election_timeout_min: election_ms,
        election_timeout_max: election_ms + 1,
        max_payload_entries: 16,
        // Small, so snapshots, purges and snapshot installs happen.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 10,
        snapshot_max_chunk_size: 256,
        ..Default::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Sim {
    fn lock(&self) -> parking_lot::MutexGuard<'_, World> {
        self.0.world.lock()
    }

    fn log(&self, ev: String) {
        self.lock().log(ev);
    }

    /// Records that `node` leads with leader id (`term`, `node`). cairn
    /// runs openraft's default "advanced" leader ids: a term may have
    /// several leaders, told apart by node id (log ids carry both), and a
    /// restarted leader resumes with its leader id. So "one leader per
    /// term" is no invariant here; its purpose — one entry per log id —
    /// is checked directly in [`Sim::observe_entries`].
    pub(crate) fn observe_leader(&self, term: u64, node: u64, via: &str) {
        let mut w = self.lock();
        if w.leaders.insert((term, node)) {
            if w.leaders.range((term, 0)..=(term, u64::MAX)).count() > 1 {
                w.stats.shared_terms += 1;
            }
            w.stats.leader_ids += 1;
            w.log(format!("leader n{node} term {term} (via {via})"));
        }
    }

    /// Every entry a leader sends: one log id (leader id and index) must
    /// always name the same entry (election safety, as Raft's log matching
    /// needs it).
    pub(crate) fn observe_entries(&self, from: u64, entries: &[Entry]) {
        let mut w = self.lock();
        for e in entries {
            let id = e.log_id;
            let key = (id.leader_id.term, id.leader_id.node_id, id.index);
            let d = fnv(&postcard::to_allocvec(e).unwrap_or_default());
            match w.log_ids.get(&key).copied() {
                Some(d0) if d0 != d => w.violation(format!(
                    "n{from} sent entry {id} with digest {d:x}, \
                     but {d0:x} was sent under that log id before"
                )),
                Some(_) => {}
                None => {
                    w.log_ids.insert(key, d);
                }
            }
        }
    }

    fn live(&self, id: u64) -> Option<Live> {
        self.lock().slots.get(&id).and_then(|s| s.live.clone())
    }

    /// One RPC from `from` (incarnation `inc`) to `to`: the request's fate,
    /// its delivery, the reply's fate. `None` = lost (after `ttl`, as a
    /// real caller would time out).
    pub(crate) async fn transmit(
        &self,
        from: u64,
        inc: u64,
        to: u64,
        kind: Kind,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + ttl;
        let (id, fate, dup) = {
            let mut w = self.lock();
            if !w.current(from, inc) {
                // A leftover task of a crashed incarnation: it is gone.
                return None;
            }
            let id = w.next_msg;
            w.next_msg += 1;
            w.stats.messages += 1;
            let fate = w.fate(from, to);
            let dup_pm = w.faults.dup_pm;
            let dup = match fate {
                Fate::After(_) if w.net_rng.permille(dup_pm) => {
                    let (lo, hi) = w.faults.delay_ms;
                    Some(w.net_rng.range(lo, hi * 4 + 1))
                }
                _ => None,
            };
            let what = match (&fate, dup) {
                (Fate::Lost(why), _) => {
                    w.stats.lost += 1;
                    format!("lost ({why})")
                }
                (Fate::After(d), None) => format!("+{d}ms"),
                (Fate::After(d), Some(d2)) => {
                    w.stats.duplicated += 1;
                    format!("+{d}ms, duplicate +{d2}ms")
                }
            };
            w.log(format!("m{id} n{from}->n{to} {} {what}", kind.name()));
            (id, fate, dup)
        };
        if let Some(d2) = dup {
            let sim = self.clone();
            let copy = body.clone();
            tokio::spawn(async move {
                sleep(ms(d2)).await;
                // The duplicate's reply goes nowhere.
                let _ = sim.arrive(id, from, to, kind, &copy, true).await;
            });
        }
        let delay = match fate {
            Fate::Lost(_) => {
                sleep_until(deadline).await;
                return None;
            }
            Fate::After(d) => d,
        };
        sleep(ms(delay)).await;
        let Some(resp) = self.arrive(id, from, to, kind, &body, false).await else {
            sleep_until(deadline).await;
            return None;
        };
        let fate = {
            let mut w = self.lock();
            let fate = w.fate(to, from);
            match &fate {
                Fate::Lost(why) => {
                    w.stats.lost += 1;
                    w.log(format!("m{id} reply lost ({why})"));
                }
                Fate::After(d) => w.log(format!("m{id} reply +{d}ms")),
            }
            fate
        };
        match fate {
            Fate::Lost(_) => {
                sleep_until(deadline).await;
                None
            }
            Fate::After(d) => {
                sleep(ms(d)).await;
                let mut w = self.lock();
                if !w.current(from, inc) {
                    w.log(format!("m{id} reply to a crashed node"));
                    return None;
                }
                w.log(format!("m{id} reply delivered"));
                Some(resp)
            }
        }
    }

    /// A request reaches `to` (unless a partition or a crash got in the
    /// way meanwhile) and is handled by its current incarnation.
    async fn arrive(
        &self,
        id: u64,
        from: u64,
        to: u64,
        kind: Kind,
        body: &[u8],
        dup: bool,
    ) -> Option<Vec<u8>> {
        let tag = if dup { " (duplicate)" } else { "" };
        let (raft, tinc) = {
            let mut w = self.lock();
            if w.faults.blocked.contains(&(from, to)) {
                w.log(format!("m{id}{tag} cut off before arrival"));
                return None;
            }
            let Some((live, inc)) = w
                .slots
                .get(&to)
                .and_then(|s| s.live.clone().map(|l| (l, s.inc)))
            else {
                w.log(format!("m{id}{tag} target down"));
                return None;
            };
            w.log(format!("m{id}{tag} arrives"));
            (live.raft, inc)
        };
        let out = net::handle(&raft, kind, body).await;
        let mut w = self.lock();
        let Some(out) = out else {
            w.violation(format!("m{id}: a {} body did not decode", kind.name()));
            return None;
        };
        if !w.current(to, tinc) {
            w.log(format!("m{id}{tag} target crashed while handling"));
            return None;
        }
        Some(out)
    }

    /// Starts a new incarnation of node `id` over its durable log and
    /// snapshot file, with a fresh keyspace and a seeded election timeout.
    async fn start_node(&self, id: u64) -> Result<(), String> {
        let (log, snap, inc, election) = {
            let mut w = self.lock();
            let election = w.node_rng.range(300, 600);
            let slot = w.slots.get_mut(&id).ok_or("no such node")?;
            if slot.live.is_some() {
                return Ok(());
            }
            slot.inc += 1;
            (slot.log.clone(), slot.snap.clone(), slot.inc, election)
        };
        let read_fence = log.last_index();
        let host = Arc::new(SimHost::new(self.0.cfg.sabotage == Sabotage::BrokenCas));
        let sm = GroupSm::open(0, host.clone(), Some(snap)).map_err(|e| e.to_string())?;
        let dead = Arc::new(AtomicBool::new(false));
        let raft = Raft::new(
            id,
            raft_config(election)?,
            SimFactory {
                sim: self.clone(),
                from: id,
                inc,
            },
            SimLog {
                inner: log,
                dead: dead.clone(),
                forget_vote: false,
            },
            SimSm {
                node: id,
                inner: sm,
                host: host.clone(),
                dead: dead.clone(),
                rec: self.0.clone(),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        {
            let mut w = self.lock();
            if let Some(s) = w.slots.get_mut(&id) {
                s.live = Some(Live {
                    raft: raft.clone(),
                    host,
                    dead,
                    read_fence,
                });
            }
            if inc > 1 {
                w.stats.restarts += 1;
            }
            w.log(format!(
                "n{id} started (incarnation {inc}, election timeout {election}ms)"
            ));
        }
        tokio::spawn(watch_leader(self.clone(), id, raft.metrics()));
        Ok(())
    }

    /// Crashes node `id`: its storage refuses writes from now on, its
    /// messages in flight are lost, and its openraft instance is shut down.
    /// The log and the snapshot file stay (a durable crash).
    /// `end`: the shutdown at the end of the run, not counted as a fault.
    async fn crash(&self, id: u64, end: bool) {
        let live = {
            let mut w = self.lock();
            let Some(l) = w.slots.get_mut(&id).and_then(|s| s.live.take()) else {
                return;
            };
            if end {
                w.log(format!("n{id} stopped"));
            } else {
                w.stats.crashes += 1;
                w.log(format!("n{id} crashed"));
            }
            l
        };
        live.dead.store(true, Ordering::SeqCst);
        let _ = timeout(Duration::from_secs(5), live.raft.shutdown()).await;
    }

    fn set_blocked(&self, blocked: BTreeSet<(u64, u64)>, what: String) {
        let mut w = self.lock();
        if !blocked.is_empty() {
            w.stats.partitions += 1;
        }
        w.faults.blocked = blocked;
        w.log(what);
    }
}

/// Records every leader the node's metrics show (one leader per term).
async fn watch_leader(
    sim: Sim,
    id: u64,
    mut rx: tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, NodeInfo>>,
) {
    loop {
        let term = {
            let m = rx.borrow_and_update();
            (m.state == ServerState::Leader).then_some(m.current_term)
        };
        if let Some(t) = term {
            sim.observe_leader(t, id, "metrics");
        }
        // Ends when the incarnation shuts down (the sender is dropped).
        if rx.changed().await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------
// Clients.

enum Res {
    Ok(Value),
    /// Definitely not applied; maybe a hint where the leader is.
    Fail(Option<u64>),
    Info,
}

fn parse_reply(call: &Call, r: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(r).ok()?.strip_suffix("\r\n")?;
    match (call, s.as_bytes().first()) {
        (Call::Write(_), Some(b'+')) => Some(Value::Ack),
        (Call::Cas { .. }, Some(b':')) => Some(Value::Bool(&s[1..] == "1")),
        (Call::Add(_), Some(b':')) => s[1..].parse().ok().map(Value::Int),
        _ => None,
    }
}

async fn exec(sim: &Sim, target: u64, key: &str, call: &Call) -> Res {
    let Some(live) = sim.live(target) else {
        return Res::Fail(None);
    };
    let sabotage = sim.0.cfg.sabotage;
    if *call == Call::Read {
        let value = |h: &SimHost| match h.get(key) {
            Some(v) => Value::Int(v),
            None => Value::Nil,
        };
        if sabotage == Sabotage::StaleReads {
            return Res::Ok(value(&live.host));
        }
        let read = async {
            let applied = |m: &openraft::RaftMetrics<u64, NodeInfo>| {
                m.last_applied.map(|l| l.index).unwrap_or(0)
            };
            // The read fence, as node.rs's read_barrier: a restarted
            // leader commits an empty entry, so everything before it is
            // applied, before it serves any read.
            let mut rx = live.raft.metrics();
            if applied(&rx.borrow()) < live.read_fence {
                let ts_ms = sim.0.world.lock().start.elapsed().as_millis() as u64;
                let blank = Batch {
                    ts_ms,
                    cmds: Vec::new(),
                };
                if let Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) =
                    live.raft.client_write(blank).await
                {
                    return Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)));
                }
                while applied(&rx.borrow_and_update()) < live.read_fence {
                    if rx.changed().await.is_err() {
                        return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
                    }
                }
            }
            // openraft's ensure_linearizable, with the wait for the state
            // machine done here (openraft's own wait uses an unbiased
            // select!, which draws from tokio's unseeded RNG).
            let (read_id, applied) = live.raft.get_read_log_id().await?;
            let want = read_id.map(|l| l.index);
            if want > applied.map(|l| l.index) {
                let mut rx = live.raft.metrics();
                loop {
                    if rx.borrow_and_update().last_applied.map(|l| l.index) >= want {
                        break;
                    }
                    if rx.changed().await.is_err() {
                        return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
                    }
                }
            }
            Ok::<(), RaftError<u64, CheckIsLeaderError<u64, NodeInfo>>>(())
        };
        return match timeout(OP_TIMEOUT, read).await {
            Ok(Ok(())) if !live.dead.load(Ordering::SeqCst) => Res::Ok(value(&live.host)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Res::Fail(f.leader_id)
            }
            _ => Res::Fail(None),
        };
    }
    let (leading, leader) = {
        let m = live.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader, m.current_leader)
    };
    if !leading {
        return Res::Fail(leader);
    }
    let argv: Vec<String> = match call {
        Call::Write(v) => vec!["SET".into(), key.into(), v.to_string()],
        Call::Cas { expect, new } => {
            vec![
                "CAS".into(),
                key.into(),
                expect.to_string(),
                new.to_string(),
            ]
        }
        Call::Add(d) => vec!["INCRBY".into(), key.into(), d.to_string()],
        _ => return Res::Fail(None),
    };
    let mut cmds = Vec::new();
    encode_argv(&mut cmds, &argv);
    let ts_ms = sim.0.world.lock().start.elapsed().as_millis() as u64;
    let batch = Batch { ts_ms, cmds };
    if sabotage == Sabotage::AckBeforeCommit && matches!(call, Call::Write(_)) {
        return match live.raft.client_write_ff(batch).await {
            Ok(_) => Res::Ok(Value::Ack),
            Err(_) => Res::Info,
        };
    }
    match timeout(OP_TIMEOUT, live.raft.client_write(batch)).await {
        Ok(Ok(resp)) => match resp.data.get(0).and_then(|r| parse_reply(call, r)) {
            Some(v) => Res::Ok(v),
            None => {
                sim.lock().violation(format!(
                    "{call:?} on {key} got an unexpected reply {:?}",
                    resp.data.get(0).map(String::from_utf8_lossy)
                ));
                Res::Info
            }
        },
        // Proposed, fate unknown (leadership lost, shut down, timed out).
        _ => Res::Info,
    }
}

async fn client(sim: Sim, p: u64, mut rng: Rng, nodes: Vec<u64>, until: Instant) {
    let pick = |rng: &mut Rng| nodes[rng.below(nodes.len() as u64) as usize];
    let mut target = pick(&mut rng);
    let mut seq: i64 = 0;
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    while Instant::now() < until {
        sleep(ms(rng.range(5, 60))).await;
        seq += 1;
        let unique = p as i64 * 1_000_000 + seq;
        let r = rng.below(100);
        let reg = format!("r{}", rng.below(REGISTERS));
        let (key, call) = match r {
            0..=29 => (reg, Call::Write(unique)),
            30..=59 => (reg, Call::Read),
            60..=74 => {
                let expect = seen.get(&reg).copied().unwrap_or(0);
                (
                    reg,
                    Call::Cas {
                        expect,
                        new: unique,
                    },
                )
            }
            75..=89 => ("c0".to_string(), Call::Add(rng.range(1, 5) as i64)),
            _ => ("c0".to_string(), Call::Read),
        };
        if sim.0.cfg.sabotage == Sabotage::StaleReads && call == Call::Read {
            target = pick(&mut rng);
        }
        let invoke_ns = {
            let mut w = sim.lock();
            w.log(format!("p{p} invokes {call:?} on {key} at n{target}"));
            w.last_ts
        };
        let res = exec(&sim, target, &key, &call).await;
        let mut w = sim.lock();
        let done = w.stamp();
        let op = match res {
            Res::Ok(v) => {
                match (&call, &v) {
                    (Call::Read, Value::Int(x)) => {
                        seen.insert(key.clone(), *x);
                    }
                    (Call::Write(x), _) => {
                        seen.insert(key.clone(), *x);
                    }
                    (Call::Cas { new, .. }, Value::Bool(true)) => {
                        seen.insert(key.clone(), *new);
                    }
                    _ => {}
                }
                w.stats.ops_ok += 1;
                Op::ok(p, &key, call, invoke_ns, done, v)
            }
            Res::Fail(hint) => {
                target = match hint {
                    Some(l) if nodes.contains(&l) => l,
                    _ => pick(&mut rng),
                };
                w.stats.ops_fail += 1;
                Op::fail(p, &key, call, invoke_ns, done)
            }
            Res::Info => {
                target = pick(&mut rng);
                w.stats.ops_info += 1;
                Op::info(p, &key, call, invoke_ns)
            }
        };
        let line = format!("p{p} {:?}", op.outcome);
        w.log(line);
        w.history.push(op);
    }
}

// ---------------------------------------------------------------------
// Nemesis.

async fn nemesis(sim: Sim, mut rng: Rng, nodes: Vec<u64>, until: Instant) {
    let n = nodes.len() as u64;
    let pick = |rng: &mut Rng| nodes[rng.below(n) as usize];
    while Instant::now() < until {
        sleep(ms(rng.range(200, 2500))).await;
        if Instant::now() >= until {
            break;
        }
        match rng.below(12) {
            0 | 1 => {
                let a = pick(&mut rng);
                let mut b = BTreeSet::new();
                for &o in nodes.iter().filter(|&&o| o != a) {
                    b.insert((a, o));
                    b.insert((o, a));
                }
                sim.set_blocked(b, format!("partition: n{a} isolated"));
            }
            2 => {
                let a = pick(&mut rng);
                let b = pick(&mut rng);
                if a != b {
                    sim.set_blocked(
                        BTreeSet::from([(a, b)]),
                        format!("partition: one-way n{a} -/-> n{b}"),
                    );
                }
            }
            3 => {
                // A random split into two non-empty sides.
                let mask = rng.range(1, (1 << n) - 1);
                let side = |id: u64| (mask >> (id - 1)) & 1 == 1;
                let mut b = BTreeSet::new();
                for &x in &nodes {
                    for &y in &nodes {
                        if side(x) != side(y) {
                            b.insert((x, y));
                        }
                    }
                }
                let left: Vec<u64> = nodes.iter().copied().filter(|&x| side(x)).collect();
                sim.set_blocked(b, format!("partition: {left:?} | rest"));
            }
            4 | 5 => sim.set_blocked(BTreeSet::new(), "partition healed".into()),
            6 | 7 => {
                let a = pick(&mut rng);
                sim.crash(a, false).await;
            }
            8 | 9 => {
                let down: Vec<u64> = {
                    let w = sim.lock();
                    nodes
                        .iter()
                        .copied()
                        .filter(|i| w.slots.get(i).is_some_and(|s| s.live.is_none()))
                        .collect()
                };
                if !down.is_empty() {
                    let a = down[rng.below(down.len() as u64) as usize];
                    if let Err(e) = sim.start_node(a).await {
                        sim.lock().violation(format!("n{a} failed to restart: {e}"));
                    }
                }
            }
            10 => {
                let loss = [0, 20, 100, 300][rng.below(4) as usize];
                let mut w = sim.lock();
                w.faults.loss_pm = loss;
                w.log(format!("loss {loss}‰"));
            }
            _ => {
                let delay = [(1, 5), (1, 15), (5, 45)][rng.below(3) as usize];
                let dup = [0, 10, 50][rng.below(3) as usize];
                let mut w = sim.lock();
                w.faults.delay_ms = delay;
                w.faults.dup_pm = dup;
                w.log(format!("delay {delay:?}ms, duplicates {dup}‰"));
            }
        }
    }
}

// ---------------------------------------------------------------------
// The run.

async fn simulate(cfg: SimConfig, slots: BTreeMap<u64, Slot>) -> SimOutcome {
    let mut rng = Rng::new(cfg.seed);
    let nodes: Vec<u64> = slots.keys().copied().collect();
    let world = World {
        start: Instant::now(),
        last_ts: 0,
        trace: Vec::new(),
        net_rng: rng.fork(),
        node_rng: rng.fork(),
        faults: Faults::calm(),
        slots,
        leaders: BTreeSet::new(),
        log_ids: BTreeMap::new(),
        applied: BTreeMap::new(),
        states: BTreeMap::new(),
        violations: Vec::new(),
        history: Vec::new(),
        next_msg: 0,
        stats: SimStats::default(),
    };
    let sim = Sim(Arc::new(Shared {
        cfg: cfg.clone(),
        world: Mutex::new(world),
    }));
    sim.log(format!(
        "seed {} nodes {} clients {} duration {:?} faults {} sabotage {:?}",
        cfg.seed, cfg.nodes, cfg.clients, cfg.duration, cfg.faults, cfg.sabotage
    ));
    for &id in &nodes {
        if let Err(e) = sim.start_node(id).await {
            sim.lock().violation(format!("n{id} failed to start: {e}"));
        }
    }
    let members: BTreeMap<u64, NodeInfo> = nodes
        .iter()
        .map(|&id| {
            (
                id,
                NodeInfo {
                    peer: format!("n{id}"),
                    resp: format!("n{id}"),
                },
            )
        })
        .collect();
    if let Some(l) = sim.live(nodes[0]) {
        if let Err(e) = l.raft.initialize(members).await {
            sim.lock().violation(format!("initialize failed: {e}"));
        }
    }
    let until = Instant::now() + cfg.duration;
    let mut tasks = Vec::new();
    for p in 0..cfg.clients as u64 {
        tasks.push(tokio::spawn(client(
            sim.clone(),
            p + 1,
            rng.fork(),
            nodes.clone(),
            until,
        )));
    }
    if cfg.faults {
        tasks.push(tokio::spawn(nemesis(
            sim.clone(),
            rng.fork(),
            nodes.clone(),
            until,
        )));
    }
    for t in tasks {
        if let Err(e) = t.await {
            sim.lock()
                .violation(format!("a client or nemesis task failed: {e}"));
        }
    }
    settle(&sim, &nodes).await;
    final_checks(&sim, &nodes).await;
    // Shut everything down, and break the reference cycles
    // (world → raft → storage → world).
    for &id in &nodes {
        sim.crash(id, true).await;
    }
    let mut w = sim.lock();
    w.slots.clear();
    let history = History::from(std::mem::take(&mut w.history));
    SimOutcome {
        seed: cfg.seed,
        nodes: cfg.nodes,
        trace: std::mem::take(&mut w.trace),
        history,
        violations: std::mem::take(&mut w.violations),
        stats: w.stats.clone(),
    }
}

/// Heals every fault, restarts every crashed node and waits (bounded)
/// until all nodes applied everything the leader has, in its own term.
async fn settle(sim: &Sim, nodes: &[u64]) {
    {
        let mut w = sim.lock();
        w.faults = Faults::calm();
        w.log("healed: no partitions, no loss".into());
    }
    for &id in nodes {
        if let Err(e) = sim.start_node(id).await {
            sim.lock()
                .violation(format!("n{id} failed to restart: {e}"));
        }
    }
    let until = Instant::now() + SETTLE;
    let mut last = String::new();
    while Instant::now() < until {
        sleep(ms(100)).await;
        let mut leader = None;
        let mut applied = BTreeSet::new();
        last.clear();
        for &id in nodes {
            let Some(l) = sim.live(id) else { continue };
            let m = l.raft.metrics().borrow().clone();
            if m.state == ServerState::Leader {
                leader = Some((m.current_term, m.last_log_index));
            }
            applied.insert(m.last_applied.map(|l| (l.leader_id.term, l.index)));
            last.push_str(&format!(
                " n{id}: {:?} term {} last log {:?} applied {:?};",
                m.state, m.current_term, m.last_log_index, m.last_applied
            ));
        }
        if let Some((term, last_index)) = leader {
            if applied.len() == 1 && applied.first() == Some(&last_index.map(|i| (term, i))) {
                let mut w = sim.lock();
                w.stats.final_applied = last_index;
                w.log(format!("converged at index {last_index:?} term {term}"));
                return;
            }
        }
    }
    sim.lock().violation(format!(
        "no convergence within {SETTLE:?} after healing:{last}"
    ));
}

/// After convergence: the same keyspace everywhere (and the one recorded
/// for that index), and every node's log agreeing with what was applied
/// for the committed prefix (log matching).
async fn final_checks(sim: &Sim, nodes: &[u64]) {
    let mut digests = BTreeMap::new();
    for &id in nodes {
        let Some(l) = sim.live(id) else { continue };
        digests.insert(id, (l.host.digest(), l.host.dump()));
        let applied = l.raft.metrics().borrow().last_applied;
        let Some(applied) = applied else { continue };
        let mut log = match sim.lock().slots.get(&id) {
            Some(s) => s.log.clone(),
            None => continue,
        };
        let entries = match log.try_get_log_entries(..=applied.index).await {
            Ok(e) => e,
            Err(e) => {
                sim.lock()
                    .violation(format!("n{id}: reading the log failed: {e}"));
                continue;
            }
        };
        let mut w = sim.lock();
        for e in entries {
            let d = fnv(&postcard::to_allocvec(&e).unwrap_or_default());
            if let Some(&(id2, d2)) = w.applied.get(&e.log_id.index) {
                if (id2, d2) != (e.log_id, d) {
                    w.violation(format!(
                        "log matching: n{id} holds {} (digest {d:x}) at committed index {}, \
                         but {id2} (digest {d2:x}) was applied there",
                        e.log_id, e.log_id.index
                    ));
                }
            }
        }
        if let Some(&(at, d)) = w.states.get(&applied.index) {
            let (mine, _) = digests[&id];
            if at != applied || d != mine {
                w.violation(format!(
                    "n{id} state {mine:x} after {applied} differs from the recorded {d:x} after {at}"
                ));
            }
        }
    }
    let distinct: BTreeSet<u64> = digests.values().map(|(d, _)| *d).collect();
    if distinct.len() > 1 {
        let states: Vec<String> = digests
            .iter()
            .map(|(id, (d, kv))| format!("n{id} {d:x} {kv:?}"))
            .collect();
        sim.lock().violation(format!(
            "state machines did not converge: {}",
            states.join("; ")
        ));
    }
}
