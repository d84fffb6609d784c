//! The standalone keyspace: shards split by slot range, each behind its
//! own lock, plus memory-limit enforcement and active expiry.
//!
//! Why locks and not a task per shard: a command here holds one shard's
//! lock for well under a microsecond, so an uncontended lock costs less
//! than any cross-thread message and wake-up. Multi-key commands lock
//! every involved shard in ascending index order, so they are atomic and
//! cannot deadlock. Never lock a second shard out of order.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use cairn_engine::cmd::Db;
use cairn_engine::slot::{slot, SLOTS};
use cairn_engine::{AccessTracking, Keyspace, Policy};
use parking_lot::{Mutex, MutexGuard};

/// One shard on its own cache lines, so the two threads' locks and
/// counters never share a line.
#[repr(align(128))]
pub struct Shard {
    ks: Mutex<Keyspace>,
    /// `ks.bytes_used()` as of the last command on this shard.
    bytes: AtomicUsize,
}

pub struct Shards {
    shards: Box<[Shard]>,
    /// slot >> shift = shard index.
    shift: u32,
    evict_cursor: AtomicUsize,
    expire_cursor: AtomicUsize,
}

/// Most keys one command may evict before it proceeds anyway (Redis
/// bounds eviction by time in the same way).
const EVICT_STEPS_MAX: usize = 100_000;
/// Keys sampled per active-expiry step (Redis: 20).
const EXPIRE_SAMPLES: usize = 20;

impl Shards {
    pub fn new(count: usize, seed: u64) -> Shards {
        assert!(count.is_power_of_two() && count <= SLOTS);
        let shards = (0..count)
            .map(|i| {
                let mut ks = Keyspace::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                // Until cluster mode says otherwise (`set_lazy_expire`).
                ks.locks.set_standalone(true);
                // Leases run on this node's monotonic clock.
                ks.locks.set_clock(crate::mono_us);
                Shard {
                    ks: Mutex::new(ks),
                    bytes: AtomicUsize::new(0),
                }
            })
            .collect();
        Shards {
            shards,
            shift: (SLOTS / count).trailing_zeros(),
            evict_cursor: AtomicUsize::new(0),
            expire_cursor: AtomicUsize::new(0),
        }
    }

    pub fn count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    pub fn index_of(&self, key: &[u8]) -> usize {
        (slot(key) >> self.shift) as usize
    }

    pub fn lock(&self, i: usize) -> MutexGuard<'_, Keyspace> {
        self.shards[i].ks.lock()
    }

    /// Records a shard's size after a command changed it.
    #[inline]
    pub fn refresh(&self, i: usize, ks: &Keyspace) {
        self.shards[i].bytes.store(ks.bytes_used(), Relaxed);
    }

    /// Locks the shards owning `keys`, in ascending order.
    pub fn lock_keys<'a>(&'a self, keys: impl Iterator<Item = &'a [u8]>) -> MultiGuard<'a> {
        let mut idx: Vec<usize> = keys.map(|k| self.index_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        let guards = idx.into_iter().map(|i| (i, self.lock(i))).collect();
        MultiGuard {
            shards: self,
            guards,
        }
    }

    /// Runs `f` on each shard in turn (not atomic across shards).
    pub fn for_each(&self, mut f: impl FnMut(usize, &mut Keyspace)) {
        for i in 0..self.shards.len() {
            let mut g = self.lock(i);
            f(i, &mut g);
            self.refresh(i, &g);
        }
    }

    /// Locks every shard (in order) for an atomic whole-keyspace change.
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, Keyspace>> {
        (0..self.shards.len()).map(|i| self.lock(i)).collect()
    }

    /// Replaces shard `i`'s keyspace (a restored Raft snapshot).
    pub fn replace(&self, i: usize, ks: Keyspace) {
        let mut g = self.lock(i);
        *g = ks;
        self.refresh(i, &g);
    }

    /// Replica mode: expired keys are hidden but only deleted by
    /// replicated commands.
    /// Standalone (on) or a replica of Raft groups (off): keys expire on
    /// access, and locks take their tokens and end their leases locally,
    /// only in standalone mode.
    pub fn set_lazy_expire(&self, on: bool) {
        self.for_each(|_, ks| {
            ks.set_lazy_expire(on);
            ks.locks.set_standalone(on);
        });
    }

    pub fn bytes_used(&self) -> usize {
        self.shards.iter().map(|s| s.bytes.load(Relaxed)).sum()
    }

    pub fn set_tracking(&self, t: AccessTracking) {
        self.for_each(|_, ks| ks.set_access_tracking(t));
    }

    pub fn set_string_len_max(&self, n: usize) {
        self.for_each(|_, ks| ks.set_string_len_max(n));
    }

    /// Evicts until the keyspace fits `max_bytes`. False means the limit
    /// is exceeded and nothing more can be evicted (the caller answers
    /// -OOM).
    pub fn ensure_memory(
        &self,
        max_bytes: usize,
        policy: Policy,
        samples: usize,
        now_ms: u64,
    ) -> bool {
        if max_bytes == 0 || self.bytes_used() <= max_bytes {
            return true;
        }
        if policy == Policy::NoEviction {
            return false;
        }
        let n = self.shards.len();
        let mut failures = 0;
        for _ in 0..EVICT_STEPS_MAX {
            let i = self.evict_cursor.fetch_add(1, Relaxed) % n;
            let mut g = self.lock(i);
            if g.evict_one(policy, samples, now_ms) {
                failures = 0;
                self.refresh(i, &g);
            } else {
                failures += 1;
                if failures >= n {
                    return false;
                }
            }
            drop(g);
            if self.bytes_used() <= max_bytes {
                return true;
            }
        }
        true
    }

    /// One active-expiry cycle: sample volatile keys shard by shard,
    /// repeating on a shard while more than 10% of a sample was expired,
    /// until `budget_end`. Returns keys removed.
    pub fn active_expire(&self, now_ms: u64, budget_end: Instant) -> usize {
        let n = self.shards.len();
        let start = self.expire_cursor.load(Relaxed);
        let mut removed = 0;
        for j in 0..n {
            let i = (start + j) % n;
            {
                // Hash fields past their deadline (HEXPIRE).
                let mut g = self.lock(i);
                if g.hash_expire_cycle(now_ms, EXPIRE_SAMPLES * 4) > 0 {
                    self.refresh(i, &g);
                }
            }
            loop {
                let (sampled, expired) = {
                    let mut g = self.lock(i);
                    let r = g.expire_sample(now_ms, EXPIRE_SAMPLES);
                    if r.1 > 0 {
                        self.refresh(i, &g);
                    }
                    r
                };
                removed += expired;
                if Instant::now() >= budget_end {
                    self.expire_cursor.store(i, Relaxed);
                    return removed;
                }
                if sampled == 0 || expired * 10 <= sampled {
                    break;
                }
            }
        }
        removed
    }
}

