//! The lab's workloads: concurrent client processes issue random commands
//! on a few keys over plain RESP and record a [`cairn_check::History`]:
//! - register: `GET`, `SET`, `SET k v IFEQ old` (checked with `Register`);
//! - counter: `GET`, `INCRBY` (checked with `Counter`);
//! - set: unique adds and reads of a grow-only set, then a final read of
//!   everything (checked with [`cairn_check::check_set`]); see
//!   [`Kind::Set`] for how a set is laid out on cairn, which has no `SADD`;
//! - lock: contended `LOCK.ACQUIRE ... WAIT`, fenced `INCRBY`s (some after
//!   stalling past the lease), `LOCK.RELEASE`, then a final read of every
//!   fenced counter; recorded as a [`cairn_check::LockHistory`] (see
//!   [`Kind::Lock`] and [`run_locks`]).
//!
//! Client slot `i` talks to target `i mod n` of the configured node
//! addresses (a cluster accepts any command on any node).
//!
//! Outcomes: a reply is `Ok`; an error reply is `Fail` (the server refused
//! it: `-TRYAGAIN`, `-ERR ...`), except `-UNKNOWN` (a cluster write whose
//! fate is unknown) and errors that say the node stopped mid-way, which are
//! `Info`; a timeout or connection error is `Info` (it may or may not have
//! happened), after which the client process is retired and its slot goes
//! on as a *new* process id with a new connection (Jepsen style), so every
//! process stays sequential.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_check::{Call, FenceOutcome, FencedWrite, History, LockHistory, LockHold, Op, Value};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};

/// Workload parameters.
#[derive(Clone, Debug)]
pub struct Config {
    /// `IP:PORT` of each node; client slot `i` uses `targets[i % n]`.
    pub targets: Vec<String>,
    /// Number of keys (`<key_prefix>k0` ..).
    pub keys: usize,
    /// Prefix of every key (`lab:` gives `lab:k0`; a hash tag such as
    /// `{t}:` puts every key in one cluster slot).
    pub key_prefix: String,
    /// Share of reads (`GET`) in percent; the rest are writes.
    pub read_percent: u8,
    /// Rotate keys Jepsen-style: `0` = always the same `keys` keys;
    /// `N` = after about `N * keys` operations move on to `keys` fresh
    /// keys, so each key's history stays about `N` operations long and
    /// the checker can decide it quickly whatever the run's length.
    pub ops_per_key: u64,
    /// Total operations to issue (all processes together).
    pub ops: u64,
    /// Concurrent client slots.
    pub processes: usize,
    /// Per-operation (and per-connect) timeout.
    pub timeout: Duration,
    /// Stop issuing new operations after this long, if set.
    pub duration: Option<Duration>,
    /// Pause between a slot's operations.
    pub think: Duration,
    /// Seed of the operation mix.
    pub seed: u64,
    /// Which workload to run.
    pub kind: Kind,
}

/// The workloads the lab can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// GET / SET / SET IFEQ with unique values (checked with `Register`).
    #[default]
    Register,
    /// GET / INCRBY 1..=5 (checked with `Counter`).
    Counter,
    /// A grow-only set per key, checked with `check_set`: every
    /// acknowledged add must be in the final read, nothing never (possibly)
    /// added may be read.
    ///
    /// cairn has no set type, so element `x` of set `S` is its own string
    /// key, `SET <S>:<x> x` ([`set_element_key`]), in `S`'s hash slot (the
    /// set key's hash tag, or `{S}` when it has none), so every element of
    /// a set lives in one Raft group. A read of `S` is `MGET` of every
    /// element ever attempted on `S` (acknowledged, failed or
    /// indeterminate) plus a few ids never issued yet ([`SET_DECOYS`]), in
    /// chunks of [`SET_READ_CHUNK`]: `MGET` is a keyed read, so cairn
    /// serves it linearizably (read index), unlike `KEYS`/`SCAN`, which
    /// read one node's local copy and would miss or invent elements on a
    /// lagging node. Chunking keeps the read sound: the set only grows and
    /// every chunk runs after the read's invocation, so an add
    /// acknowledged before it must show in its chunk. Failed adds are read
    /// too, so a `-TRYAGAIN` that was applied after all shows up as an
    /// unexpected element.
    ///
    /// When the run's time or operations are up, every set is read once
    /// more (retrying over the targets for at most [`FINAL_READ_LIMIT`]
    /// while the cluster recovers): that final read is what lost
    /// acknowledged adds are judged by. `read_percent` sets the share of
    /// reads during the run (they can only show unexpected elements).
    Set,
    /// A list per key that only grows, checked like [`Kind::Set`] plus
    /// "no element twice" (`check_set`'s duplicates): an add is `RPUSH key
    /// id` of a unique id, a read `LRANGE key 0 -1` (a keyed read, so
    /// linearizable in cairn). No add is ever retried, so an element read
    /// twice is a push applied twice (a forwarded or proposed command
    /// replayed by the server), and a missing acknowledged one is lost.
    List,
    /// Distributed locks with fenced writes, checked with
    /// [`cairn_check::check_lock_history`]: holders never overlap, tokens
    /// grow, a stale holder's fenced write is never accepted, the fenced
    /// counters lose and double nothing.
    ///
    /// `keys` locks `<prefix>lock<i>` ([`lock_name`]), each guarding a
    /// counter in its slot ([`fenced_counter_key`]). A slot's owner id is
    /// `p<process>`. Each cycle: `LOCK.ACQUIRE lock owner lease WAIT w`
    /// (lease from [`LOCK_LEASE_MS`], `w` from [`LOCK_WAIT_MS`] and never
    /// past the run's end; the reply may take `w` plus the op timeout),
    /// then on a grant, now and then ([`LOCK_RENEW_PERCENT`]) a
    /// `LOCK.RENEW` sent just before the lease ends (it races the leader's
    /// expiry; acknowledged, it extends the hold the checker counts), then
    /// 1 to [`LOCK_WRITES_MAX`] `INCRBY counter 1 FENCE
    /// lock token`, each maybe after a pause ([`lock_pause_ms`]): some
    /// short, some past the lease, so that stale holders write and must be
    /// refused; then `LOCK.RELEASE`. A cycle that would pause past the
    /// run's end skips to the release.
    ///
    /// The owner never asks for a lock it may still hold or wait for (a
    /// re-acquire would renew it under the same token, which the checker
    /// rightly counts as one grant given twice): after an acquire or
    /// release that failed or is indeterminate, or an indeterminate write,
    /// the process is retired and the slot goes on as a new owner; the
    /// old one's lease ends its hold. `ops_per_key` and `read_percent` do
    /// not apply. After the run every counter is read once more, retrying
    /// over the targets for at most [`FINAL_READ_LIMIT`].
    Lock,
}

