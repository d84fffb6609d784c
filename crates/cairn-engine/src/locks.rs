//! Distributed locks: one group's lock table (docs/design/locks.md).
//!
//! The table is replicated state: it changes only by applying commands,
//! identically on every replica. Two things beside it are local to a
//! node and never decide a reply in cluster mode:
//! - `deadlines`: when each held lock's lease ends by this node's
//!   monotonic clock, set when the grant or renewal is *applied* here —
//!   after it happened — so never earlier than the holder itself, which
//!   counts from when it sent its request, believes. The leader commits
//!   `CAIRN.LOCKEXPIRE name token` once its deadline passed; followers only
//!   keep theirs for when they lead.
//! - the token source: in cluster mode the host sets the stamp of the
//!   command being applied (log index and position in the entry), so a
//!   grant's token is that stamp, strictly increasing in the group across
//!   leader changes and restarts. A standalone node has no log: it counts
//!   from the wall clock in µs (`max(last + 1, now_ms × 1000)`), so a
//!   restart does not reuse tokens unless the clock was set back across
//!   it.
//!
//! Like the rest of this crate it reads no clock of its own: the host
//! hands it the node's monotonic clock (`set_clock`), or tests set the
//! time (`set_now`).

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Longest owner id.
pub const OWNER_MAX: usize = 256;
/// Longest lease: a day.
pub const LEASE_MAX_MS: u64 = 24 * 3600 * 1000;
/// Waiters queued on one lock at most.
pub const WAITERS_MAX: usize = 1024;
/// Commands one log entry may hold and still give each grant its own
/// token (`index << 16 | position`).
pub const STAMP_POSITIONS: u64 = 1 << 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub owner: Box<[u8]>,
    pub token: u64,
    pub lease_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub owner: Box<[u8]>,
    pub lease_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    pub holder: Option<Holder>,
    pub waiters: VecDeque<Waiter>,
}

/// What `acquire` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Granted now with this token.
    Granted(u64),
    /// The owner already held it: same token, lease renewed.
    Renewed(u64),
    /// Held by another owner.
    Busy,
    /// Held by another owner; the owner waits in the queue (now, or
    /// already: asking again changes nothing).
    Queued,
}

/// A grant made to a waiter: lock name, owner, token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: Box<[u8]>,
    pub owner: Box<[u8]>,
    pub token: u64,
}

pub const QUEUE_FULL: &str = "LOCKQUEUE too many waiters on this lock";

/// What `LOCK.INFO` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: Box<[u8]>,
    pub token: u64,
    pub lease_ms: u64,
    /// By this node's clock (what the leader will act on).
    pub remaining_ms: Option<u64>,
    pub waiters: usize,
}

#[derive(Debug, Default)]
pub struct Locks {
    map: HashMap<Box<[u8]>, Lock>,
    /// name → (token, deadline in this node's monotonic µs).
    deadlines: HashMap<Box<[u8]>, (u64, u64)>,
    /// The same deadlines in time order: (deadline, name), so finding the
    /// leases that ended costs what ended, not every lock held.
    by_deadline: BTreeSet<(u64, Box<[u8]>)>,
    /// This node's monotonic time (µs) when no clock is set (tests).
    now_us: u64,
    /// This node's monotonic clock in µs, from the host.
    clock: Option<fn() -> u64>,
    /// The stamp of the command being applied (cluster mode).
    stamp: Option<u64>,
    /// Standalone: expire on this node's clock, and the last token.
    standalone: bool,
    seq: u64,
    wall_ms: u64,
    /// Grants made to waiters by the commands applied since the host
    /// last took them: (name, owner, token). The host wakes the
    /// connections waiting for them.
    granted: Vec<Grant>,
}

impl Locks {
    /// Standalone mode: leases end by this node's clock at access, and
    /// tokens come from the wall clock.
    pub fn set_standalone(&mut self, on: bool) {
        self.standalone = on;
    }

    /// This node's monotonic clock, µs.
    pub fn set_clock(&mut self, clock: fn() -> u64) {
        self.clock = Some(clock);
    }

    /// Sets the time for a keyspace without a clock (tests).
    pub fn set_now(&mut self, mono_us: u64) {
        self.now_us = mono_us;
    }

    pub fn now_us(&self) -> u64 {
        self.clock.map_or(self.now_us, |f| f())
    }

