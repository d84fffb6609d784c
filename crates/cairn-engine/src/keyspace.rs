//! One shard of the keyspace: the state machine every command applies to.
//!
//! Layout: a dense `Vec<Entry>` holds keys and values; a `HashTable<u32>`
//! maps a key's hash to its position; `volatile` lists the positions of
//! keys with a deadline. Dense storage gives O(1) uniform random sampling
//! (eviction, active expiry, RANDOMKEY) and tight memory; deletion is
//! swap-remove, which patches the one moved entry's index slot.
//!
//! The thing not to get wrong: this type never reads a clock or an RNG of
//! its own. Time is the `now_ms` argument (unix milliseconds, stamped by
//! the caller or the Raft leader) and randomness comes from a seeded
//! generator that is part of the state, so replaying the same commands
//! gives the same state.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::bytes::SmallBytes;
use crate::chunkvec::ChunkVec;
use crate::cmd::WRONGTYPE;
use crate::evict::{EvictionPool, Policy};
use crate::hash::Hash;
use crate::list::List;
use crate::set::Set;
use crate::value::{Collection, Value};
use crate::zset::ZSet;

const NOT_VOLATILE: u32 = u32::MAX;
/// LRU clock resolution. 10 ms units in a u32 wrap after ~497 days.
const LRU_UNIT_MS: u64 = 10;
/// Initial LFU counter of a new key (Redis' LFU_INIT_VAL).
pub(crate) const LFU_INIT: u8 = 5;
/// Buckets of a keyspace's write-version table (WATCH; see
/// [`Keyspace::key_version`]). A power of two.
pub const VERSION_BUCKETS: usize = 1024;
/// The bucket hash's fixed seed: every replica must pick the same bucket
/// for a key, whatever its keyspace's own (random) hash seed.
const VERSION_SEED: u64 = 0x7761_7463_6800;

pub(crate) struct Entry {
    pub(crate) key: SmallBytes,
    pub(crate) value: Value,
    /// Position in `volatile`, or NOT_VOLATILE.
    vol: u32,
    /// LRU clock (10 ms units) or LFU (16-bit minutes << 8 | counter).
    pub(crate) meta: u32,
}

#[derive(Clone, Copy)]
struct VolatileSlot {
    entry: u32,
    expire_ms: u64,
}

/// Per-shard counters reported by INFO.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub expired_keys: u64,
    pub evicted_keys: u64,
}

/// How the per-key access metadata is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AccessTracking {
    Lru,
    Lfu { log_factor: u32, decay_minutes: u32 },
}

pub struct Keyspace {
    entries: ChunkVec<Entry>,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    volatile: Vec<VolatileSlot>,
    heap_bytes: usize,
    rng: u64,
    pub(crate) pool: EvictionPool,
    pub stats: Stats,
    tracking: AccessTracking,
    /// Delete keys found expired on access. Replicas leave this off and
    /// wait for the leader's replicated deletion.
    lazy_expire: bool,
    /// Longest string APPEND/SETRANGE may build (proto-max-bulk-len).
    string_len_max: usize,
    /// The locks whose names hash here (docs/design/locks.md): a
    /// namespace of their own, kept by FLUSHALL (coordination state, not
    /// cached data), carried by snapshots.
    pub locks: crate::locks::Locks,
    /// Write versions for WATCH: the version of the last change to any
    /// key hashing to the bucket. Part of the replicated state (carried
    /// by snapshots), so every replica answers a transaction's check the
    /// same way. A bucket, not a key, keeps no memory per key and
    /// remembers deleted keys; the price is a false conflict now and then
    /// (docs/design/transactions.md).
    versions: Box<[u64]>,
    /// The version every change is stamped with while a replicated entry
    /// applies (its log position, [`Keyspace::set_stamp`]); 0 in
    /// standalone mode, where `version_counter` counts changes instead.
    version_stamp: u64,
    version_counter: u64,
    /// Lists and sorted sets left non-empty by a write, for the server to
    /// wake blocked pops (docs/design/datatypes.md, "Blocking pops");
    /// node-local, not replicated state. Recorded only while
    /// `watch_lists` is on.
    ready_lists: Vec<ReadyKey>,
    ready_overflow: bool,
    watch_lists: bool,
    /// Keys of hashes that have (or had) fields with deadlines, for
    /// active field expiry; may name keys that no longer qualify, which
    /// [`Keyspace::hash_purge`] drops (docs/design/datatypes.md).
    hfe: std::collections::BTreeSet<Box<[u8]>>,
    /// Where the standalone field-expiry cycle goes on from.
    hfe_cursor: Vec<u8>,
}

/// What a blocked pop waits for at a key: a list (BLPOP and friends) or
/// a sorted set (BZPOPMIN, BZPOPMAX, BZMPOP). A write of one type wakes
/// only the waiters for that type, as in Redis, where a key that becomes
/// a value of another type leaves its waiters blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Blocked {
    List,
    ZSet,
}

/// A key a write left holding a non-empty value of a kind blocked pops
/// wait for.
pub type ReadyKey = (Box<[u8]>, Blocked);

/// Ready list keys kept between two drains at most (the server drains
/// after every command; past this, every waiter of the shard looks again).
const READY_LISTS_MAX: usize = 1024;

/// Keys written (lists, sorted sets) that blocked pops may now take
/// from, with the kind of value ([`Keyspace::take_ready_lists`]).
pub type ReadyKeys = Vec<ReadyKey>;

impl Keyspace {
    /// `seed` seeds both the hash function and the sampling generator.
    pub fn new(seed: u64) -> Self {
        Keyspace {
            entries: ChunkVec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            volatile: Vec::new(),
            heap_bytes: 0,
            rng: seed | 1,
            pool: EvictionPool::default(),
            stats: Stats::default(),
            tracking: AccessTracking::Lru,
            lazy_expire: true,
            string_len_max: 512 * 1024 * 1024,
            locks: Default::default(),
            versions: vec![0; VERSION_BUCKETS].into_boxed_slice(),
            version_stamp: 0,
            version_counter: 0,
            ready_lists: Vec::new(),
            ready_overflow: false,
            watch_lists: false,
            hfe: Default::default(),
            hfe_cursor: Vec::new(),
        }
    }

    /// The position in the group's history of the entry about to apply
    /// (log index, place in the entry): every change it makes gets this
    /// version, and a lock it grants this token.
    pub fn set_stamp(&mut self, index: u64, position: u64) {
        self.version_stamp = (index << 16) | (position & 0xffff);
        self.locks.set_stamp(index, position);
    }

    fn version_bucket(key: &[u8]) -> usize {
        let h = foldhash::fast::FixedState::with_seed(VERSION_SEED).hash_one(key);
        (h as usize) & (VERSION_BUCKETS - 1)
    }

    /// Records a change to `key`.
    fn mark(&mut self, key_pos: usize) {
        let v = if self.version_stamp != 0 {
            self.version_stamp
        } else {
            self.version_counter += 1;
            self.version_counter
        };
        let b = Self::version_bucket(self.entries[key_pos].key.as_slice());
        self.versions[b] = v;
    }