/// Lease of each lock-workload grant, ms: at random in this range.
pub const LOCK_LEASE_MS: (u64, u64) = (1000, 2000);
/// `WAIT` of each lock-workload acquire, ms: at random in this range.
pub const LOCK_WAIT_MS: (u64, u64) = (500, 3000);
/// Share of lock-workload grants renewed (`LOCK.RENEW`, same lease) just
/// before their lease ends, percent.
/// (Session 12 switched this off after a lab-test failure read as a lock
/// violation; session 13 found it was the test's floor on the number of
/// grants, which renewals lower: every history was valid.)
pub const LOCK_RENEW_PERCENT: u64 = 30;
/// How long before the lease's end (by the client's clock, from its
/// acquire's send time) such a renewal is sent, ms: at random in this
/// range.
pub const LOCK_RENEW_EARLY_MS: (u64, u64) = (0, 40);
/// A stale holder's stall beyond its lease, ms: at random in this range.
pub const LOCK_STALL_PAST_LEASE_MS: (u64, u64) = (200, 800);
/// Fenced increments per grant, at most.
pub const LOCK_WRITES_MAX: u64 = 3;

/// Lock `i` of the lock workload.
pub fn lock_name(key_prefix: &str, i: u64) -> String {
    format!("{key_prefix}lock{i}")
}

/// The counter lock `lock` guards: in the lock's hash slot, as `FENCE`
/// requires.
pub fn fenced_counter_key(lock: &str) -> String {
    slot_mate(lock, "fc")
}

/// The pause (ms) before one fenced write of a holder with a
/// `lease_ms` lease: none 80% of the time, up to a quarter of the lease
/// 12%, past the lease 8% (a stale holder, like a GC pause: its write must
/// be refused, the lease having run out).
pub fn lock_pause_ms(rng: &mut Rng, lease_ms: u64) -> u64 {
    match rng.below(100) {
        0..8 => lease_ms + rng.between(LOCK_STALL_PAST_LEASE_MS),
        8..20 => rng.below(lease_ms / 4),
        _ => 0,
    }
}

/// Ids beyond the last one issued that every set read also asks for: they
/// were never added anywhere, so seeing one is a bug.
pub const SET_DECOYS: i64 = 4;
/// Keys per `MGET` of a set read.
pub const SET_READ_CHUNK: usize = 256;
/// How long the set workload keeps retrying its final reads.
pub const FINAL_READ_LIMIT: Duration = Duration::from_secs(45);

/// The key holding element `id` of set `set_key`: in the set key's hash
/// slot (its own hash tag if it has one, else `{set_key}`).
pub fn set_element_key(set_key: &str, id: i64) -> String {
    slot_mate(set_key, &id.to_string())
}

/// `<key>:<suffix>`, in `key`'s hash slot: `key`'s own hash tag if it has
/// one, else `{key}` made the tag.
pub fn slot_mate(key: &str, suffix: &str) -> String {
    let tagged = key
        .find('{')
        .is_some_and(|open| key[open + 1..].find('}').is_some_and(|len| len > 0));
    if tagged {
        format!("{key}:{suffix}")
    } else {
        format!("{{{key}}}:{suffix}")
    }
}

/// Counts of a finished run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations recorded.
    pub ops: u64,
    /// `Ok` outcomes.
    pub ok: u64,
    /// `Fail` outcomes.
    pub fail: u64,
    /// `Info` outcomes.
    pub info: u64,
    /// Process ids used.
    pub processes: u64,
    /// Failed connection attempts (no op recorded).
    pub connect_failures: u64,
    /// Replies of an unexpected shape (recorded as `Info`; a server bug).
    pub unexpected: u64,
    /// Non-`Ok` endings by cause: error codes (`TRYAGAIN`, `UNKNOWN`,
    /// `ERR`, ...), `timeout`, `io`.
    pub errors: BTreeMap<String, u64>,
    /// `Ok` outcomes per target, in `Config::targets` order.
    pub ok_per_target: Vec<u64>,
    /// Wall-clock time (ns since the Unix epoch) of the history's time 0,
    /// to line the history up with a nemesis' events.
    pub start_unix_ns: u64,
    /// Completion times (history ns) of the `Ok` outcomes of the main
    /// phase, per target (the set workload's final reads excluded): the
    /// campaign measures availability from them.
    pub ok_times: Vec<Vec<u64>>,
}

struct Shared {
    cfg: Config,
    start: Instant,
    deadline: Option<Instant>,
    issued: AtomicU64,
    next_process: AtomicU64,
    next_value: AtomicI64,
    connect_failures: AtomicU64,
    unexpected: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    ok_per_target: Vec<AtomicU64>,
    /// See [`Stats::ok_times`].
    ok_times: Mutex<Vec<Vec<u64>>>,
    /// Recently written values per key, for CAS expectations.
    recent: Mutex<BTreeMap<u64, Vec<i64>>>,
    /// Set workload: every element id ever attempted, per set (key number).
    attempted: Mutex<BTreeMap<u64, Vec<i64>>>,
    ops: Mutex<Vec<Op>>,
    /// Lock workload: what it recorded, and its commands' endings.
    locks: Mutex<LockHistory>,
    lock_ops: LockOps,
}