    /// Cluster mode: the command about to be applied is at log `index`,
    /// `position` in its entry. `false` when the position cannot be told
    /// apart from the next entry's (more than [`STAMP_POSITIONS`]
    /// commands in one entry): grants then fail.
    pub fn set_stamp(&mut self, index: u64, position: u64) -> bool {
        if position >= STAMP_POSITIONS || index > u64::MAX / STAMP_POSITIONS {
            self.stamp = None;
            return false;
        }
        self.stamp = Some(index * STAMP_POSITIONS + position);
        true
    }

    /// Before a lock command applied at wall-clock `now_ms`: remembers it
    /// (standalone tokens count from it) and returns this node's
    /// monotonic time, µs.
    pub fn at(&mut self, now_ms: u64) -> u64 {
        self.set_wall_ms(now_ms);
        self.now_us()
    }

    /// Standalone: tokens count from this wall-clock time (ms).
    pub fn set_wall_ms(&mut self, now_ms: u64) {
        self.wall_ms = now_ms;
    }

    fn next_token(&mut self) -> Option<u64> {
        if self.standalone {
            self.seq = (self.seq + 1).max(self.wall_ms.saturating_mul(1000));
            return Some(self.seq);
        }
        // A grant in cluster mode without a stamp: refused, identically
        // on every replica.
        self.stamp
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Standalone: a holder whose lease ran out by this node's clock is
    /// gone (its waiters' turn).
    fn expire_local(&mut self, name: &[u8], now: u64) {
        if !self.standalone {
            return;
        }
        if let Some(&(token, d)) = self.deadlines.get(name) {
            if now >= d {
                self.expire(name, token, now);
            }
        }
    }

    fn set_deadline(&mut self, name: &[u8], token: u64, lease_ms: u64, now: u64) {
        let d = now.saturating_add(lease_ms.saturating_mul(1000));
        if let Some((_, old)) = self.deadlines.insert(name.into(), (token, d)) {
            self.by_deadline.remove(&(old, name.into()));
        }
        self.by_deadline.insert((d, name.into()));
    }

    fn clear_deadline(&mut self, name: &[u8]) {
        if let Some((_, old)) = self.deadlines.remove(name) {
            self.by_deadline.remove(&(old, name.into()));
        }
    }

    /// `LOCK.ACQUIRE name owner lease_ms [WAIT]`: grants a free lock,
    /// renews the owner's own (same token), or — held by another — reports
    /// it busy or, with `wait`, queues the owner (FIFO, at most
    /// [`WAITERS_MAX`]; queued already: nothing changes).
    pub fn acquire(
        &mut self,
        name: &[u8],
        owner: &[u8],
        lease_ms: u64,
        wait: bool,
        now: u64,
    ) -> Result<Acquired, &'static str> {
        self.expire_local(name, now);
        if let Some(l) = self.map.get_mut(name) {
            if let Some(h) = l.holder.as_mut() {
                if *h.owner == *owner {
                    h.lease_ms = lease_ms;
                    let token = h.token;
                    self.set_deadline(name, token, lease_ms, now);
                    return Ok(Acquired::Renewed(token));
                }
                if !wait {
                    return Ok(Acquired::Busy);
                }
                if let Some(w) = l.waiters.iter_mut().find(|w| *w.owner == *owner) {
                    w.lease_ms = lease_ms;
                    return Ok(Acquired::Queued);
                }
                if l.waiters.len() >= WAITERS_MAX {
                    return Err(QUEUE_FULL);
                }
                l.waiters.push_back(Waiter {
                    owner: owner.into(),
                    lease_ms,
                });
                return Ok(Acquired::Queued);
            }
        }
        let token = self.next_token().ok_or(STAMP_MISSING)?;
        let lock = self.map.entry(name.into()).or_default();
        lock.holder = Some(Holder {
            owner: owner.into(),
            token,
            lease_ms,
        });
        self.set_deadline(name, token, lease_ms, now);
        Ok(Acquired::Granted(token))
    }

    /// `LOCK.DEQUEUE name owner`: the owner stops waiting. `Some(token)`
    /// when it holds the lock (it was granted before this), `None`
    /// otherwise (taken out of the queue, or it was not in it).
    pub fn dequeue(&mut self, name: &[u8], owner: &[u8], now: u64) -> Option<u64> {
        self.expire_local(name, now);
        let l = self.map.get_mut(name)?;
        if let Some(h) = l.holder.as_ref().filter(|h| *h.owner == *owner) {
            return Some(h.token);
        }
        l.waiters.retain(|w| *w.owner != *owner);
        None
    }