    fn mark_key(&mut self, key: &[u8]) {
        let v = if self.version_stamp != 0 {
            self.version_stamp
        } else {
            self.version_counter += 1;
            self.version_counter
        };
        self.versions[Self::version_bucket(key)] = v;
    }

    /// WATCH's view of a key: the version of the last change that may
    /// have touched it (equal versions = unchanged; a different key of
    /// the same bucket can change it too), and whether it is alive at
    /// `now_ms`. A transaction applies only if every watched key still
    /// has the version it had and, if it was alive then, is alive now
    /// (it may have expired without a write).
    pub fn key_version(&mut self, key: &[u8], now_ms: u64) -> (u64, bool) {
        let alive = self.find(key, now_ms).is_some();
        (self.versions[Self::version_bucket(key)], alive)
    }

    /// The non-zero buckets of the version table (snapshots).
    pub fn stored_versions(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.versions
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(i, &v)| (i, v))
    }

    /// Sets one bucket (snapshot restore); false when out of range.
    pub fn push_restored_version(&mut self, bucket: usize, version: u64) -> bool {
        match self.versions.get_mut(bucket) {
            Some(v) => {
                *v = version;
                // Standalone: count on from the highest restored version,
                // so no later change repeats one a watcher may hold.
                self.version_counter = self.version_counter.max(version);
                true
            }
            None => false,
        }
    }

    pub fn set_access_tracking(&mut self, tracking: AccessTracking) {
        self.tracking = tracking;
    }

    pub fn set_lazy_expire(&mut self, on: bool) {
        self.lazy_expire = on;
    }

    pub fn string_len_max(&self) -> usize {
        self.string_len_max
    }

    pub fn set_string_len_max(&mut self, n: usize) {
        self.string_len_max = n;
    }

    pub fn access_tracking(&self) -> AccessTracking {
        self.tracking
    }

    /// Bytes attributed to one key (MEMORY USAGE): its slot, index share,
    /// deadline and heap allocations.
    pub fn usage_at(&self, pos: usize) -> usize {
        let e = &self.entries[pos];
        std::mem::size_of::<Entry>()
            + std::mem::size_of::<u32>()
            + 1
            + if e.vol == NOT_VOLATILE {
                0
            } else {
                std::mem::size_of::<VolatileSlot>()
            }
            + e.key.heap_bytes()
            + e.value.heap_bytes()
    }

    /// Keys stored, including expired ones not yet removed (as DBSIZE).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    /// Bytes this shard holds: slots, index buckets, deadlines, and the
    /// allocator-rounded size of every heap-allocated key and value.
    pub fn bytes_used(&self) -> usize {
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        // Slots count by use, not capacity, so evicting a key shows up at
        // once; freed capacity is reused by later inserts.
        self.entries.len() * std::mem::size_of::<Entry>()
            + buckets * (std::mem::size_of::<u32>() + 1)
            + self.volatile.len() * std::mem::size_of::<VolatileSlot>()
            + self.heap_bytes
    }

    pub(crate) fn next_rand(&mut self) -> u64 {
        xorshift_star(&mut self.rng)
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hash(key), |&i| {
                entries[i as usize].key.as_slice() == key
            })
            .map(|&i| i as usize)
    }

    /// Starts loading what a lookup of `key` will read (its index slot
    /// and its entry) without waiting for it: called for many keys in a
    /// row before they are applied, the cache misses of all of them
    /// overlap instead of following one another. Changes nothing.
    pub fn prefetch(&self, key: &[u8]) {
        let entries = &self.entries;
        let _ = self.index.find(self.hash(key), |&i| {
            entries.prefetch(i as usize);
            false
        });
    }

    fn expire_of(&self, pos: usize) -> Option<u64> {
        match self.entries[pos].vol {
            NOT_VOLATILE => None,
            v => Some(self.volatile[v as usize].expire_ms),
        }
    }

    fn is_expired(&self, pos: usize, now_ms: u64) -> bool {
        self.expire_of(pos).is_some_and(|at| now_ms > at)
    }

    /// Position of a live key; an expired key is removed (when lazy expiry
    /// is on) and reported absent either way.
    pub fn find(&mut self, key: &[u8], now_ms: u64) -> Option<usize> {
        let pos = self.position(key)?;
        if self.is_expired(pos, now_ms) {
            if self.lazy_expire {
                self.remove_at(pos);
                self.stats.expired_keys += 1;
            }
            return None;
        }
        Some(pos)
    }

    /// Looks a key up for a read command: counts a hit or miss and
    /// refreshes its access metadata.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Value> {
        match self.find(key, now_ms) {
            Some(pos) => {
                self.stats.hits += 1;
                self.touch_at(pos, now_ms);
                Some(&self.entries[pos].value)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Looks a key up for a read of a string (GET, STRLEN, ...): as
    /// [`Self::get`], but another type is WRONGTYPE.
    pub fn get_string(&mut self, key: &[u8], now_ms: u64) -> Result<Option<&Value>, &'static str> {
        match self.get(key, now_ms) {
            Some(v) if !v.is_string() => Err(WRONGTYPE),
            found => Ok(found),
        }
    }

    /// Looks a key up for a read of a hash (HGET, HLEN, ...): as
    /// [`Self::get`], but another type is WRONGTYPE. Fields whose
    /// deadline passed are not seen (a copy without them, only while such
    /// fields are still stored), and a hash whose every field expired is
    /// absent.
    pub fn get_hash(
        &mut self,
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<std::borrow::Cow<'_, Hash>>, &'static str> {
        use std::borrow::Cow;
        match self.get(key, now_ms) {
            None => Ok(None),
            Some(v) => {
                let h = v.as_hash().ok_or(WRONGTYPE)?;
                Ok(match h.without_expired(now_ms) {
                    None => Some(Cow::Borrowed(h)),
                    Some(live) if live.is_empty() => None,
                    Some(live) => Some(Cow::Owned(live)),
                })
            }
        }
    }

    /// Seed of a new hash table's field index: derived from this shard's
    /// own (secret) hash seed, so field names cannot be chosen to collide,
    /// yet fixed for the shard's life. It changes no observable order.
    pub fn field_seed(&self) -> u64 {
        self.hasher.hash_one(0x6669_656c_6473u64)
    }

    /// Applies `f` to the hash at `key` for a write. An absent key is
    /// given a new empty hash when `create` is set (stored only if `f`
    /// leaves a field in it), else `f` does not run and the answer is
    /// `Ok(None)`. A hash left empty is deleted, as in Redis. Another
    /// type is WRONGTYPE and changes nothing.
    ///
    /// Marks the key changed (WATCH) whenever `f` runs on a stored hash:
    /// callers that may change nothing check first with [`Self::get_hash`].
    pub fn write_hash<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: bool,
        f: impl FnOnce(&mut Hash, u64) -> R,
    ) -> Result<Option<R>, &'static str> {
        let make = |_| Hash::default();
        let create = create.then_some(&make as &dyn Fn(u64) -> Hash);
        // Fields expired at the entry's time go first (every replica
        // applies the same write at the same time: same result).
        let mut ttls = false;
        let r = self.write_collection(key, now_ms, create, |h: &mut Hash, seed| {
            h.purge_expired(now_ms);
            let r = f(h, seed);
            ttls = h.has_ttls();
            r
        });
        if ttls && !self.hfe.contains(key) {
            self.hfe.insert(key.into());
        }
        r
    }

    /// Active field expiry: up to `max` keys of hashes with field
    /// deadlines, from the first key after `after` (wrapping), that have
    /// an expired field — or no longer qualify (gone, another type, no
    /// deadline left), so that [`Self::hash_purge`] forgets them. Changes
    /// nothing (a leader looks; the log purges). Returns the keys and the
    /// key to continue after.
    pub fn hash_expired_keys(
        &self,
        after: &[u8],
        max: usize,
        now_ms: u64,
    ) -> (Vec<Vec<u8>>, Vec<u8>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut keys = Vec::new();
        let mut last = after.to_vec();
        let tail = self.hfe.range::<[u8], _>((Excluded(after), Unbounded));
        for k in tail.chain(self.hfe.iter()).take(max.min(self.hfe.len())) {
            let due = match self.position(k).map(|p| &self.entries[p].value) {
                Some(Value::Hash(h)) => !h.has_ttls() || h.has_expired(now_ms),
                _ => true,
            };
            if due {
                keys.push(k.to_vec());
            }
            last = k.to_vec();
        }
        (keys, last)
    }

    /// Removes `key`'s fields expired at `now_ms` (deleting the key if none
    /// is left) and forgets it for active expiry once it has no deadline
    /// left. Returns 1 if the hash changed (fields went), else 0.
    pub fn hash_purge(&mut self, key: &[u8], now_ms: u64) -> usize {
        let mut n = 0;
        if let Some(pos) = self.position(key) {
            if self.entries[pos]
                .value
                .as_hash()
                .is_some_and(|h| h.has_expired(now_ms))
            {
                n = self
                    .write_hash(key, now_ms, false, |_, _| ())
                    .ok()
                    .flatten()
                    .map_or(0, |_| 1);
            }
        }
        let keep = self
            .position(key)
            .is_some_and(|p| self.entries[p].value.as_hash().is_some_and(Hash::has_ttls));
        if !keep {
            self.hfe.remove(key);
        }
        n
    }

    /// Standalone active field expiry: looks at up to `max` tracked keys
    /// from where the last cycle stopped and purges their expired fields.
    /// Returns how many hashes changed.
    pub fn hash_expire_cycle(&mut self, now_ms: u64, max: usize) -> usize {
        if self.hfe.is_empty() {
            return 0;
        }
        let cursor = std::mem::take(&mut self.hfe_cursor);
        let (keys, next) = self.hash_expired_keys(&cursor, max, now_ms);
        self.hfe_cursor = next;
        keys.iter().map(|k| self.hash_purge(k, now_ms)).sum()
    }

    /// Keys currently tracked for active field expiry (tests, INFO).
    pub fn hash_expiry_tracked(&self) -> usize {
        self.hfe.len()
    }

    /// What [`Self::write_hash`], [`Self::write_set`] and [`Self::write_zset`] share: find the
    /// collection of type `C` at `key` (WRONGTYPE, touching nothing, for
    /// any other value), create it with `create` when absent, run `f`,
    /// delete the key when `f` leaves it empty.
    fn write_collection<C: Collection, R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<&dyn Fn(u64) -> C>,
        f: impl FnOnce(&mut C, u64) -> R,
    ) -> Result<Option<R>, &'static str> {
        self.write_collection_if(key, now_ms, create, |c, seed| (f(c, seed), true))
    }

    /// As [`Self::write_collection`], but `f` also answers whether it
    /// changed the collection, and only a change marks the key (WATCH):
    /// a write that may change nothing (SADD of members already there)
    /// looks the key up once instead of checking first.
    fn write_collection_if<C: Collection, R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<&dyn Fn(u64) -> C>,
        f: impl FnOnce(&mut C, u64) -> (R, bool),
    ) -> Result<Option<R>, &'static str> {
        let seed = self.field_seed();
        match self.find(key, now_ms) {
            Some(pos) => {
                if C::of_mut(&mut self.entries[pos].value).is_none() {
                    return Err(WRONGTYPE);
                }
                self.touch_at(pos, now_ms);
                let value = &mut self.entries[pos].value;
                let before = value.heap_bytes();
                let (r, changed) = match C::of_mut(value) {
                    Some(c) => f(c, seed),
                    None => return Err(WRONGTYPE),
                };
                let after = value.heap_bytes();
                self.heap_bytes = self.heap_bytes + after - before;
                if changed {
                    self.mark(pos);
                }
                if C::of_mut(&mut self.entries[pos].value).is_some_and(|c| c.is_empty()) {
                    self.remove_at(pos);
                } else if let (true, Some(kind)) = (changed, C::BLOCKED) {
                    self.key_ready(key, kind);
                }
                Ok(Some(r))
            }
            None => match create {
                Some(make) => {
                    let mut c = make(seed);
                    let (r, _) = f(&mut c, seed);
                    if !c.is_empty() {
                        self.insert(key, c.into_value(), Some(None), now_ms);
                    }
                    Ok(Some(r))
                }
                None => Ok(None),
            },
        }
    }

    /// Looks a key up for a read of a set (SMEMBERS, SCARD, ...): as
    /// [`Self::get`], but another type is WRONGTYPE.
    pub fn get_set(&mut self, key: &[u8], now_ms: u64) -> Result<Option<&Set>, &'static str> {
        match self.get(key, now_ms) {
            None => Ok(None),
            Some(v) => v.as_set().map(Some).ok_or(WRONGTYPE),
        }
    }

    /// Applies `f` to the set at `key` for a write. An absent key is
    /// given the set `create` makes, if any (stored only if `f` leaves a
    /// member in it), else `f` does not run and the answer is `Ok(None)`.
    /// A set left empty is deleted, as in Redis. Another type is
    /// WRONGTYPE and changes nothing.
    ///
    /// Marks the key changed (WATCH) whenever `f` runs on a stored set:
    /// callers that may change nothing check first with [`Self::get_set`].
    pub fn write_set<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<&dyn Fn(u64) -> Set>,
        f: impl FnOnce(&mut Set, u64) -> R,
    ) -> Result<Option<R>, &'static str> {
        self.write_collection(key, now_ms, create, f)
    }

    /// As [`Self::write_set`], but `f` answers whether it changed the
    /// set too, and only a change marks the key for WATCH (SADD of
    /// members already there is no write, as in Redis).
    pub fn write_set_if<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<&dyn Fn(u64) -> Set>,
        f: impl FnOnce(&mut Set, u64) -> (R, bool),
    ) -> Result<Option<R>, &'static str> {
        self.write_collection_if(key, now_ms, create, f)
    }

    /// Stores a computed set under `key` (SINTERSTORE and friends),
    /// replacing any value and deadline; an empty set deletes the key.
    pub fn store_set(&mut self, key: &[u8], set: Set, now_ms: u64) {
        if set.is_empty() {
            self.remove(key, now_ms);
        } else {
            self.insert(key, Value::Set(set), Some(None), now_ms);
        }
    }

    /// A seed for the random draws of a write (SPOP) that every replica
    /// computes alike: from the entry's log position while a replicated
    /// entry applies, else (standalone) from the sampling generator.
    /// The generator itself is not replicated state in a cluster: reads
    /// (SRANDMEMBER, HRANDFIELD), LFU counters and expiry sampling
    /// advance it on the serving node only.
    pub fn write_seed(&mut self, key: &[u8]) -> u64 {
        if self.version_stamp == 0 {
            return self.next_rand();
        }
        let fixed = foldhash::fast::FixedState::with_seed(VERSION_SEED);
        fixed.hash_one((self.version_stamp, key)) | 1
    }

    /// Looks a key up for a read of a sorted set (ZSCORE, ZRANGE, ...):
    /// as [`Self::get`], but another type is WRONGTYPE.
    pub fn get_zset(&mut self, key: &[u8], now_ms: u64) -> Result<Option<&ZSet>, &'static str> {
        match self.get(key, now_ms) {
            None => Ok(None),
            Some(v) => v.as_zset().map(Some).ok_or(WRONGTYPE),
        }
    }

    /// Applies `f` to the sorted set at `key` for a write. An absent key
    /// is given the zset `create` makes, if any (stored only if `f` leaves
    /// a member in it), else `f` does not run and the answer is
    /// `Ok(None)`. A zset left empty is deleted; another type is
    /// WRONGTYPE and changes nothing.
    ///
    /// `f` returns its result and whether it changed the zset: only a
    /// change marks the key for WATCH (a ZADD that updates nothing is no
    /// write, as in Redis) and reports it ready for blocked pops.
    pub fn write_zset<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<&dyn Fn(u64) -> ZSet>,
        f: impl FnOnce(&mut ZSet, u64) -> (R, bool),
    ) -> Result<Option<R>, &'static str> {
        // A new zset is reported ready by `insert`, a changed one by the
        // write path (`Collection::BLOCKED`).
        self.write_collection_if(key, now_ms, create, f)
    }

    /// Stores a computed sorted set under `key` (ZUNIONSTORE and
    /// friends), replacing any value and deadline; an empty one deletes
    /// the key.
    pub fn store_zset(&mut self, key: &[u8], zset: ZSet, now_ms: u64) {
        if zset.is_empty() {
            self.remove(key, now_ms);
        } else {
            self.insert(key, Value::ZSet(Box::new(zset)), Some(None), now_ms);
        }
    }

    /// Looks a key up for a read of a list (LLEN, LRANGE, ...): as
    /// [`Self::get`], but another type is WRONGTYPE.
    pub fn get_list(&mut self, key: &[u8], now_ms: u64) -> Result<Option<&List>, &'static str> {
        match self.get(key, now_ms) {
            None => Ok(None),
            Some(v) => v.as_list().map(Some).ok_or(WRONGTYPE),
        }
    }

    /// Applies `f` to the list at `key` for a write, with the rules of
    /// [`Self::write_hash`]: created on demand when `create` is set
    /// (stored only if `f` leaves an element), deleted when left empty,
    /// WRONGTYPE for another type. A list left non-empty is reported
    /// ready for blocked pops ([`Self::take_ready_lists`]) while the
    /// server watches this shard.
    pub fn write_list<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: bool,
        f: impl FnOnce(&mut List) -> R,
    ) -> Result<Option<R>, &'static str> {
        let r = match self.find(key, now_ms) {
            Some(pos) => {
                if self.entries[pos].value.as_list().is_none() {
                    return Err(WRONGTYPE);
                }
                let r = self.update_at(pos, now_ms, |v| v.as_list_mut().map(f));
                if self.entries[pos]
                    .value
                    .as_list()
                    .is_some_and(|l| l.is_empty())
                {
                    self.remove_at(pos);
                } else {
                    self.key_ready(key, Blocked::List);
                }
                r
            }
            None if create => {
                let mut l = List::default();
                let r = f(&mut l);
                if !l.is_empty() {
                    self.insert(key, Value::List(Box::new(l)), Some(None), now_ms);
                    self.key_ready(key, Blocked::List);
                }
                Some(r)
            }
            None => None,
        };
        Ok(r)
    }

    /// Whether `key` holds a non-empty value of the kind a blocked pop
    /// waits for (an expired one still counts), without statistics,
    /// access or expiry side effects.
    pub fn peek_ready(&self, key: &[u8], kind: Blocked) -> bool {
        self.position(key).is_some_and(|pos| {
            let v = &self.entries[pos].value;
            match kind {
                Blocked::List => v.as_list().is_some_and(|l| !l.is_empty()),
                Blocked::ZSet => v.as_zset().is_some_and(|z| !z.is_empty()),
            }
        })
    }

    fn key_ready(&mut self, key: &[u8], kind: Blocked) {
        if !self.watch_lists {
            return;
        }
        if self.ready_lists.len() >= READY_LISTS_MAX {
            self.ready_overflow = true;
        } else if self.ready_lists.last().map(|(k, w)| (&k[..], *w)) != Some((key, kind)) {
            self.ready_lists.push((key.into(), kind));
        }
    }

    /// Whether list writes report ready keys (the server turns this on
    /// while connections wait for a pop on this shard).
    pub fn set_watch_lists(&mut self, on: bool) {
        self.watch_lists = on;
        if !on {
            self.ready_lists.clear();
            self.ready_overflow = false;
        }
    }

    pub fn watches_lists(&self) -> bool {
        self.watch_lists
    }

    /// The keys list and sorted-set writes left non-empty since the last
    /// call, with their kind (at most `READY_LISTS_MAX`), and whether
    /// more were dropped (then every waiter of the shard should look
    /// again).
    pub fn take_ready_lists(&mut self) -> (ReadyKeys, bool) {
        let overflow = std::mem::take(&mut self.ready_overflow);
        (std::mem::take(&mut self.ready_lists), overflow)
    }

    /// Whether a live key exists (no statistics, no touch).
    pub fn contains(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.find(key, now_ms).is_some()
    }

    /// Reads the value at a position without touching it.
    pub fn value_at(&self, pos: usize) -> &Value {
        &self.entries[pos].value
    }

    /// `None` when the key does not exist, else `Some(deadline)` where the
    /// deadline (unix ms) is `None` for a key without one.
    pub fn deadline(&mut self, key: &[u8], now_ms: u64) -> Option<Option<u64>> {
        let pos = self.find(key, now_ms)?;
        Some(self.expire_of(pos))
    }

    /// Mutates the value at `pos` in place, keeping memory accounting
    /// right.
    pub fn update_at<R>(&mut self, pos: usize, now_ms: u64, f: impl FnOnce(&mut Value) -> R) -> R {
        self.touch_at(pos, now_ms);
        self.mark(pos);
        let value = &mut self.entries[pos].value;
        let before = value.heap_bytes();
        let r = f(value);
        let after = value.heap_bytes();
        self.heap_bytes = self.heap_bytes + after - before;
        r
    }

    /// Applies `f` to the string at `key` as raw bytes at least `len`
    /// long, for a bit write (SETBIT, BITFIELD), as Redis'
    /// `lookupStringForBitCommand`: an absent key becomes `len` zero
    /// bytes, a shorter string grows with zeros, and any string takes
    /// the raw encoding (an `int` one becomes its digits). `f` answers
    /// its result and whether it changed a byte; the key is marked
    /// changed (WATCH) only when it was created, grew or changed, as
    /// Redis signals. Another type is WRONGTYPE and changes nothing.
    /// The caller bounds `len` (the string length limit).
    pub fn write_bits<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> (R, bool),
    ) -> Result<R, &'static str> {
        let Some(pos) = self.find(key, now_ms) else {
            let mut buf = vec![0u8; len];
            let (r, _) = f(&mut buf);
            self.insert(key, Value::Growable(Box::new(buf)), Some(None), now_ms);
            return Ok(r);
        };
        if !self.entries[pos].value.is_string() {
            return Err(WRONGTYPE);
        }
        self.touch_at(pos, now_ms);
        let value = &mut self.entries[pos].value;
        let before = value.heap_bytes();
        let buf = value.make_growable();
        let grew = buf.len() < len;
        if grew {
            buf.resize(len, 0);
        }
        let (r, changed) = f(buf);
        let after = value.heap_bytes();
        self.heap_bytes = self.heap_bytes + after - before;
        if grew || changed {
            self.mark(pos);
        }
        Ok(r)
    }

    /// Stores `value` under `key`. `expire` is `Some(deadline)`,
    /// `Some(None)` to clear any deadline, or `None` to keep the existing
    /// one (KEEPTTL). Returns whether the key already existed.
    pub fn insert(
        &mut self,
        key: &[u8],
        value: Value,
        expire: Option<Option<u64>>,
        now_ms: u64,
    ) -> bool {
        let found = self.find(key, now_ms);
        self.insert_found(found, key, value, expire, now_ms)
    }

    /// [`Self::insert`] for a caller that already has `find(key)`'s result
    /// and changed nothing since, so the hot path hashes the key once.
    pub fn insert_found(
        &mut self,
        found: Option<usize>,
        key: &[u8],
        value: Value,
        expire: Option<Option<u64>>,
        now_ms: u64,
    ) -> bool {
        // A list or sorted set stored whole (RENAME, COPY, a new one, a
        // STORE result): blocked pops on this key may proceed, as Redis'
        // dbAdd signals.
        if value.as_list().is_some() {
            self.key_ready(key, Blocked::List);
        } else if value.as_zset().is_some() {
            self.key_ready(key, Blocked::ZSet);
        }
        if value.as_hash().is_some_and(Hash::has_ttls) && !self.hfe.contains(key) {
            self.hfe.insert(key.into());
        }
        let found = match found {
            None if !self.lazy_expire => {
                // Replica mode: `find` hides an expired key without
                // removing it. A write replaces it: drop the hidden entry
                // first, or the key would be stored twice.
                if let Some(stale) = self.position(key) {
                    self.remove_at(stale);
                    self.stats.expired_keys += 1;
                }
                None
            }
            f => f,
        };
        debug_assert_eq!(
            found,
            self.position(key),
            "stale position passed to insert_found"
        );
        if let Some(pos) = found {
            self.update_at(pos, now_ms, |v| *v = value);
            if let Some(deadline) = expire {
                self.set_deadline_at(pos, deadline);
            }
            return true;
        }
        let pos = self.entries.len();
        assert!(pos < NOT_VOLATILE as usize - 1, "shard holds too many keys");
        self.mark_key(key);
        let key = SmallBytes::new(key);
        self.heap_bytes += key.heap_bytes() + value.heap_bytes();
        let h = self.hash(key.as_slice());
        let meta = self.fresh_meta(now_ms);
        self.entries.push(Entry {
            key,
            value,
            vol: NOT_VOLATILE,
            meta,
        });
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(h, pos as u32, |&i| {
            hasher.hash_one(entries[i as usize].key.as_slice())
        });
        if let Some(Some(deadline)) = expire {
            self.set_deadline_at(pos, Some(deadline));
        }
        false
    }

    /// Sets or clears the deadline of a live key; false if it is absent.
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<u64>, now_ms: u64) -> bool {
        match self.find(key, now_ms) {
            Some(pos) => {
                self.mark(pos);
                self.set_deadline_at(pos, deadline);
                true
            }
            None => false,
        }
    }

    fn set_deadline_at(&mut self, pos: usize, deadline: Option<u64>) {
        let vol = self.entries[pos].vol;
        match (vol, deadline) {
            (NOT_VOLATILE, None) => {}
            (NOT_VOLATILE, Some(at)) => {
                self.entries[pos].vol = self.volatile.len() as u32;
                self.volatile.push(VolatileSlot {
                    entry: pos as u32,
                    expire_ms: at,
                });
            }
            (v, Some(at)) => self.volatile[v as usize].expire_ms = at,
            (v, None) => {
                self.remove_volatile(v as usize);
                self.entries[pos].vol = NOT_VOLATILE;
            }
        }
    }

    fn remove_volatile(&mut self, v: usize) {
        self.volatile.swap_remove(v);
        if let Some(moved) = self.volatile.get(v) {
            self.entries[moved.entry as usize].vol = v as u32;
        }
    }

    /// Removes a live key, returning its value and deadline.
    pub fn remove(&mut self, key: &[u8], now_ms: u64) -> Option<(Value, Option<u64>)> {
        let pos = self.find(key, now_ms)?;
        let deadline = self.expire_of(pos);
        Some((self.remove_at(pos), deadline))
    }

    pub(crate) fn remove_at(&mut self, pos: usize) -> Value {
        self.mark(pos);
        let h = self.hash(self.entries[pos].key.as_slice());
        match self.index.find_entry(h, |&i| i as usize == pos) {
            Ok(slot) => {
                slot.remove();
            }
            Err(_) => panic!("keyspace index lost position {pos}"),
        }
        let vol = self.entries[pos].vol;
        if vol != NOT_VOLATILE {
            self.remove_volatile(vol as usize);
        }
        let last = self.entries.len() - 1;
        let entry = self.entries.swap_remove(pos);
        if pos != last {
            let h = self.hash(self.entries[pos].key.as_slice());
            match self.index.find_mut(h, |&i| i as usize == last) {
                Some(slot) => *slot = pos as u32,
                None => panic!("keyspace index lost moved position {last}"),
            }
            let moved_vol = self.entries[pos].vol;
            if moved_vol != NOT_VOLATILE {
                self.volatile[moved_vol as usize].entry = pos as u32;
            }
        }
        self.heap_bytes -= entry.key.heap_bytes() + entry.value.heap_bytes();
        self.maybe_shrink();
        entry.value
    }

    fn maybe_shrink(&mut self) {
        let len = self.entries.len();
        self.entries.shrink();
        if self.index.capacity() > 1024 && len < self.index.capacity() / 4 {
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index.shrink_to(len * 2, |&i| {
                hasher.hash_one(entries[i as usize].key.as_slice())
            });
            self.volatile.shrink_to(self.volatile.len() * 2);
        }
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.hfe.clear();
        self.entries = ChunkVec::new();
        self.index = HashTable::new();
        self.volatile = Vec::new();
        self.heap_bytes = 0;
        self.pool.clear();
    }

    // ---- access metadata (LRU / LFU) ----

    fn fresh_meta(&mut self, now_ms: u64) -> u32 {
        match self.tracking {
            AccessTracking::Lru => lru_clock(now_ms),
            AccessTracking::Lfu { .. } => (lfu_minutes(now_ms) << 8) | LFU_INIT as u32,
        }
    }

    /// Records an access (reads and writes; OBJECT does not call this).
    pub fn touch_at(&mut self, pos: usize, now_ms: u64) {
        let meta = match self.tracking {
            AccessTracking::Lru => lru_clock(now_ms),
            AccessTracking::Lfu {
                log_factor,
                decay_minutes,
            } => {
                let counter = self.lfu_decayed(self.entries[pos].meta, now_ms, decay_minutes);
                let counter = self.lfu_log_incr(counter, log_factor);
                (lfu_minutes(now_ms) << 8) | counter as u32
            }
        };
        self.entries[pos].meta = meta;
    }

    fn lfu_decayed(&self, meta: u32, now_ms: u64, decay_minutes: u32) -> u8 {
        let counter = (meta & 0xff) as u8;
        if decay_minutes == 0 {
            return counter;
        }
        let then = meta >> 8;
        let now = lfu_minutes(now_ms);
        let elapsed = now.wrapping_sub(then) & 0xffff;
        let periods = elapsed / decay_minutes;
        counter.saturating_sub(periods.min(255) as u8)
    }

    fn lfu_log_incr(&mut self, counter: u8, log_factor: u32) -> u8 {
        if counter == 255 {
            return 255;
        }
        let base = counter.saturating_sub(LFU_INIT) as f64;
        let p = 1.0 / (base * log_factor as f64 + 1.0);
        let r = (self.next_rand() >> 11) as f64 / (1u64 << 53) as f64;
        if r < p {
            counter + 1
        } else {
            counter
        }
    }

    /// Seconds since the key's last access (OBJECT IDLETIME).
    pub fn idle_ms_at(&self, pos: usize, now_ms: u64) -> u64 {
        (lru_clock(now_ms).wrapping_sub(self.entries[pos].meta) as u64) * LRU_UNIT_MS
    }

    /// The decayed LFU counter (OBJECT FREQ).
    pub fn freq_at(&self, pos: usize, now_ms: u64) -> u8 {
        match self.tracking {
            AccessTracking::Lfu { decay_minutes, .. } => {
                self.lfu_decayed(self.entries[pos].meta, now_ms, decay_minutes)
            }
            AccessTracking::Lru => 0,
        }
    }

    /// Eviction score of a position under a policy: higher goes first.
    pub(crate) fn evict_score(&self, pos: usize, policy: Policy, now_ms: u64) -> u64 {
        match policy {
            Policy::AllkeysLfu | Policy::VolatileLfu => match self.tracking {
                AccessTracking::Lfu { decay_minutes, .. } => {
                    255 - self.lfu_decayed(self.entries[pos].meta, now_ms, decay_minutes) as u64
                }
                AccessTracking::Lru => self.idle_ms_at(pos, now_ms),
            },
            Policy::VolatileTtl => u64::MAX - self.expire_of(pos).unwrap_or(u64::MAX),
            _ => match self.tracking {
                AccessTracking::Lru => self.idle_ms_at(pos, now_ms),
                AccessTracking::Lfu { .. } => 255 - (self.entries[pos].meta & 0xff) as u64,
            },
        }
    }

    // ---- sampling and iteration ----

    /// A uniformly random position, from all keys or only volatile ones.
    pub(crate) fn random_position(&mut self, volatile_only: bool) -> Option<usize> {
        if volatile_only {
            if self.volatile.is_empty() {
                return None;
            }
            let v = (self.next_rand() % self.volatile.len() as u64) as usize;
            Some(self.volatile[v].entry as usize)
        } else {
            if self.entries.is_empty() {
                return None;
            }
            Some((self.next_rand() % self.entries.len() as u64) as usize)
        }
    }

    pub(crate) fn key_at(&self, pos: usize) -> &SmallBytes {
        &self.entries[pos].key
    }

    pub(crate) fn is_volatile_at(&self, pos: usize) -> bool {
        self.entries[pos].vol != NOT_VOLATILE
    }

    /// Finds a position by key without expiry handling (eviction pool).
    pub(crate) fn position_of(&self, key: &[u8]) -> Option<usize> {
        self.position(key)
    }

    /// A random live key (RANDOMKEY); expired keys met on the way are
    /// removed. Gives up after a bounded number of tries.
    pub fn random_key(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        for _ in 0..100 {
            let pos = self.random_position(false)?;
            if self.is_expired(pos, now_ms) {
                if self.lazy_expire {
                    self.remove_at(pos);
                    self.stats.expired_keys += 1;
                }
                continue;
            }
            return Some(self.entries[pos].key.as_slice().to_vec());
        }
        None
    }

    /// Visits up to `count` positions going down from `cursor` (0 starts
    /// at the top) and returns the next cursor, 0 when done.
    ///
    /// Scanning downward makes SCAN's guarantee hold with swap-remove: a
    /// removal only moves the last entry into a lower hole, so an entry
    /// not yet visited stays below the cursor, and an entry already
    /// visited can only be met again (a duplicate, which SCAN allows).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut f: impl FnMut(&[u8], &Value),
    ) -> u64 {
        let len = self.entries.len() as u64;
        let mut i = if cursor == 0 { len } else { cursor.min(len) };
        let mut visited = 0;
        while i > 0 && visited < count.max(1) {
            i -= 1;
            visited += 1;
            let pos = i as usize;
            if !self.is_expired(pos, now_ms) {
                let e = &self.entries[pos];
                f(e.key.as_slice(), &e.value);
            }
        }
        i
    }

    /// Removes up to `samples` randomly chosen volatile keys that have
    /// expired; returns how many it sampled and removed.
    pub fn expire_sample(&mut self, now_ms: u64, samples: usize) -> (usize, usize) {
        let (mut sampled, mut expired) = (0, 0);
        for _ in 0..samples {
            let Some(pos) = self.random_position(true) else {
                break;
            };
            sampled += 1;
            if self.is_expired(pos, now_ms) {
                self.remove_at(pos);
                self.stats.expired_keys += 1;
                expired += 1;
            }
        }
        (sampled, expired)
    }

    // ---- replicated expiry (cluster mode) ----

    /// Keys whose deadline passed, found by scanning at most `max_scan`
    /// volatile slots from `cursor` (wrapping). Changes nothing — not
    /// even the sampling generator — so a leader can look without its
    /// state drifting from its replicas'. Returns the keys and the cursor
    /// to continue from.
    pub fn expired_keys(
        &self,
        cursor: usize,
        max_scan: usize,
        now_ms: u64,
    ) -> (Vec<Vec<u8>>, usize) {
        let n = self.volatile.len();
        if n == 0 {
            return (Vec::new(), 0);
        }
        let mut keys = Vec::new();
        let mut c = cursor % n;
        for _ in 0..max_scan.min(n) {
            let slot = self.volatile[c];
            if now_ms > slot.expire_ms {
                keys.push(self.entries[slot.entry as usize].key.as_slice().to_vec());
            }
            c = (c + 1) % n;
        }
        (keys, c)
    }

    /// Deletes `key` if its deadline passed at `now_ms` (the replicated
    /// form of active expiry: a key re-set with a later deadline since
    /// the leader looked survives). Returns whether it was deleted.
    pub fn expire_if_due(&mut self, key: &[u8], now_ms: u64) -> bool {
        match self.position(key) {
            Some(pos) if self.is_expired(pos, now_ms) => {
                self.remove_at(pos);
                self.stats.expired_keys += 1;
                true
            }
            _ => false,
        }
    }

    // ---- snapshot support (see snapshot.rs) ----

    /// The sampling generator's state. A snapshot carries it so that a
    /// restored replica draws the same samples as the original.
    pub fn rng_state(&self) -> u64 {
        self.rng
    }

    /// Restores the sampling generator's state. Panics on zero, the one
    /// state xorshift never leaves.
    pub fn set_rng_state(&mut self, state: u64) {
        assert!(
            state != 0,
            "the sampling generator's state must be non-zero"
        );
        self.rng = state;
    }

    /// Every stored entry in position order, expired ones included, as
    /// `(key, value, access meta)`. Touches and expires nothing.
    pub fn stored_entries(&self) -> impl ExactSizeIterator<Item = (&[u8], &Value, u32)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.key.as_slice(), &e.value, e.meta))
    }

    /// Every deadline in the order of the volatile list (the list volatile
    /// sampling draws from), as `(position, deadline in unix ms)`.
    pub fn stored_deadlines(&self) -> impl ExactSizeIterator<Item = (usize, u64)> + '_ {
        self.volatile
            .iter()
            .map(|s| (s.entry as usize, s.expire_ms))
    }

    /// Appends an entry at position `len()` with the given access meta and
    /// no deadline (snapshot restore). Returns false, changing nothing,
    /// when the key is already stored.
    pub fn push_restored(&mut self, key: &[u8], value: Value, meta: u32) -> bool {
        let pos = self.entries.len();
        assert!(pos < NOT_VOLATILE as usize - 1, "shard holds too many keys");
        let h = self.hash(key);
        let (entries, hasher) = (&self.entries, &self.hasher);
        // `entry` makes room before it returns, rehashing only the entries
        // already pushed; the new slot is filled before the entry exists,
        // and nothing reads it in between.
        match self.index.entry(
            h,
            |&i| entries[i as usize].key.as_slice() == key,
            |&i| hasher.hash_one(entries[i as usize].key.as_slice()),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(pos as u32);
            }
        }
        if value.as_hash().is_some_and(Hash::has_ttls) {
            self.hfe.insert(key.into());
        }
        let key = SmallBytes::new(key);
        self.heap_bytes += key.heap_bytes() + value.heap_bytes();
        self.entries.push(Entry {
            key,
            value,
            vol: NOT_VOLATILE,
            meta,
        });
        true
    }

    /// Gives the entry at `pos` a deadline, appended to the volatile list
    /// (snapshot restore). Returns false, changing nothing, when `pos` is
    /// out of range or already has a deadline.
    pub fn push_restored_deadline(&mut self, pos: usize, deadline_ms: u64) -> bool {
        match self.entries.get(pos) {
            Some(e) if e.vol == NOT_VOLATILE => {
                self.set_deadline_at(pos, Some(deadline_ms));
                true
            }
            _ => false,
        }
    }

    /// A digest of the logical content (keys, values, deadlines),
    /// independent of layout, so replicas can be compared.
    pub fn digest(&self) -> u64 {
        let fixed = foldhash::fast::FixedState::with_seed(0x6361_6972_6e00);
        let mut acc = 0u64;
        for (pos, e) in self.entries.iter().enumerate() {
            let key = e.key.as_slice();
            let h = match &e.value {
                // Field order is layout too: each pair counts on its own.
                Value::Hash(hash) => hash
                    .iter()
                    .fold(
                        fixed.hash_one((key, b"hash", self.expire_of(pos))),
                        |acc, (f, v)| acc.wrapping_add(fixed.hash_one((key, f, v))),
                    )
                    .wrapping_add(hash.ttls().fold(0u64, |acc, (f, t)| {
                        acc.wrapping_add(fixed.hash_one((key, b"ttl", f, t)))
                    })),
                Value::Set(set) => set.iter().fold(
                    fixed.hash_one((key, b"set", self.expire_of(pos))),
                    |acc, m| acc.wrapping_add(m.with(|m| fixed.hash_one((key, m)))),
                ),
                // Order matters: each element counts with its position.
                Value::List(list) => list.iter().enumerate().fold(
                    fixed.hash_one((key, b"list", list.encoding(), self.expire_of(pos))),
                    |acc, (i, e)| acc.wrapping_add(fixed.hash_one((key, i, e))),
                ),
                // The order is the scores': each member counts with its
                // score, and the encoding (which sets the table order
                // ZSCAN and ZRANDMEMBER see) with the key.
                Value::ZSet(z) => {
                    let mut acc = fixed.hash_one((key, b"zset", z.encoding(), self.expire_of(pos)));
                    z.for_each_stored(|s, m| {
                        acc = acc.wrapping_add(fixed.hash_one((key, m, s.to_bits())));
                    });
                    acc
                }
                v => v.with_bytes(|v| fixed.hash_one((key, v, self.expire_of(pos)))),
            };
            acc = acc.wrapping_add(h);
        }
        acc
    }
}