/// Lock workload: commands sent and how they ended.
#[derive(Default)]
struct LockOps {
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Milliseconds until the deadline (`u64::MAX` without one).
    fn ms_left(&self) -> u64 {
        self.deadline.map_or(u64::MAX, |d| {
            u64::try_from(d.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(u64::MAX)
        })
    }

    /// An `Ok` ending at `target`, completed at `complete_ns`.
    fn count_ok(&self, target: usize, complete_ns: u64) {
        if let Some(n) = self.ok_per_target.get(target) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = self
            .ok_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(target)
        {
            t.push(complete_ns);
        }
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, LockHistory> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, key: u64, v: i64) {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = recent.entry(key).or_default();
        list.push(v);
        if list.len() > 4 {
            list.remove(0);
        }
        // Forget keys of long-gone generations.
        let keep_from = key.saturating_sub(4 * self.cfg.keys as u64);
        while recent
            .first_key_value()
            .is_some_and(|(&k, _)| k < keep_from)
        {
            recent.pop_first();
        }
    }

    fn pick_expect(&self, key: u64, r: u64) -> Option<i64> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = recent.get(&key)?;
        if list.is_empty() {
            return None;
        }
        list.get(usize::try_from(r).unwrap_or(0) % list.len())
            .copied()
    }

    fn attempt(&self, key: u64, id: i64) {
        self.attempted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default()
            .push(id);
    }

    /// What a read of set `key` asks for: every id attempted on it so far
    /// and [`SET_DECOYS`] ids not issued yet.
    fn set_read_ids(&self, key: u64) -> Vec<i64> {
        let mut ids = self
            .attempted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let next = self.next_value.load(Ordering::Relaxed);
        ids.extend(next..next + SET_DECOYS);
        ids
    }

    fn count_error(&self, cause: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(cause.to_owned())
            .or_default() += 1;
    }

    fn record(&self, op: Op) {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(op);
    }
}

/// xorshift64*: enough randomness for an operation mix or a nemesis
/// schedule, no dependency; the same seed always gives the same sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }
}

enum Ending {
    Ok(Value),
    /// Definitely not applied; the cause (error code).
    Fail(String),
    /// Maybe applied; the cause.
    Info(String),
}

/// `Fail` only for an error the server sent back that says the command was
/// refused (`-TRYAGAIN` = nothing was applied, `-ERR`, `-MOVED`, ...);
/// `-UNKNOWN` (a replicated write whose fate is unknown), an error saying
/// the node stopped or a forwarded reply broke, and anything that is not a
/// server reply (I/O, dropped connection, parse error) are indeterminate.
fn classify(e: &RedisError) -> Ending {
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => {
            let code = e.code().unwrap_or("ERR").to_owned();
            let detail = e.detail().unwrap_or("").to_ascii_lowercase();
            let ambiguous = code == "UNKNOWN"
                || ["shutting down", "stopped", "malformed"]
                    .iter()
                    .any(|w| detail.contains(w));
            if ambiguous {
                Ending::Info(code)
            } else {
                Ending::Fail(code)
            }
        }
        _ => Ending::Info("io".into()),
    }
}

/// Sends `cmd`, waiting at most the operation timeout; an error reply or
/// a timeout is the operation's (non-`Ok`) ending.
async fn query(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    shared: &Shared,
) -> Result<redis::Value, Ending> {
    query_within(conn, cmd, shared.cfg.timeout).await
}

/// [`query`] with its own limit (a waiting acquire needs more).
async fn query_within(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    limit: Duration,
) -> Result<redis::Value, Ending> {
    match tokio::time::timeout(limit, cmd.query_async::<redis::Value>(conn)).await {
        Err(_elapsed) => Err(Ending::Info("timeout".into())),
        Ok(Err(e)) => Err(classify(&e)),
        Ok(Ok(redis::Value::ServerError(e))) => Err(classify(&e.into())),
        Ok(Ok(v)) => Ok(v),
    }
}

fn unexpected_reply(shared: &Shared, reply: &redis::Value, what: &str) -> Ending {
    shared.unexpected.fetch_add(1, Ordering::Relaxed);
    eprintln!("cairn-lab workload: unexpected reply {reply:?} to {what}");
    Ending::Info("unexpected".into())
}

/// Reads set `key`: `MGET` of the element keys of `ids`, in chunks (see
/// [`Kind::Set`]). `Ok(Set(present ids))`, or the first chunk's failure.
async fn read_set(
    conn: &mut MultiplexedConnection,
    key: &str,
    ids: &[i64],
    shared: &Shared,
) -> Ending {
    let mut present = Vec::new();
    for chunk in ids.chunks(SET_READ_CHUNK) {
        let mut cmd = redis::cmd("MGET");
        for &id in chunk {
            cmd.arg(set_element_key(key, id));
        }
        let reply = match query(conn, &cmd, shared).await {
            Ok(v) => v,
            Err(ending) => return ending,
        };
        let redis::Value::Array(values) = &reply else {
            return unexpected_reply(shared, &reply, &format!("MGET of set {key}"));
        };
        if values.len() != chunk.len() {
            return unexpected_reply(shared, &reply, &format!("MGET of set {key}"));
        }
        for (&id, v) in chunk.iter().zip(values) {
            match v {
                redis::Value::Nil => {}
                // An element key holds its own id; anything else is a bug.
                redis::Value::BulkString(b) if b.as_slice() == id.to_string().as_bytes() => {
                    present.push(id);
                }
                other => {
                    return unexpected_reply(shared, other, &format!("MGET of {key} element {id}"))
                }
            }
        }
    }
    present.sort_unstable();
    Ending::Ok(Value::Set(present))
}