    /// Whether `owner` holds `name` now: its token.
    pub fn holder_token(&self, name: &[u8], owner: &[u8]) -> Option<u64> {
        self.map
            .get(name)?
            .holder
            .as_ref()
            .filter(|h| *h.owner == *owner)
            .map(|h| h.token)
    }

    /// The grants to waiters made since the last call.
    pub fn take_grants(&mut self) -> Vec<Grant> {
        std::mem::take(&mut self.granted)
    }

    /// `LOCK.RENEW`: only the holder with its token renews.
    pub fn renew(
        &mut self,
        name: &[u8],
        owner: &[u8],
        token: u64,
        lease_ms: u64,
        now: u64,
    ) -> bool {
        self.expire_local(name, now);
        let Some(h) = self.map.get_mut(name).and_then(|l| l.holder.as_mut()) else {
            return false;
        };
        if *h.owner != *owner || h.token != token {
            return false;
        }
        h.lease_ms = lease_ms;
        self.set_deadline(name, token, lease_ms, now);
        true
    }

    /// `LOCK.RELEASE`: only the holder with its token releases.
    pub fn release(&mut self, name: &[u8], owner: &[u8], token: u64, now: u64) -> bool {
        self.expire_local(name, now);
        let holds = self
            .map
            .get(name)
            .and_then(|l| l.holder.as_ref())
            .is_some_and(|h| *h.owner == *owner && h.token == token);
        if holds {
            self.vacate(name, now);
        }
        holds
    }

    /// `CAIRN.LOCKEXPIRE name token` (the leader's decision, or the standalone
    /// clock): ends the holder's lease if that token still holds.
    pub fn expire(&mut self, name: &[u8], token: u64, now: u64) -> bool {
        let holds = self
            .map
            .get(name)
            .and_then(|l| l.holder.as_ref())
            .is_some_and(|h| h.token == token);
        if holds {
            self.vacate(name, now);
        }
        holds
    }

    /// `LOCK.FORCERELEASE` (admin): whoever holds it.
    pub fn force_release(&mut self, name: &[u8], now: u64) -> bool {
        self.expire_local(name, now);
        let held = self.map.get(name).is_some_and(|l| l.holder.is_some());
        if held {
            self.vacate(name, now);
        }
        held
    }

    /// The holder leaves; the first waiter, if any, is granted the lock
    /// in the same command (its token is this command's).
    fn vacate(&mut self, name: &[u8], now: u64) {
        self.clear_deadline(name);
        let next = match self.map.get_mut(name) {
            Some(l) => {
                l.holder = None;
                l.waiters.pop_front()
            }
            None => None,
        };
        match next {
            Some(w) => match self.next_token() {
                Some(token) => {
                    self.granted.push(Grant {
                        name: name.into(),
                        owner: w.owner.clone(),
                        token,
                    });
                    if let Some(l) = self.map.get_mut(name) {
                        l.holder = Some(Holder {
                            owner: w.owner,
                            token,
                            lease_ms: w.lease_ms,
                        });
                    }
                    self.set_deadline(name, token, w.lease_ms, now);
                }
                None => {
                    if let Some(l) = self.map.get_mut(name) {
                        l.waiters.push_front(w);
                    }
                }
            },
            None => {
                if self.map.get(name).is_some_and(|l| l.waiters.is_empty()) {
                    self.map.remove(name);
                }
            }
        }
    }

    /// Fencing: whether `name` is held with `token` now. In cluster mode
    /// decided by the replicated table alone (a lease that ran out still
    /// holds until its expiry is applied: every replica answers the
    /// same); standalone, a lease that ran out by the clock has ended.
    pub fn holds_token(&mut self, name: &[u8], token: u64, now: u64) -> bool {
        self.expire_local(name, now);
        self.map
            .get(name)
            .and_then(|l| l.holder.as_ref())
            .is_some_and(|h| h.token == token)
    }

    pub fn info(&mut self, name: &[u8], now: u64) -> Option<LockInfo> {
        self.expire_local(name, now);
        let l = self.map.get(name)?;
        let h = l.holder.as_ref()?;
        let remaining_ms = self
            .deadlines
            .get(name)
            .filter(|(t, _)| *t == h.token)
            .map(|(_, d)| d.saturating_sub(now) / 1000);
        Some(LockInfo {
            owner: h.owner.clone(),
            token: h.token,
            lease_ms: h.lease_ms,
            remaining_ms,
            waiters: l.waiters.len(),
        })
    }