/// One step of the sampling generator (xorshift64*), on a state taken
/// out of a keyspace with [`Keyspace::rng_state`] where the keyspace
/// itself is borrowed (HRANDFIELD walks a hash while it draws).
pub(crate) fn xorshift_star(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn lru_clock(now_ms: u64) -> u32 {
    (now_ms / LRU_UNIT_MS) as u32
}

fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Value::from_bytes(s.as_bytes())
    }

    #[test]
    fn a_set_write_that_changes_nothing_keeps_the_watch_version() {
        let mut ks = Keyspace::new(7);
        let make = |seed| Set::for_members(b"1", 1, seed);
        let add = |ks: &mut Keyspace, m: &[u8]| {
            ks.write_set_if(b"s", 0, Some(&make), |s, seed| {
                let new = s.add(m, seed).unwrap_or(false);
                (new, new)
            })
        };
        assert_eq!(add(&mut ks, b"1"), Ok(Some(true)));
        let (v1, alive) = ks.key_version(b"s", 0);
        assert!(alive);
        assert_eq!(add(&mut ks, b"1"), Ok(Some(false)));
        assert_eq!(ks.key_version(b"s", 0).0, v1, "no change, no new version");
        assert_eq!(add(&mut ks, b"2"), Ok(Some(true)));
        assert_ne!(ks.key_version(b"s", 0).0, v1, "an added member is a write");
        ks.insert(b"str", v("x"), Some(None), 0);
        let r = ks.write_set_if(b"str", 0, Some(&make), |_, _| ((), true));
        assert_eq!(r, Err(WRONGTYPE));
    }

    /// A prefetch is only a hint: present, absent and expired keys are
    /// where they were, with their values, and nothing counts a hit.
    #[test]
    fn prefetch_changes_nothing() {
        let mut ks = Keyspace::new(3);
        ks.set_lazy_expire(false);
        for i in 0..100 {
            let ttl = if i % 10 == 0 { Some(5) } else { None };
            ks.insert(format!("k{i}").as_bytes(), v("x"), Some(ttl), 0);
        }
        let before: Vec<_> = (0..100)
            .map(|i| ks.position_of(format!("k{i}").as_bytes()))
            .collect();
        let stats = (ks.stats.hits, ks.stats.misses, ks.stats.expired_keys);
        for i in 0..200 {
            ks.prefetch(format!("k{i}").as_bytes());
        }
        let after: Vec<_> = (0..100)
            .map(|i| ks.position_of(format!("k{i}").as_bytes()))
            .collect();
        assert_eq!(before, after);
        assert!(after.iter().all(Option::is_some));
        assert_eq!(ks.len(), 100);
        assert_eq!(
            (ks.stats.hits, ks.stats.misses, ks.stats.expired_keys),
            stats
        );
        assert_eq!(ks.get(b"k10", 100).map(|v| v.to_vec()), None, "expired");
        assert_eq!(ks.get(b"k11", 100).map(|v| v.to_vec()), Some(b"x".to_vec()));
    }

    #[test]
    fn entry_is_seven_words() {
        assert_eq!(std::mem::size_of::<Entry>(), 56);
    }

    #[test]
    fn insert_get_remove_keep_index_consistent() {
        let mut ks = Keyspace::new(1);
        for i in 0..1000 {
            ks.insert(
                format!("k{i}").as_bytes(),
                v(&format!("v{i}")),
                Some(if i % 3 == 0 { Some(10_000) } else { None }),
                0,
            );
        }
        for i in (0..1000).step_by(2) {
            assert!(ks.remove(format!("k{i}").as_bytes(), 0).is_some());
        }
        assert_eq!(ks.len(), 500);
        for i in 0..1000 {
            let got = ks.get(format!("k{i}").as_bytes(), 0).map(|v| v.to_vec());
            if i % 2 == 0 {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(format!("v{i}").into_bytes()));
                let dl = ks
                    .deadline(format!("k{i}").as_bytes(), 0)
                    .expect("live key");
                assert_eq!(dl, if i % 3 == 0 { Some(10_000) } else { None });
            }
        }
        assert_eq!(
            ks.volatile_len(),
            (0..1000).filter(|i| i % 2 == 1 && i % 3 == 0).count()
        );
    }

    #[test]
    fn expired_key_is_invisible_and_removed_on_access() {
        let mut ks = Keyspace::new(1);
        ks.insert(b"k", v("x"), Some(Some(100)), 0);
        assert!(
            ks.get(b"k", 100).is_some(),
            "Redis: expired only when now > deadline"
        );
        assert!(ks.get(b"k", 101).is_none());
        assert_eq!(ks.len(), 0);
        assert_eq!(ks.stats.expired_keys, 1);
    }

    #[test]
    fn replica_mode_hides_but_keeps_expired_keys() {
        let mut ks = Keyspace::new(1);
        ks.set_lazy_expire(false);
        ks.insert(b"k", v("x"), Some(Some(100)), 0);
        assert!(ks.get(b"k", 101).is_none());
        assert_eq!(ks.len(), 1);
        // A write over the hidden key replaces it: one entry, no deadline.
        assert!(!ks.insert(b"k", v("y"), Some(None), 102));
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.volatile_len(), 0);
        assert!(ks.get(b"k", 103).is_some());
    }

    #[test]
    fn scan_returns_every_key_present_throughout_despite_deletes() {
        let mut ks = Keyspace::new(7);
        for i in 0..200 {
            ks.insert(format!("k{i}").as_bytes(), v("x"), None, 0);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = ks.scan(cursor, 10, 0, |k, _| {
                seen.insert(k.to_vec());
            });
            // Delete keys 0..100 (some already seen, some not) as we go.
            for j in 0..5 {
                ks.remove(format!("k{}", round * 5 + j).as_bytes(), 0);
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in 100..200 {
            assert!(seen.contains(format!("k{i}").as_bytes()), "missed k{i}");
        }
    }

    #[test]
    fn expire_sample_removes_only_expired() {
        let mut ks = Keyspace::new(3);
        for i in 0..100 {
            ks.insert(
                format!("k{i}").as_bytes(),
                v("x"),
                Some(Some(if i < 50 { 10 } else { 1000 })),
                0,
            );
        }
        let mut removed = 0;
        for _ in 0..100 {
            removed += ks.expire_sample(20, 20).1;
        }
        assert_eq!(removed, 50);
        assert_eq!(ks.len(), 50);
    }

    #[test]
    fn heap_accounting_returns_to_zero() {
        let mut ks = Keyspace::new(3);
        let big = "x".repeat(100);
        ks.insert(big.as_bytes(), v(&big), None, 0);
        assert!(ks.heap_bytes >= 200);
        let pos = ks.find(big.as_bytes(), 0).unwrap();
        ks.update_at(pos, 0, |v| v.make_growable().extend_from_slice(b"more"));
        ks.remove(big.as_bytes(), 0);
        assert_eq!(ks.heap_bytes, 0);
    }

    #[test]
    fn digest_ignores_layout() {
        let mut a = Keyspace::new(1);
        let mut b = Keyspace::new(2);
        a.insert(b"x", v("1"), None, 0);
        a.insert(b"y", v("2"), Some(Some(5)), 0);
        b.insert(b"y", v("2"), Some(Some(5)), 0);
        b.insert(b"x", v("1"), None, 0);
        assert_eq!(a.digest(), b.digest());
        b.insert(b"x", v("3"), None, 0);
        assert_ne!(a.digest(), b.digest());
    }
}