/// Reads list `key` whole: `LRANGE key 0 -1`, every element an id.
/// `Ok(Set(ids))` in the list's order, duplicates kept for the checker.
async fn read_list(conn: &mut MultiplexedConnection, key: &str, shared: &Shared) -> Ending {
    let mut cmd = redis::cmd("LRANGE");
    cmd.arg(key).arg(0).arg(-1);
    let reply = match query(conn, &cmd, shared).await {
        Ok(v) => v,
        Err(ending) => return ending,
    };
    let redis::Value::Array(values) = &reply else {
        return unexpected_reply(shared, &reply, &format!("LRANGE of list {key}"));
    };
    let mut ids = Vec::with_capacity(values.len());
    for v in values {
        let id = match v {
            redis::Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
            _ => None,
        };
        match id {
            Some(id) => ids.push(id),
            None => return unexpected_reply(shared, v, &format!("LRANGE of list {key}")),
        }
    }
    Ending::Ok(Value::Set(ids))
}

/// Runs `call` on `key`; `set_ids` are the ids a set read asks for.
async fn execute(
    conn: &mut MultiplexedConnection,
    key: &str,
    call: &Call,
    set_ids: &[i64],
    shared: &Shared,
) -> Ending {
    let cmd = match call {
        Call::Read => {
            let mut c = redis::cmd("GET");
            c.arg(key);
            c
        }
        Call::Write(v) => {
            let mut c = redis::cmd("SET");
            c.arg(key).arg(v.to_string());
            c
        }
        Call::Add(delta) => {
            let mut c = redis::cmd("INCRBY");
            c.arg(key).arg(delta.to_string());
            c
        }
        Call::Cas { expect, new } => {
            let mut c = redis::cmd("SET");
            c.arg(key)
                .arg(new.to_string())
                .arg("IFEQ")
                .arg(expect.to_string());
            c
        }
        Call::AddElement(id) if shared.cfg.kind == Kind::List => {
            let mut c = redis::cmd("RPUSH");
            c.arg(key).arg(id.to_string());
            c
        }
        Call::AddElement(id) => {
            let mut c = redis::cmd("SET");
            c.arg(set_element_key(key, *id)).arg(id.to_string());
            c
        }
        Call::ReadAll if shared.cfg.kind == Kind::List => {
            return read_list(conn, key, shared).await
        }
        Call::ReadAll => return read_set(conn, key, set_ids, shared).await,
    };
    let reply = match query(conn, &cmd, shared).await {
        Ok(v) => v,
        Err(ending) => return ending,
    };
    let value = match (call, &reply) {
        (Call::Read, redis::Value::Nil) => Some(Value::Nil),
        (Call::Read, redis::Value::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Value::Int),
        (Call::Write(_), redis::Value::Okay) => Some(Value::Ack),
        (Call::Add(_), redis::Value::Int(n)) => Some(Value::Int(*n)),
        (Call::Cas { .. }, redis::Value::Okay) => Some(Value::Bool(true)),
        (Call::Cas { .. }, redis::Value::Nil) => Some(Value::Bool(false)),
        (Call::AddElement(_), redis::Value::Okay) => Some(Value::Ack),
        // RPUSH answers the list's new length.
        (Call::AddElement(_), redis::Value::Int(n)) if *n > 0 => Some(Value::Ack),
        _ => None,
    };
    match value {
        Some(v) => Ending::Ok(v),
        None => unexpected_reply(shared, &reply, &format!("{call:?} on {key}")),
    }
}

