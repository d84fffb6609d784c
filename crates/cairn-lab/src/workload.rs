//! The lab's workloads: concurrent client processes issue random commands
//! on a few keys over plain RESP and record a [`cairn_check::History`]:
//! - register: `GET`, `SET`, `SET k v IFEQ old` (checked with `Register`);
//! - counter: `GET`, `INCRBY` (checked with `Counter`);
//! - set: unique adds and reads of a grow-only set, then a final read of
//!   everything (checked with [`cairn_check::check_set`]); see
//!   [`Kind::Set`] for how a set is laid out on cairn, which has no `SADD`.
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

use cairn_check::{Call, History, Op, Value};
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
    let tagged = set_key
        .find('{')
        .is_some_and(|open| set_key[open + 1..].find('}').is_some_and(|len| len > 0));
    if tagged {
        format!("{set_key}:{id}")
    } else {
        format!("{{{set_key}}}:{id}")
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
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
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
    match tokio::time::timeout(shared.cfg.timeout, cmd.query_async::<redis::Value>(conn)).await {
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
        Call::AddElement(id) => {
            let mut c = redis::cmd("SET");
            c.arg(set_element_key(key, *id)).arg(id.to_string());
            c
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
        _ => None,
    };
    match value {
        Some(v) => Ending::Ok(v),
        None => unexpected_reply(shared, &reply, &format!("{call:?} on {key}")),
    }
}

async fn slot(shared: Arc<Shared>, client: redis::Client, index: usize, target: usize) {
    let cfg = &shared.cfg;
    let mut rng = Rng::new(cfg.seed ^ (index as u64).wrapping_mul(0x1000_0001));
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.timeout))
        .set_response_timeout(None);
    let mut process = shared.next_process.fetch_add(1, Ordering::Relaxed);
    let mut conn: Option<MultiplexedConnection> = None;
    let retry_pause = cfg.timeout.min(Duration::from_millis(50));
    loop {
        if shared.out_of_time() || shared.issued.load(Ordering::Relaxed) >= cfg.ops {
            break;
        }
        if conn.is_none() {
            let attempt = tokio::time::timeout(
                cfg.timeout,
                client.get_multiplexed_async_connection_with_config(&conn_cfg),
            )
            .await;
            match attempt {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(retry_pause).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= cfg.ops {
            break;
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
                Kind::Set => Call::ReadAll,
                _ => Call::Read,
            }
        } else if cfg.kind == Kind::Set {
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
        let ending = execute(c, &key, &call, &set_ids, &shared).await;
        let complete = shared.now_ns().max(invoke);
        match (&call, &ending) {
            (Call::Write(v) | Call::Cas { new: v, .. }, _) => shared.remember(k, *v),
            (Call::Read, Ending::Ok(Value::Int(v))) => shared.remember(k, *v),
            _ => {}
        }
        let op = match ending {
            Ending::Ok(v) => {
                shared.ok_per_target[target].fetch_add(1, Ordering::Relaxed);
                if let Some(t) = shared
                    .ok_times
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_mut(target)
                {
                    t.push(complete);
                }
                Op::ok(process, &key, call, invoke, complete, v)
            }
            Ending::Fail(cause) => {
                shared.count_error(&cause);
                Op::fail(process, &key, call, invoke, complete)
            }
            Ending::Info(cause) => {
                shared.count_error(&cause);
                // Retire the process: its op may still be in flight.
                conn = None;
                let retired = process;
                process = shared.next_process.fetch_add(1, Ordering::Relaxed);
                Op::info(retired, &key, call, invoke)
            }
        };
        shared.record(op);
        if !cfg.think.is_zero() {
            tokio::time::sleep(cfg.think).await;
        }
    }
}

/// The set workload's final reads: one successful read of every set that
/// had an add attempted, by one fresh process, after every slot finished.
/// A failed attempt (the cluster may still be recovering) is retried on
/// the next target with a new connection until [`FINAL_READ_LIMIT`]; it is
/// not recorded (a read that returned nothing constrains nothing). A set
/// left unread makes the checker's verdict `Unknown`, never `Valid`.
async fn final_set_reads(shared: &Shared, clients: &[redis::Client]) {
    let deadline = Instant::now() + FINAL_READ_LIMIT;
    let sets: Vec<u64> = shared
        .attempted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .keys()
        .copied()
        .collect();
    let process = shared.next_process.fetch_add(1, Ordering::Relaxed);
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.cfg.timeout))
        .set_response_timeout(None);
    let pause = shared.cfg.timeout.min(Duration::from_millis(100));
    let mut target = 0;
    let mut conn: Option<MultiplexedConnection> = None;
    'sets: for k in sets {
        let key = format!("{}k{k}", shared.cfg.key_prefix);
        while Instant::now() < deadline {
            if conn.is_none() {
                let attempt = tokio::time::timeout(
                    shared.cfg.timeout,
                    clients[target].get_multiplexed_async_connection_with_config(&conn_cfg),
                )
                .await;
                match attempt {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => {
                        shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                        target = (target + 1) % clients.len();
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            let invoke = shared.now_ns();
            let ids = shared.set_read_ids(k);
            match read_set(c, &key, &ids, shared).await {
                Ending::Ok(members) => {
                    let complete = shared.now_ns().max(invoke);
                    shared.ok_per_target[target].fetch_add(1, Ordering::Relaxed);
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
                Ending::Fail(cause) | Ending::Info(cause) => {
                    shared.count_error(&format!("final-read-{cause}"));
                    conn = None;
                    target = (target + 1) % clients.len();
                    tokio::time::sleep(pause).await;
                }
            }
        }
        eprintln!("cairn-lab workload: no final read of set {key} within {FINAL_READ_LIMIT:?}");
    }
}

/// Runs the workload to completion and returns the history (in no
/// particular order) and counts.
pub async fn run(cfg: Config) -> Result<(History, Stats), RedisError> {
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
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
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
        cfg: Config {
            keys: cfg.keys.max(1),
            ..cfg
        },
    });
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..shared.cfg.processes.max(1) {
        let t = i % clients.len();
        tasks.spawn(slot(Arc::clone(&shared), clients[t].clone(), i, t));
    }
    while tasks.join_next().await.is_some() {}
    if shared.cfg.kind == Kind::Set {
        final_set_reads(&shared, &clients).await;
    }
    let ops = std::mem::take(
        &mut *shared
            .ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut stats = Stats {
        ops: ops.len() as u64,
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
    };
    for op in &ops {
        match op.outcome {
            cairn_check::Outcome::Ok(_) => stats.ok += 1,
            cairn_check::Outcome::Fail => stats.fail += 1,
            cairn_check::Outcome::Info => stats.info += 1,
        }
    }
    Ok((History::from(ops), stats))
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
}
