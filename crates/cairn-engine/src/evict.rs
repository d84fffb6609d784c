//! Eviction under a memory limit: Redis' policies, decided by sampling.
//!
//! Like Redis, each eviction samples `samples` keys into a small pool of
//! the best candidates seen so far and evicts the best. Unlike Redis, a
//! candidate's score is re-read when it leaves the pool, so a key that was
//! read after it was sampled is not evicted on stale information.

use crate::bytes::SmallBytes;
use crate::keyspace::Keyspace;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::NoEviction,
        Policy::AllkeysLru,
        Policy::AllkeysLfu,
        Policy::AllkeysRandom,
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllkeysLru => "allkeys-lru",
            Policy::AllkeysLfu => "allkeys-lfu",
            Policy::AllkeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    pub fn uses_lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }
}

const POOL_SIZE: usize = 16;

/// Best eviction candidates seen, ascending by score (best last).
#[derive(Default)]
pub(crate) struct EvictionPool {
    items: Vec<(u64, SmallBytes)>,
}

impl EvictionPool {
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }

    fn offer(&mut self, score: u64, key: &SmallBytes) {
        if self.items.iter().any(|(_, k)| k == key) {
            return;
        }
        if self.items.len() == POOL_SIZE {
            if score <= self.items[0].0 {
                return;
            }
            self.items.remove(0);
        }
        let at = self.items.partition_point(|(s, _)| *s < score);
        self.items.insert(at, (score, key.clone()));
    }
}

impl Keyspace {
    /// Evicts one key under `policy`, sampling `samples` candidates.
    /// Returns false when nothing can be evicted (no candidates, or
    /// `noeviction`).
    pub fn evict_one(&mut self, policy: Policy, samples: usize, now_ms: u64) -> bool {
        let volatile_only = policy.volatile_only();
        let pos = match policy {
            Policy::NoEviction => return false,
            Policy::AllkeysRandom | Policy::VolatileRandom => self.random_position(volatile_only),
            _ => self.pool_candidate(policy, samples, now_ms),
        };
        match pos {
            Some(pos) => {
                self.remove_at(pos);
                self.stats.evicted_keys += 1;
                true
            }
            None => false,
        }
    }