/// A new connection to `client`, or `None` (counted) if it failed or took
/// longer than the operation timeout.
async fn connect(client: &redis::Client, shared: &Shared) -> Option<MultiplexedConnection> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.cfg.timeout))
        .set_response_timeout(None);
    let attempt = tokio::time::timeout(
        shared.cfg.timeout,
        client.get_multiplexed_async_connection_with_config(&conn_cfg),
    )
    .await;
    match attempt {
        Ok(Ok(c)) => Some(c),
        _ => {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// One client slot: sequential operations (or lock cycles) as one process
/// until the run is over, retiring the process after an indeterminate
/// ending (Jepsen style) and reconnecting when told to.
async fn slot(shared: Arc<Shared>, client: redis::Client, index: usize, target: usize) {
    let cfg = &shared.cfg;
    let mut rng = Rng::new(cfg.seed ^ (index as u64).wrapping_mul(0x1000_0001));
    let mut process = shared.next_process.fetch_add(1, Ordering::Relaxed);
    let mut conn: Option<MultiplexedConnection> = None;
    let retry_pause = cfg.timeout.min(Duration::from_millis(50));
    while !shared.out_of_time() && shared.issued.load(Ordering::Relaxed) < cfg.ops {
        if conn.is_none() {
            conn = connect(&client, &shared).await;
            if conn.is_none() {
                tokio::time::sleep(retry_pause).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let after = match cfg.kind {
            Kind::Lock => {
                let lock = lock_name(&cfg.key_prefix, rng.below(cfg.keys as u64));
                lock_cycle(c, &shared, &mut rng, process, &lock, target).await
            }
            _ => one_op(c, &shared, &mut rng, process, target).await,
        };
        if let After::Retire { reconnect } = after {
            process = shared.next_process.fetch_add(1, Ordering::Relaxed);
            if reconnect {
                conn = None;
            }
        }
        if !cfg.think.is_zero() {
            tokio::time::sleep(cfg.think).await;
        }
    }
}

/// What an operation (or lock cycle) leaves its slot with.
enum After {
    /// Nothing is in flight and the owner holds and waits for nothing:
    /// the process goes on.
    Clean,
    /// Retire the process (the slot goes on as a new one): an operation
    /// may still be in flight, or the lock owner may still hold or wait
    /// for a lock. `reconnect` when a reply may still come on the
    /// connection.
    Retire { reconnect: bool },
}

/// One random operation of the register, counter or set workload,
/// recorded.
async fn one_op(
    c: &mut MultiplexedConnection,
    shared: &Shared,
    rng: &mut Rng,
    process: u64,
    target: usize,
) -> After {
    let cfg = &shared.cfg;
    let n = shared.issued.fetch_add(1, Ordering::Relaxed);
    if n >= cfg.ops {
        return After::Clean;
    }
    let keys = cfg.keys as u64;
    let generation = match cfg.ops_per_key {
        0 => 0,
        per => n / (per * keys).max(1),
    };
    let k = generation * keys + rng.below(keys);
    let key = format!("{}k{k}", cfg.key_prefix);
    let roll = rng.below(100);
    let reads = u64::from(cfg.read_percent.min(100));
    let call = if roll < reads {
        match cfg.kind {
            Kind::Set | Kind::List => Call::ReadAll,
            _ => Call::Read,
        }
    } else if matches!(cfg.kind, Kind::Set | Kind::List) {
        let id = shared.next_value.fetch_add(1, Ordering::Relaxed);
        // Recorded before the invocation, so every later read asks
        // for it (failed adds included).
        shared.attempt(k, id);
        Call::AddElement(id)
    } else if cfg.kind == Kind::Counter {
        Call::Add(1 + rng.below(5) as i64)
    } else {
        let new = shared.next_value.fetch_add(1, Ordering::Relaxed);
        // Half the writes are compare-and-sets.
        match shared.pick_expect(k, rng.next_u64()) {
            Some(expect) if (roll - reads) * 2 >= 100 - reads => Call::Cas { expect, new },
            _ => Call::Write(new),
        }
    };
    let invoke = shared.now_ns();
    // After the invocation: the read covers every add invoked before.
    let set_ids = match call {
        Call::ReadAll => shared.set_read_ids(k),
        _ => Vec::new(),
    };
    let ending = execute(c, &key, &call, &set_ids, shared).await;
    let complete = shared.now_ns().max(invoke);
    match (&call, &ending) {
        (Call::Write(v) | Call::Cas { new: v, .. }, _) => shared.remember(k, *v),
        (Call::Read, Ending::Ok(Value::Int(v))) => shared.remember(k, *v),
        _ => {}
    }
    let (op, after) = match ending {
        Ending::Ok(v) => {
            shared.count_ok(target, complete);
            let op = Op::ok(process, &key, call, invoke, complete, v);
            (op, After::Clean)
        }
        Ending::Fail(cause) => {
            shared.count_error(&cause);
            let op = Op::fail(process, &key, call, invoke, complete);
            (op, After::Clean)
        }
        Ending::Info(cause) => {
            shared.count_error(&cause);
            // Its op may still be in flight.
            let op = Op::info(process, &key, call, invoke);
            (op, After::Retire { reconnect: true })
        }
    };
    shared.record(op);
    after
}

/// Reads after the run: one connection at a time; after any failure
/// (the cluster may still be recovering) the next target, with a new
/// connection, until [`FINAL_READ_LIMIT`].
struct FinalReader<'a> {
    shared: &'a Shared,
    clients: &'a [redis::Client],
    deadline: Instant,
    target: usize,
    conn: Option<MultiplexedConnection>,
}

impl<'a> FinalReader<'a> {
    fn new(shared: &'a Shared, clients: &'a [redis::Client]) -> FinalReader<'a> {
        FinalReader {
            shared,
            clients,
            deadline: Instant::now() + FINAL_READ_LIMIT,
            target: 0,
            conn: None,
        }
    }

    /// The current connection, or a new one; `None` once time is up.
    async fn conn(&mut self) -> Option<&mut MultiplexedConnection> {
        while self.conn.is_none() && Instant::now() < self.deadline {
            self.conn = connect(&self.clients[self.target], self.shared).await;
            if self.conn.is_none() {
                self.next_target().await;
            }
        }
        self.conn.as_mut()
    }

    /// A successful read at the current target.
    fn succeeded(&self) {
        if let Some(n) = self.shared.ok_per_target.get(self.target) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The read failed (`cause`): drop the connection, try the next target.
    async fn failed(&mut self, cause: &str) {
        self.shared.count_error(&format!("final-read-{cause}"));
        self.conn = None;
        self.next_target().await;
    }

    async fn next_target(&mut self) {
        self.target = (self.target + 1) % self.clients.len();
        tokio::time::sleep(self.shared.cfg.timeout.min(Duration::from_millis(100))).await;
    }
}

/// The set workload's final reads: one successful read of every set that
/// had an add attempted, by one fresh process, after every slot finished.
/// A failed attempt is retried by the [`FinalReader`]; it is not recorded
/// (a read that returned nothing constrains nothing). A set left unread
/// makes the checker's verdict `Unknown`, never `Valid`.
async fn final_set_reads(shared: &Shared, clients: &[redis::Client]) {
    let sets: Vec<u64> = shared
        .attempted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .copied()
        .collect();
    let process = shared.next_process.fetch_add(1, Ordering::Relaxed);
    let mut reader = FinalReader::new(shared, clients);
    'sets: for k in sets {
        let key = format!("{}k{k}", shared.cfg.key_prefix);
        while let Some(c) = reader.conn().await {
            let invoke = shared.now_ns();
            let ids = shared.set_read_ids(k);
            let read = if shared.cfg.kind == Kind::List {
                read_list(c, &key, shared).await
            } else {
                read_set(c, &key, &ids, shared).await
            };
            match read {
                Ending::Ok(members) => {
                    let complete = shared.now_ns().max(invoke);
                    reader.succeeded();
                    shared.record(Op::ok(
                        process,
                        &key,
                        Call::ReadAll,
                        invoke,
                        complete,
                        members,
                    ));
                    continue 'sets;
                }
                Ending::Fail(cause) | Ending::Info(cause) => reader.failed(&cause).await,
            }
        }
        eprintln!("cairn-lab workload: no final read of set {key} within {FINAL_READ_LIMIT:?}");
    }
}

// ----- lock workload ([`Kind::Lock`]) -----------------------------------

/// Sends one lock-workload command and counts how it ended.
async fn lock_command(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    limit: Duration,
    shared: &Shared,
    target: usize,
) -> Result<redis::Value, Ending> {
    shared.issued.fetch_add(1, Ordering::Relaxed);
    let reply = query_within(conn, cmd, limit).await;
    let ops = &shared.lock_ops;
    match &reply {
        Ok(_) => {
            ops.ok.fetch_add(1, Ordering::Relaxed);
            shared.count_ok(target, shared.now_ns());
        }
        Err(Ending::Fail(cause)) => {
            ops.fail.fetch_add(1, Ordering::Relaxed);
            shared.count_error(cause);
        }
        Err(Ending::Info(cause)) => {
            ops.info.fetch_add(1, Ordering::Relaxed);
            shared.count_error(cause);
        }
        // `query_within` ends in `Ok(reply)` for every reply.
        Err(Ending::Ok(_)) => {
            ops.info.fetch_add(1, Ordering::Relaxed);
        }
    }
    reply
}

/// One acquire, its fenced writes and its release (see [`Kind::Lock`]).
async fn lock_cycle(
    conn: &mut MultiplexedConnection,
    shared: &Shared,
    rng: &mut Rng,
    process: u64,
    lock: &str,
    target: usize,
) -> After {
    let cfg = &shared.cfg;
    let owner = format!("p{process}");
    let lease_ms = rng.between(LOCK_LEASE_MS);
    let wait_ms = rng.between(LOCK_WAIT_MS).min(shared.ms_left()).max(1);
    let mut cmd = redis::cmd("LOCK.ACQUIRE");
    cmd.arg(lock)
        .arg(&owner)
        .arg(lease_ms)
        .arg("WAIT")
        .arg(wait_ms);
    let invoke = shared.now_ns();
    let limit = Duration::from_millis(wait_ms) + cfg.timeout;
    let reply = lock_command(conn, &cmd, limit, shared, target).await;
    let ack = shared.now_ns().max(invoke);
    let token = match reply {
        Ok(redis::Value::Int(t)) if t > 0 => t.unsigned_abs(),
        Ok(redis::Value::Nil) => return After::Clean,
        Ok(other) => {
            unexpected_reply(shared, &other, &format!("LOCK.ACQUIRE {lock}"));
            return After::Retire { reconnect: true };
        }
        // Maybe queued after all: a later grant would be this owner's.
        Err(Ending::Fail(_)) => return After::Retire { reconnect: false },
        Err(_) => return After::Retire { reconnect: true },
    };
    let mut hold = LockHold {
        lock: lock.to_owned(),
        process,
        token,
        acquire_invoke_ns: invoke,
        acquire_ack_ns: ack,
        lease_ns: Some(lease_ms.saturating_mul(1_000_000)),
        release_invoke_ns: None,
        renew_invoke_ns: None,
    };
    // Now and then renew just before the lease runs out, as a keep-alive
    // does: the renewal races the leader's expiry of the same lease.
    if rng.below(100) < LOCK_RENEW_PERCENT {
        let lease_end_ns = invoke.saturating_add(lease_ms.saturating_mul(1_000_000));
        let early_ns = rng.between(LOCK_RENEW_EARLY_MS).saturating_mul(1_000_000);
        let wait_ns = lease_end_ns
            .saturating_sub(early_ns)
            .saturating_sub(shared.now_ns());
        if wait_ns / 1_000_000 + 1 < shared.ms_left() {
            tokio::time::sleep(Duration::from_nanos(wait_ns)).await;
            let mut cmd = redis::cmd("LOCK.RENEW");
            cmd.arg(lock).arg(&owner).arg(token).arg(lease_ms);
            let renew_invoke = shared.now_ns();
            match lock_command(conn, &cmd, cfg.timeout, shared, target).await {
                Ok(redis::Value::Int(1)) => hold.renew_invoke_ns = Some(renew_invoke),
                // The lease had ended: the hold ends with it; the writes
                // that follow must be refused if another holds it now.
                Err(Ending::Fail(code)) if code == "LOCKLOST" => {}
                Ok(other) => {
                    unexpected_reply(shared, &other, &format!("LOCK.RENEW {lock}"));
                    shared.locks().holds.push(hold);
                    return After::Retire { reconnect: true };
                }
                // Maybe renewed: the lease ends the hold, later.
                Err(Ending::Fail(_)) => {
                    shared.locks().holds.push(hold);
                    return After::Retire { reconnect: false };
                }
                Err(_) => {
                    shared.locks().holds.push(hold);
                    return After::Retire { reconnect: true };
                }
            }
        }
    }
    let counter = fenced_counter_key(lock);
    for _ in 0..1 + rng.below(LOCK_WRITES_MAX) {
        let pause_ms = lock_pause_ms(rng, lease_ms);
        if pause_ms >= shared.ms_left() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let write = fenced_incr(conn, shared, &hold, &counter, target).await;
        let unknown = write.outcome == FenceOutcome::Unknown;
        shared.locks().writes.push(write);
        if unknown {
            // The reply may still come on this connection; the lease ends
            // the hold.
            shared.locks().holds.push(hold);
            return After::Retire { reconnect: true };
        }
    }
    // Sent from here on, the release may take effect: the certain hold
    // ends here whatever the reply.
    hold.release_invoke_ns = Some(shared.now_ns());
    let mut cmd = redis::cmd("LOCK.RELEASE");
    cmd.arg(lock).arg(&owner).arg(token);
    let reply = lock_command(conn, &cmd, cfg.timeout, shared, target).await;
    shared.locks().holds.push(hold);
    match reply {
        // 0: the lease had run out; nobody holds it for this owner.
        Ok(redis::Value::Int(0 | 1)) => After::Clean,
        Ok(other) => {
            unexpected_reply(shared, &other, &format!("LOCK.RELEASE {lock}"));
            After::Retire { reconnect: true }
        }
        // Still held until its lease runs out.
        Err(Ending::Fail(_)) => After::Retire { reconnect: false },
        Err(_) => After::Retire { reconnect: true },
    }
}

/// `INCRBY counter 1 FENCE lock token` for `hold`, as a [`FencedWrite`].
async fn fenced_incr(
    conn: &mut MultiplexedConnection,
    shared: &Shared,
    hold: &LockHold,
    counter: &str,
    target: usize,
) -> FencedWrite {
    let mut cmd = redis::cmd("INCRBY");
    cmd.arg(counter)
        .arg(1)
        .arg("FENCE")
        .arg(&hold.lock)
        .arg(hold.token);
    let invoke_ns = shared.now_ns();
    let reply = lock_command(conn, &cmd, shared.cfg.timeout, shared, target).await;
    let ack_ns = shared.now_ns().max(invoke_ns);
    let (outcome, value) = match reply {
        Ok(redis::Value::Int(v)) => (FenceOutcome::Accepted, Some(v)),
        Ok(other) => {
            unexpected_reply(shared, &other, &format!("fenced INCRBY {counter}"));
            (FenceOutcome::Unknown, None)
        }
        Err(Ending::Fail(code)) if code == "FENCED" => (FenceOutcome::Refused, None),
        Err(Ending::Fail(_)) => (FenceOutcome::Failed, None),
        Err(_) => (FenceOutcome::Unknown, None),
    };
    FencedWrite {
        lock: hold.lock.clone(),
        key: counter.to_owned(),
        process: hold.process,
        token: hold.token,
        delta: 1,
        invoke_ns,
        ack_ns,
        outcome,
        value,
    }
}

/// The lock workload's final reads: every lock's counter (`GET`; nil is
/// 0), `None` for a counter not read within [`FINAL_READ_LIMIT`].
async fn final_counter_reads(
    shared: &Shared,
    clients: &[redis::Client],
) -> BTreeMap<String, Option<i64>> {
    let mut finals = BTreeMap::new();
    let mut reader = FinalReader::new(shared, clients);
    for i in 0..shared.cfg.keys as u64 {
        let key = fenced_counter_key(&lock_name(&shared.cfg.key_prefix, i));
        let mut value = None;
        while let Some(c) = reader.conn().await {
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            match query(c, &cmd, shared).await {
                Ok(reply) => match counter_value(&reply) {
                    Some(v) => {
                        reader.succeeded();
                        value = Some(v);
                        break;
                    }
                    None => {
                        unexpected_reply(shared, &reply, &format!("GET {key}"));
                        reader.failed("unexpected").await;
                    }
                },
                Err(Ending::Fail(cause) | Ending::Info(cause)) => reader.failed(&cause).await,
                Err(Ending::Ok(_)) => reader.failed("unexpected").await,
            }
        }
        if value.is_none() {
            eprintln!("cairn-lab workload: no final read of {key} within {FINAL_READ_LIMIT:?}");
        }
        finals.insert(key, value);
    }
    finals
}

/// A counter's value from a `GET` reply (nil: never incremented, 0).
fn counter_value(reply: &redis::Value) -> Option<i64> {
    match reply {
        redis::Value::Nil => Some(0),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// What the lock workload writes to its output: the history the checker
/// reads ([`LockHistory`]: `holds`, `writes`, `finals`) and, beside it,
/// how its commands ended. One JSON object; `cairn-lab check --kind lock`
/// reads it back as a `LockHistory`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockRun {
    /// Commands sent (acquires, fenced writes, releases).
    pub ops: u64,
    /// Commands answered with a reply (a null acquire included).
    pub ok: u64,
    /// Commands refused (`-FENCED`, `-TRYAGAIN`, ...).
    pub fail: u64,
    /// Indeterminate commands.
    pub info: u64,
    /// The records.
    #[serde(flatten)]
    pub history: LockHistory,
}

/// The clients and shared state of a run of `cfg`, its clock started.
fn start(cfg: Config) -> Result<(Vec<redis::Client>, Arc<Shared>), RedisError> {
    if cfg.targets.is_empty() {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "no target address",
        )));
    }
    let clients = cfg
        .targets
        .iter()
        .map(|a| redis::Client::open(format!("redis://{a}/")))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: cfg.duration.map(|d| start + d),
        start,
        issued: AtomicU64::new(0),
        next_process: AtomicU64::new(1),
        next_value: AtomicI64::new(1),
        connect_failures: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        ok_per_target: clients.iter().map(|_| AtomicU64::new(0)).collect(),
        ok_times: Mutex::new(vec![Vec::new(); clients.len()]),
        recent: Mutex::new(BTreeMap::new()),
        attempted: Mutex::new(BTreeMap::new()),
        ops: Mutex::new(Vec::new()),
        locks: Mutex::new(LockHistory::default()),
        lock_ops: LockOps::default(),
        cfg: Config {
            keys: cfg.keys.max(1),
            ..cfg
        },
    });
    Ok((clients, shared))
}