    /// Held locks whose lease ended by this node's clock: (name, token),
    /// at most `max` of them (the leader commits their expiry).
    pub fn expired(&self, now: u64, max: usize) -> Vec<(Box<[u8]>, u64)> {
        self.by_deadline
            .iter()
            .take_while(|(d, _)| *d <= now)
            .take(max)
            .filter_map(|(_, n)| self.deadlines.get(n).map(|(t, _)| (n.clone(), *t)))
            .collect()
    }

    /// Every lock, for snapshots (any order).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Lock)> {
        self.map.iter().map(|(n, l)| (&**n, l))
    }

    /// Restores one lock from a snapshot (false if the name is taken).
    /// Its lease is not running here until `start_leases`.
    pub fn restore(&mut self, name: &[u8], lock: Lock) -> bool {
        if self.map.contains_key(name) {
            return false;
        }
        self.map.insert(name.into(), lock);
        true
    }

    /// Gives every held lock without a deadline here a whole lease from
    /// `now` (this node's monotonic µs): after a restore from a snapshot,
    /// as if each grant were applied now — never earlier than it was.
    pub fn start_leases(&mut self, now: u64) {
        let held: Vec<(Box<[u8]>, u64, u64)> = self
            .map
            .iter()
            .filter(|(n, _)| !self.deadlines.contains_key(*n))
            .filter_map(|(n, l)| l.holder.as_ref().map(|h| (n.clone(), h.token, h.lease_ms)))
            .collect();
        for (n, token, lease_ms) in held {
            self.set_deadline(&n, token, lease_ms, now);
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.deadlines.clear();
        self.by_deadline.clear();
    }
}