/// Several locked shards, reachable by key (for multi-key commands).
pub struct MultiGuard<'a> {
    shards: &'a Shards,
    guards: Vec<(usize, MutexGuard<'a, Keyspace>)>,
}

impl MultiGuard<'_> {
    /// Runs `f` on each locked shard.
    pub fn each_locked(&mut self, mut f: impl FnMut(usize, &mut Keyspace)) {
        for (i, g) in &mut self.guards {
            f(*i, g);
        }
    }

    /// Runs `f` on shard `i` if it is locked here.
    pub fn with_shard(&mut self, i: usize, f: impl FnOnce(&mut Keyspace)) {
        if let Some((_, g)) = self.guards.iter_mut().find(|(j, _)| *j == i) {
            f(g);
        }
    }

    /// The lock grants to waiters made under these guards, by shard.
    pub fn take_grants(&mut self) -> Vec<(usize, Vec<cairn_engine::locks::Grant>)> {
        self.guards
            .iter_mut()
            .map(|(i, g)| (*i, g.locks.take_grants()))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

impl Db for MultiGuard<'_> {
    fn shard(&mut self, key: &[u8]) -> &mut Keyspace {
        let i = self.shards.index_of(key);
        match self.guards.iter_mut().find(|(j, _)| *j == i) {
            Some((_, g)) => g,
            None => panic!("command touched key outside its declared keys"),
        }
    }
}

impl Drop for MultiGuard<'_> {
    fn drop(&mut self) {
        for (i, g) in &self.guards {
            self.shards.refresh(*i, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_engine::Value;

    #[test]
    fn shard_index_follows_slot_ranges() {
        let s = Shards::new(16, 1);
        assert_eq!(s.index_of(b"foo"), 12182 / 1024);
        assert_eq!(s.index_of(b"{foo}bar"), s.index_of(b"foo"));
    }

    #[test]
    fn eviction_brings_memory_under_the_limit() {
        let s = Shards::new(4, 1);
        s.for_each(|_, ks| {
            for i in 0..1000 {
                ks.insert(
                    format!("k{i}").as_bytes(),
                    Value::from_bytes(&[b'x'; 100]),
                    Some(None),
                    0,
                );
            }
        });
        let before = s.bytes_used();
        assert!(s.ensure_memory(before / 2, Policy::AllkeysLru, 5, 0));
        assert!(s.bytes_used() <= before / 2);
        assert!(!s.ensure_memory(1, Policy::NoEviction, 5, 0));
        assert!(
            !s.ensure_memory(1, Policy::VolatileLru, 5, 0),
            "no volatile keys: cannot free"
        );
    }
}