/// Runs every client slot to its end; slot `i` talks to target `i mod n`.
async fn run_slots(shared: &Arc<Shared>, clients: &[redis::Client]) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..shared.cfg.processes.max(1) {
        let t = i % clients.len();
        tasks.spawn(slot(Arc::clone(shared), clients[t].clone(), i, t));
    }
    while tasks.join_next().await.is_some() {}
}

/// The counts every run reports; `ops`, `ok`, `fail` and `info` are the
/// caller's.
fn stats(shared: &Shared, start_unix_ns: u64) -> Stats {
    Stats {
        processes: shared.next_process.load(Ordering::Relaxed) - 1,
        connect_failures: shared.connect_failures.load(Ordering::Relaxed),
        unexpected: shared.unexpected.load(Ordering::Relaxed),
        errors: std::mem::take(
            &mut *shared
                .errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        ok_per_target: shared
            .ok_per_target
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect(),
        start_unix_ns,
        ok_times: std::mem::take(
            &mut *shared
                .ok_times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        ..Stats::default()
    }
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs the workload to completion and returns the history (in no
/// particular order) and counts. The lock workload records no `History`:
/// run it with [`run_locks`].
pub async fn run(cfg: Config) -> Result<(History, Stats), RedisError> {
    if cfg.kind == Kind::Lock {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "the lock workload records a LockHistory: use run_locks",
        )));
    }
    let (clients, shared) = start(cfg)?;
    let start_unix_ns = unix_now_ns();
    run_slots(&shared, &clients).await;
    if matches!(shared.cfg.kind, Kind::Set | Kind::List) {
        final_set_reads(&shared, &clients).await;
    }
    let ops = std::mem::take(
        &mut *shared
            .ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut stats = stats(&shared, start_unix_ns);
    stats.ops = ops.len() as u64;
    for op in &ops {
        match op.outcome {
            cairn_check::Outcome::Ok(_) => stats.ok += 1,
            cairn_check::Outcome::Fail => stats.fail += 1,
            cairn_check::Outcome::Info => stats.info += 1,
        }
    }
    Ok((History::from(ops), stats))
}

/// Runs the lock workload ([`Kind::Lock`], whatever `cfg.kind` says) to
/// completion, final counter reads included.
pub async fn run_locks(cfg: Config) -> Result<(LockRun, Stats), RedisError> {
    let (clients, shared) = start(Config {
        kind: Kind::Lock,
        ..cfg
    })?;
    let start_unix_ns = unix_now_ns();
    run_slots(&shared, &clients).await;
    let finals = final_counter_reads(&shared, &clients).await;
    let mut history = std::mem::take(&mut *shared.locks());
    history.finals = finals;
    let ops = &shared.lock_ops;
    let run = LockRun {
        ok: ops.ok.load(Ordering::Relaxed),
        fail: ops.fail.load(Ordering::Relaxed),
        info: ops.info.load(Ordering::Relaxed),
        ops: shared.issued.load(Ordering::Relaxed),
        history,
    };
    let mut stats = stats(&shared, start_unix_ns);
    (stats.ops, stats.ok, stats.fail, stats.info) = (run.ops, run.ok, run.fail, run.info);
    Ok((run, stats))
}

/// Sends `PING` until the node answers `PONG`, for at most `limit`.
pub async fn wait_ready(addr: &str, limit: Duration) -> Result<Duration, String> {
    let client =
        redis::Client::open(format!("redis://{addr}/")).map_err(|e| format!("bad address: {e}"))?;
    let start = Instant::now();
    let step = Duration::from_millis(300);
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(step))
        .set_response_timeout(Some(step));
    let mut last = String::from("no attempt");
    while start.elapsed() < limit {
        match client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await
        {
            Ok(mut c) => match redis::cmd("PING").query_async::<String>(&mut c).await {
                Ok(s) if s == "PONG" => return Ok(start.elapsed()),
                Ok(s) => last = format!("PING answered {s:?}"),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{addr} not ready after {limit:?}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_elements_share_the_set_keys_hash_tag() {
        // A tagged set key keeps its tag: same slot as the set key and
        // every other key of the workload's prefix.
        assert_eq!(set_element_key("{t}s:k0", 7), "{t}s:k0:7");
        // An untagged one becomes the tag: one slot per set.
        assert_eq!(set_element_key("lab:k1", 7), "{lab:k1}:7");
        // An empty tag is no tag (Redis Cluster rule).
        assert_eq!(set_element_key("a{}k0", 3), "{a{}k0}:3");
        assert_eq!(set_element_key("{x:k0", -1), "{{x:k0}:-1");
    }

    #[test]
    fn fenced_counters_share_their_locks_slot() {
        assert_eq!(fenced_counter_key(&lock_name("{t}l:", 1)), "{t}l:lock1:fc");
        assert_eq!(fenced_counter_key(&lock_name("lab:", 0)), "{lab:lock0}:fc");
    }

    #[test]
    fn lock_pauses_are_mostly_short_and_sometimes_outlast_the_lease() {
        let mut rng = Rng::new(3);
        let lease_ms = 1000;
        let pauses: Vec<u64> = (0..10_000)
            .map(|_| lock_pause_ms(&mut rng, lease_ms))
            .collect();
        let past = pauses.iter().filter(|&&p| p > lease_ms).count();
        let none = pauses.iter().filter(|&&p| p == 0).count();
        assert!((600..1000).contains(&past), "{past} stalls past the lease");
        assert!(none > 7_500, "{none} writes without a pause");
        let most = lease_ms + LOCK_STALL_PAST_LEASE_MS.1;
        assert!(pauses.iter().all(|&p| p <= most));
        assert!(pauses
            .iter()
            .all(|&p| p == 0 || p < lease_ms / 4 || p >= lease_ms + LOCK_STALL_PAST_LEASE_MS.0));
    }
}