    /// Chooses up to `n` keys to evict under `policy` without removing
    /// them (a Raft leader proposes them as `CAIRN.EVICT`; every replica
    /// then removes the same keys). Distinct keys; empty under
    /// `noeviction` or when nothing qualifies.
    pub fn pick_victims(
        &mut self,
        policy: Policy,
        samples: usize,
        now_ms: u64,
        n: usize,
    ) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        // Bounded: a few tries per wanted key (random picks may repeat).
        for _ in 0..n.saturating_mul(4) {
            if out.len() >= n {
                break;
            }
            let pos = match policy {
                Policy::NoEviction => return out,
                Policy::AllkeysRandom | Policy::VolatileRandom => {
                    self.random_position(policy.volatile_only())
                }
                // The pool may hold only keys already gone (evicted by an
                // earlier CAIRN.EVICT, which does not pass through it) and
                // refuse fresh samples that score lower: fall back to a
                // random key rather than report nothing to evict.
                _ => self
                    .pool_candidate(policy, samples, now_ms)
                    .or_else(|| self.random_position(policy.volatile_only())),
            };
            let Some(pos) = pos else {
                break;
            };
            let key = self.key_at(pos).as_slice().to_vec();
            if !out.contains(&key) {
                out.push(key);
            }
        }
        out
    }

    /// Removes `key` as an eviction (counted in `evicted_keys`), whatever
    /// its deadline. Returns whether it existed.
    pub fn evict_key(&mut self, key: &[u8]) -> bool {
        match self.position_of(key) {
            Some(pos) => {
                self.remove_at(pos);
                self.stats.evicted_keys += 1;
                true
            }
            None => false,
        }
    }

    fn pool_candidate(&mut self, policy: Policy, samples: usize, now_ms: u64) -> Option<usize> {
        for _ in 0..samples.max(1) {
            let Some(pos) = self.random_position(policy.volatile_only()) else {
                break;
            };
            let score = self.evict_score(pos, policy, now_ms);
            let key = self.key_at(pos).clone();
            self.pool.offer(score, &key);
        }
        // Bounded: each round removes one pool item (re-offered items only
        // come back with a lower score, behind a better one).
        for _ in 0..POOL_SIZE * 2 {
            let (score, key) = self.pool.items.pop()?;
            let Some(pos) = self.position_of(key.as_slice()) else {
                continue;
            };
            if policy.volatile_only() && !self.is_volatile_at(pos) {
                continue;
            }
            let fresh = self.evict_score(pos, policy, now_ms);
            let next_best = self.pool.items.last().map(|(s, _)| *s);
            if fresh < score && next_best.is_some_and(|nb| fresh < nb) {
                self.pool.offer(fresh, &key);
                continue;
            }
            return Some(pos);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::AccessTracking;
    use crate::value::Value;

    fn fill(ks: &mut Keyspace, n: usize, ttl_every: usize) {
        for i in 0..n {
            let dl = if ttl_every > 0 && i % ttl_every == 0 {
                Some(Some(1_000_000 + i as u64))
            } else {
                Some(None)
            };
            ks.insert(format!("k{i}").as_bytes(), Value::Int(i as i64), dl, 0);
        }
    }

    #[test]
    fn noeviction_never_evicts() {
        let mut ks = Keyspace::new(1);
        fill(&mut ks, 10, 0);
        assert!(!ks.evict_one(Policy::NoEviction, 5, 0));
        assert_eq!(ks.len(), 10);
    }

    #[test]
    fn volatile_policies_only_evict_keys_with_deadlines() {
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut ks = Keyspace::new(9);
            fill(&mut ks, 100, 10);
            let mut evicted = 0;
            while ks.evict_one(policy, 5, 10) {
                evicted += 1;
            }
            assert_eq!(evicted, 10, "{policy:?}");
            assert_eq!(ks.volatile_len(), 0);
            assert_eq!(ks.len(), 90);
        }
    }

    #[test]
    fn lru_prefers_keys_idle_longest() {
        let mut ks = Keyspace::new(5);
        for i in 0..1000u64 {
            ks.insert(
                format!("k{i}").as_bytes(),
                Value::Int(0),
                Some(None),
                i * 1000,
            );
        }
        // Evict half; the survivors should be overwhelmingly the recent ones.
        for _ in 0..500 {
            assert!(ks.evict_one(Policy::AllkeysLru, 5, 2_000_000));
        }
        let recent_kept = (500..1000)
            .filter(|i| ks.contains(format!("k{i}").as_bytes(), 2_000_000))
            .count();
        assert!(
            recent_kept > 400,
            "kept only {recent_kept} of the 500 most recent"
        );
    }

    #[test]
    fn lfu_prefers_rarely_used_keys() {
        let mut ks = Keyspace::new(5);
        ks.set_access_tracking(AccessTracking::Lfu {
            log_factor: 10,
            decay_minutes: 1,
        });
        fill(&mut ks, 200, 0);
        for _ in 0..50 {
            for i in 0..20 {
                ks.get(format!("k{i}").as_bytes(), 0);
            }
        }
        for _ in 0..150 {
            assert!(ks.evict_one(Policy::AllkeysLfu, 5, 0));
        }
        let hot_kept = (0..20)
            .filter(|i| ks.contains(format!("k{i}").as_bytes(), 0))
            .count();
        assert!(hot_kept >= 18, "kept only {hot_kept} of 20 hot keys");
    }

    #[test]
    fn volatile_ttl_evicts_nearest_deadline_first() {
        let mut ks = Keyspace::new(5);
        for i in 0..50u64 {
            ks.insert(
                format!("k{i}").as_bytes(),
                Value::Int(0),
                Some(Some(10_000 + i)),
                0,
            );
        }
        for _ in 0..10 {
            ks.evict_one(Policy::VolatileTtl, 50, 0);
        }
        assert!(!ks.contains(b"k0", 0));
        assert!(ks.contains(b"k49", 0));
    }

    #[test]
    fn policy_names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Some(p));
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllkeysLru));
        assert_eq!(Policy::parse("lru"), None);
    }
}