pub const STAMP_MISSING: &str =
    "ERR lock grant without a log position (more commands in one entry than tokens can tell apart)";

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Locks {
        Locks::default()
    }

    #[test]
    fn grant_busy_renew_release_and_tokens_from_the_stamp() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        assert!(l.set_stamp(10, 0));
        assert_eq!(
            l.acquire(b"x", b"a", 1000, false, t0),
            Ok(Acquired::Granted(10 << 16))
        );
        assert!(l.set_stamp(11, 3));
        assert_eq!(l.acquire(b"x", b"b", 1000, false, t0), Ok(Acquired::Busy));
        // The owner again: same token (a retried request is safe).
        assert_eq!(
            l.acquire(b"x", b"a", 500, false, t0),
            Ok(Acquired::Renewed(10 << 16))
        );
        assert!(!l.renew(b"x", b"a", 99, 1000, t0), "wrong token renews");
        assert!(
            !l.renew(b"x", b"b", 10 << 16, 1000, t0),
            "wrong owner renews"
        );
        assert!(l.renew(b"x", b"a", 10 << 16, 2000, t0));
        let i = l.info(b"x", t0).unwrap();
        assert_eq!(
            (&*i.owner, i.token, i.lease_ms),
            (&b"a"[..], 10 << 16, 2000)
        );
        assert_eq!(i.remaining_ms, Some(2000));
        assert!(!l.release(b"x", b"b", 10 << 16, t0));
        assert!(!l.release(b"x", b"a", 1, t0));
        assert!(l.release(b"x", b"a", 10 << 16, t0));
        assert!(l.is_empty());
        assert!(l.set_stamp(12, 0));
        assert_eq!(
            l.acquire(b"x", b"b", 1000, false, t0),
            Ok(Acquired::Granted(12 << 16))
        );
    }

    #[test]
    fn cluster_leases_end_only_by_a_committed_expiry() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        l.set_stamp(5, 0);
        assert_eq!(
            l.acquire(b"x", b"a", 10, false, t0),
            Ok(Acquired::Granted(5 << 16))
        );
        let later = t0 + 1_000_000;
        // Apply never looks at the clock in cluster mode...
        l.set_stamp(6, 0);
        assert_eq!(l.acquire(b"x", b"b", 10, false, later), Ok(Acquired::Busy));
        // ...the leader finds the deadline passed and commits the expiry.
        assert_eq!(l.expired(later, 10), vec![(b"x"[..].into(), 5 << 16)]);
        assert!(l.expired(t0, 10).is_empty());
        assert!(!l.expire(b"x", 4 << 16, later), "another token's expiry");
        assert!(l.expire(b"x", 5 << 16, later));
        assert!(l.expired(later, 10).is_empty());
        l.set_stamp(7, 1);
        assert_eq!(
            l.acquire(b"x", b"b", 10, false, later),
            Ok(Acquired::Granted((7 << 16) + 1))
        );
    }

    #[test]
    fn expired_finds_leases_in_deadline_order_and_follows_renewals() {
        let mut l = cluster();
        for (i, lease) in [(1u64, 30u64), (2, 10), (3, 20)] {
            l.set_stamp(i, 0);
            let name = format!("n{i}");
            l.acquire(name.as_bytes(), b"o", lease, false, 0).unwrap();
        }
        let names = |v: Vec<(Box<[u8]>, u64)>| -> Vec<String> {
            v.iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect()
        };
        assert!(l.expired(9_999, 10).is_empty());
        assert_eq!(names(l.expired(20_000, 10)), ["n2", "n3"]);
        assert_eq!(names(l.expired(20_000, 1)), ["n2"]);
        // A renewal moves n2's deadline; a release drops n3's.
        assert!(l.renew(b"n2", b"o", 2 << 16, 100, 15_000));
        assert!(l.release(b"n3", b"o", 3 << 16, 15_000));
        assert_eq!(names(l.expired(40_000, 10)), ["n1"]);
        assert_eq!(names(l.expired(115_000, 10)), ["n1", "n2"]);
        assert_eq!(l.by_deadline.len(), l.deadlines.len());
    }

    #[test]
    fn a_stale_expiry_does_not_end_a_renewed_or_new_grant() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        l.set_stamp(5, 0);
        l.acquire(b"x", b"a", 10, false, t0).unwrap();
        assert!(l.release(b"x", b"a", 5 << 16, t0));
        l.set_stamp(6, 0);
        l.acquire(b"x", b"b", 10, false, t0).unwrap();
        assert!(!l.expire(b"x", 5 << 16, t0));
        assert_eq!(l.info(b"x", t0).unwrap().token, 6 << 16);
    }

    #[test]
    fn standalone_leases_end_by_the_local_clock_and_tokens_increase() {
        let mut l = Locks::default();
        l.set_standalone(true);
        l.set_wall_ms(1_700_000_000_000);
        let t0 = 1_000_000u64;
        let Ok(Acquired::Granted(a)) = l.acquire(b"x", b"a", 10, false, t0) else {
            panic!("not granted")
        };
        assert_eq!(l.acquire(b"x", b"b", 10, false, t0), Ok(Acquired::Busy));
        let later = t0 + 11_000;
        let Ok(Acquired::Granted(b)) = l.acquire(b"x", b"b", 10, false, later) else {
            panic!("not granted after the lease")
        };
        assert!(b > a);
        assert!(
            !l.renew(b"x", b"a", a, 10, later),
            "the expired holder renews"
        );
    }

    #[test]
    fn without_a_stamp_a_cluster_grant_is_refused() {
        let mut l = cluster();
        assert_eq!(l.acquire(b"x", b"a", 10, false, 0), Err(STAMP_MISSING));
        assert!(!l.set_stamp(1, STAMP_POSITIONS));
        assert_eq!(l.acquire(b"x", b"a", 10, false, 0), Err(STAMP_MISSING));
        assert!(l.is_empty());
    }

    #[test]
    fn a_release_hands_the_lock_to_the_first_waiter() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        l.set_stamp(1, 0);
        l.acquire(b"x", b"a", 10, false, t0).unwrap();
        l.map.get_mut(&b"x"[..]).unwrap().waiters.extend([
            Waiter {
                owner: b"b"[..].into(),
                lease_ms: 20,
            },
            Waiter {
                owner: b"c"[..].into(),
                lease_ms: 30,
            },
        ]);
        l.set_stamp(2, 0);
        assert!(l.release(b"x", b"a", 1 << 16, t0));
        let i = l.info(b"x", t0).unwrap();
        assert_eq!(
            (&*i.owner, i.token, i.lease_ms, i.waiters),
            (&b"b"[..], 2 << 16, 20, 1)
        );
        l.set_stamp(3, 0);
        assert!(l.expire(b"x", 2 << 16, t0));
        assert_eq!(&*l.info(b"x", t0).unwrap().owner, b"c");
        l.set_stamp(4, 0);
        assert!(l.force_release(b"x", t0));
        assert!(l.is_empty());
    }
}
