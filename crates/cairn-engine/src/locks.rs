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
    /// Permits it holds (1 for a lock).
    pub permits: u32,
    /// The stamp of the command that granted it or last renewed its
    /// lease (cluster mode; standalone 0). A leader's expiry names it, so
    /// an expiry decided before a renewal was applied ends nothing.
    pub renewed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub owner: Box<[u8]>,
    pub lease_ms: u64,
    pub permits: u32,
}

/// A lock or a semaphore: `limit` permits, shared by its holders; a lock
/// is a semaphore of one permit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub limit: u32,
    pub holders: Vec<Holder>,
    pub waiters: VecDeque<Waiter>,
}

impl Lock {
    pub fn new(limit: u32) -> Lock {
        Lock {
            limit,
            holders: Vec::new(),
            waiters: VecDeque::new(),
        }
    }

    /// Permits held.
    pub fn used(&self) -> u64 {
        self.holders.iter().map(|h| u64::from(h.permits)).sum()
    }

    fn holder(&self, owner: &[u8]) -> Option<&Holder> {
        self.holders.iter().find(|h| *h.owner == *owner)
    }
}

/// What `acquire` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Granted now with this token.
    Granted(u64),
    /// The owner already held it: same token, lease renewed.
    Renewed(u64),
    /// Not enough permits free (held by another owner), or others wait
    /// first.
    Busy,
    /// Busy; the owner waits in the queue (now, or already: asking again
    /// changes nothing).
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
pub const LIMIT_MISMATCH: &str =
    "ERR the lock exists with another number of permits (a lock has 1; SEM.INFO shows a semaphore's)";
pub const PERMITS_OVER_LIMIT: &str = "ERR more permits asked for than the semaphore has";
/// Most permits a semaphore may have.
pub const LIMIT_MAX: u32 = 1_000_000;

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

/// One holder as `SEM.INFO` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderInfo {
    pub owner: Box<[u8]>,
    pub token: u64,
    pub permits: u32,
    pub lease_ms: u64,
    pub remaining_ms: Option<u64>,
}

/// What `SEM.INFO` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemInfo {
    pub limit: u32,
    pub used: u64,
    pub holders: Vec<HolderInfo>,
    pub waiters: usize,
}

/// A byte string a lock table owns (a name or an owner).
type Bytes = Box<[u8]>;
/// One holder's lease by this node's clock: owner, token, the stamp of
/// its grant or last renewal, deadline (µs).
type Deadline = (Bytes, u64, u64, u64);
/// A lease that ended: lock name, owner, token, the stamp of its grant or
/// last renewal.
pub type Ended = (Bytes, Bytes, u64, u64);

#[derive(Debug, Default)]
pub struct Locks {
    map: HashMap<Box<[u8]>, Lock>,
    /// name → each holder's (owner, token, deadline in this node's
    /// monotonic µs).
    deadlines: HashMap<Bytes, Vec<Deadline>>,
    /// The same deadlines in time order: (deadline, name, owner), so
    /// finding the leases that ended costs what ended, not every lock
    /// held.
    by_deadline: BTreeSet<(u64, Bytes, Bytes)>,
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

    /// The stamp of the command being applied (0 without one: standalone).
    pub fn stamp(&self) -> u64 {
        self.stamp.unwrap_or(0)
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

    /// A token for a grant. In cluster mode the stamp of the command:
    /// every grant one command makes (a release admitting several
    /// waiters of a semaphore) carries the same token; standalone, each
    /// grant its own.
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

    /// Standalone: holders whose lease ran out by this node's clock are
    /// gone (their waiters' turn).
    fn expire_local(&mut self, name: &[u8], now: u64) {
        if !self.standalone {
            return;
        }
        let ended: Vec<(Box<[u8]>, u64)> = match self.deadlines.get(name) {
            Some(ds) => ds
                .iter()
                .filter(|(_, _, _, d)| now >= *d)
                .map(|(o, t, _, _)| (o.clone(), *t))
                .collect(),
            None => return,
        };
        for (owner, token) in ended {
            self.expire_owner(name, &owner, token, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn set_deadline(
        &mut self,
        name: &[u8],
        owner: &[u8],
        token: u64,
        renewed: u64,
        lease_ms: u64,
        now: u64,
    ) {
        let d = now.saturating_add(lease_ms.saturating_mul(1000));
        self.clear_deadline(name, owner);
        self.deadlines
            .entry(name.into())
            .or_default()
            .push((owner.into(), token, renewed, d));
        self.by_deadline.insert((d, name.into(), owner.into()));
    }

    fn clear_deadline(&mut self, name: &[u8], owner: &[u8]) {
        let Some(ds) = self.deadlines.get_mut(name) else {
            return;
        };
        if let Some(i) = ds.iter().position(|(o, _, _, _)| **o == *owner) {
            let (o, _, _, d) = ds.swap_remove(i);
            self.by_deadline.remove(&(d, name.into(), o));
        }
        if ds.is_empty() {
            self.deadlines.remove(name);
        }
    }

    fn deadline_of(&self, name: &[u8], owner: &[u8], token: u64) -> Option<u64> {
        self.deadlines
            .get(name)?
            .iter()
            .find(|(o, t, _, _)| **o == *owner && *t == token)
            .map(|(_, _, _, d)| *d)
    }

    /// `LOCK.ACQUIRE name owner lease_ms [WAIT]`: a semaphore of one
    /// permit.
    pub fn acquire(
        &mut self,
        name: &[u8],
        owner: &[u8],
        lease_ms: u64,
        wait: bool,
        now: u64,
    ) -> Result<Acquired, &'static str> {
        self.acquire_permits(name, owner, 1, 1, lease_ms, wait, now)
    }

    /// `SEM.ACQUIRE name owner permits limit lease_ms [WAIT]`: grants
    /// `permits` of the `limit` when they are free and nobody waits
    /// before (FIFO: no barging), renews the owner's own grant (same
    /// token), or — busy — reports it or, with `wait`, queues the owner
    /// (at most [`WAITERS_MAX`]; queued already: nothing changes).
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_permits(
        &mut self,
        name: &[u8],
        owner: &[u8],
        permits: u32,
        limit: u32,
        lease_ms: u64,
        wait: bool,
        now: u64,
    ) -> Result<Acquired, &'static str> {
        if permits == 0 || permits > limit {
            return Err(PERMITS_OVER_LIMIT);
        }
        self.expire_local(name, now);
        if let Some(l) = self.map.get_mut(name) {
            if l.limit != limit {
                return Err(LIMIT_MISMATCH);
            }
            if let Some(h) = l.holders.iter_mut().find(|h| *h.owner == *owner) {
                let Some(renewed) = self.stamp.or(self.standalone.then_some(0)) else {
                    return Err(STAMP_MISSING);
                };
                h.lease_ms = lease_ms;
                h.renewed = renewed;
                let token = h.token;
                self.set_deadline(name, owner, token, renewed, lease_ms, now);
                return Ok(Acquired::Renewed(token));
            }
            let fits = l.waiters.is_empty() && l.used() + u64::from(permits) <= u64::from(limit);
            if !fits {
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
                    permits,
                });
                return Ok(Acquired::Queued);
            }
        }
        let token = self.next_token().ok_or(STAMP_MISSING)?;
        let lock = self
            .map
            .entry(name.into())
            .or_insert_with(|| Lock::new(limit));
        let renewed = if self.standalone { 0 } else { token };
        lock.holders.push(Holder {
            owner: owner.into(),
            token,
            lease_ms,
            permits,
            renewed,
        });
        self.set_deadline(name, owner, token, renewed, lease_ms, now);
        Ok(Acquired::Granted(token))
    }

    /// `LOCK.DEQUEUE name owner`: the owner stops waiting. `Some(token)`
    /// when it holds the lock (it was granted before this), `None`
    /// otherwise (taken out of the queue, or it was not in it).
    pub fn dequeue(&mut self, name: &[u8], owner: &[u8], now: u64) -> Option<u64> {
        self.expire_local(name, now);
        let l = self.map.get_mut(name)?;
        if let Some(h) = l.holder(owner) {
            return Some(h.token);
        }
        let before = l.waiters.len();
        l.waiters.retain(|w| *w.owner != *owner);
        if l.waiters.len() != before {
            // Those behind a semaphore waiter that asked for more may fit.
            self.admit(name, now);
        }
        None
    }

    /// Whether `owner` holds `name` now: its token.
    pub fn holder_token(&self, name: &[u8], owner: &[u8]) -> Option<u64> {
        self.map.get(name)?.holder(owner).map(|h| h.token)
    }

    /// The grants to waiters made since the last call.
    pub fn take_grants(&mut self) -> Vec<Grant> {
        std::mem::take(&mut self.granted)
    }

    /// `LOCK.RENEW`: only a holder with its token renews. In cluster
    /// mode a renewal needs the stamp of its command (see
    /// [`Holder::renewed`]); without one it renews nothing, identically on
    /// every replica.
    pub fn renew(
        &mut self,
        name: &[u8],
        owner: &[u8],
        token: u64,
        lease_ms: u64,
        now: u64,
    ) -> bool {
        self.expire_local(name, now);
        let Some(renewed) = self.stamp.or(self.standalone.then_some(0)) else {
            return false;
        };
        let Some(h) = self.map.get_mut(name).and_then(|l| {
            l.holders
                .iter_mut()
                .find(|h| *h.owner == *owner && h.token == token)
        }) else {
            return false;
        };
        h.lease_ms = lease_ms;
        h.renewed = renewed;
        self.set_deadline(name, owner, token, renewed, lease_ms, now);
        true
    }

    /// `LOCK.RELEASE`: only a holder with its token releases.
    pub fn release(&mut self, name: &[u8], owner: &[u8], token: u64, now: u64) -> bool {
        self.expire_local(name, now);
        self.expire_owner(name, owner, token, now)
    }

    /// Removes the holder `owner` with `token`, then admits waiters.
    fn expire_owner(&mut self, name: &[u8], owner: &[u8], token: u64, now: u64) -> bool {
        let Some(l) = self.map.get_mut(name) else {
            return false;
        };
        let Some(i) = l
            .holders
            .iter()
            .position(|h| *h.owner == *owner && h.token == token)
        else {
            return false;
        };
        l.holders.remove(i);
        self.clear_deadline(name, owner);
        self.admit(name, now);
        true
    }

    /// `CAIRN.LOCKEXPIRE name token [owner [renewed]]` (the leader's
    /// decision, or the standalone clock): ends the lease of the holder
    /// with that token (and owner, when given: a semaphore's holders
    /// admitted by one command share a token) if it still holds — and,
    /// when `renewed` is given, was not renewed since the leader decided:
    /// a renewal applied between the decision and its commit keeps the
    /// lease it answered for.
    pub fn expire(
        &mut self,
        name: &[u8],
        token: u64,
        owner: Option<&[u8]>,
        renewed: Option<u64>,
        now: u64,
    ) -> bool {
        let found = self.map.get(name).and_then(|l| {
            l.holders
                .iter()
                .find(|h| {
                    h.token == token
                        && owner.is_none_or(|o| *h.owner == *o)
                        && renewed.is_none_or(|r| h.renewed == r)
                })
                .map(|h| h.owner.clone())
        });
        match found {
            Some(o) => self.expire_owner(name, &o, token, now),
            None => false,
        }
    }

    /// `LOCK.FORCERELEASE` (admin): whoever holds it (every holder of a
    /// semaphore).
    pub fn force_release(&mut self, name: &[u8], now: u64) -> bool {
        self.expire_local(name, now);
        let Some(l) = self.map.get_mut(name) else {
            return false;
        };
        if l.holders.is_empty() {
            return false;
        }
        let gone: Vec<Holder> = std::mem::take(&mut l.holders);
        for h in gone {
            self.clear_deadline(name, &h.owner);
        }
        self.admit(name, now);
        true
    }

    /// Grants waiters from the front while their permits fit (FIFO: one
    /// that does not fit blocks those behind it), in the same command
    /// (their token is this command's); forgets a lock nobody holds or
    /// waits for.
    fn admit(&mut self, name: &[u8], now: u64) {
        loop {
            let Some(l) = self.map.get_mut(name) else {
                return;
            };
            let fits = l
                .waiters
                .front()
                .is_some_and(|w| l.used() + u64::from(w.permits) <= u64::from(l.limit));
            if !fits {
                if l.holders.is_empty() && l.waiters.is_empty() {
                    self.map.remove(name);
                }
                return;
            }
            let Some(token) = self.next_token() else {
                return;
            };
            let Some(l) = self.map.get_mut(name) else {
                return;
            };
            let Some(w) = l.waiters.pop_front() else {
                return;
            };
            self.granted.push(Grant {
                name: name.into(),
                owner: w.owner.clone(),
                token,
            });
            let renewed = if self.standalone { 0 } else { token };
            l.holders.push(Holder {
                owner: w.owner.clone(),
                token,
                lease_ms: w.lease_ms,
                permits: w.permits,
                renewed,
            });
            self.set_deadline(name, &w.owner, token, renewed, w.lease_ms, now);
        }
    }

    /// Fencing: whether `name` is held with `token` now (by any of a
    /// semaphore's holders). In cluster mode decided by the replicated
    /// table alone (a lease that ran out still holds until its expiry is
    /// applied: every replica answers the same); standalone, a lease that
    /// ran out by the clock has ended.
    pub fn holds_token(&mut self, name: &[u8], token: u64, now: u64) -> bool {
        self.expire_local(name, now);
        self.map
            .get(name)
            .is_some_and(|l| l.holders.iter().any(|h| h.token == token))
    }

    /// `LOCK.INFO`: the (first) holder.
    pub fn info(&mut self, name: &[u8], now: u64) -> Option<LockInfo> {
        self.expire_local(name, now);
        let l = self.map.get(name)?;
        let h = l.holders.first()?;
        let remaining_ms = self
            .deadline_of(name, &h.owner, h.token)
            .map(|d| d.saturating_sub(now) / 1000);
        Some(LockInfo {
            owner: h.owner.clone(),
            token: h.token,
            lease_ms: h.lease_ms,
            remaining_ms,
            waiters: l.waiters.len(),
        })
    }

    /// `SEM.INFO`: permits, every holder, waiters.
    pub fn sem_info(&mut self, name: &[u8], now: u64) -> Option<SemInfo> {
        self.expire_local(name, now);
        let l = self.map.get(name)?;
        let holders = l
            .holders
            .iter()
            .map(|h| HolderInfo {
                owner: h.owner.clone(),
                token: h.token,
                permits: h.permits,
                lease_ms: h.lease_ms,
                remaining_ms: self
                    .deadline_of(name, &h.owner, h.token)
                    .map(|d| d.saturating_sub(now) / 1000),
            })
            .collect();
        Some(SemInfo {
            limit: l.limit,
            used: l.used(),
            holders,
            waiters: l.waiters.len(),
        })
    }

    /// Holders whose lease ended by this node's clock: (name, owner,
    /// token, stamp of the grant or last renewal), at most `max` of them
    /// (the leader commits their expiry).
    pub fn expired(&self, now: u64, max: usize) -> Vec<Ended> {
        self.by_deadline
            .iter()
            .take_while(|(d, _, _)| *d <= now)
            .take(max)
            .filter_map(|(_, n, o)| {
                let (_, t, r, _) = self.deadlines.get(n)?.iter().find(|(ow, ..)| ow == o)?;
                Some((n.clone(), o.clone(), *t, *r))
            })
            .collect()
    }

    /// Every lock, for snapshots (any order).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Lock)> {
        self.map.iter().map(|(n, l)| (&**n, l))
    }

    /// Restores one lock from a snapshot (false if the name is taken).
    /// Its leases are not running here until `start_leases`.
    pub fn restore(&mut self, name: &[u8], lock: Lock) -> bool {
        if self.map.contains_key(name) {
            return false;
        }
        self.map.insert(name.into(), lock);
        true
    }

    /// Gives every holder without a deadline here a whole lease from
    /// `now` (this node's monotonic µs): after a restore from a snapshot,
    /// as if each grant were applied now — never earlier than it was.
    pub fn start_leases(&mut self, now: u64) {
        let held: Vec<(Bytes, Bytes, u64, u64, u64)> = self
            .map
            .iter()
            .flat_map(|(n, l)| {
                l.holders
                    .iter()
                    .map(move |h| (n.clone(), h.owner.clone(), h.token, h.renewed, h.lease_ms))
            })
            .filter(|(n, o, t, _, _)| self.deadline_of(n, o, *t).is_none())
            .collect();
        for (n, o, token, renewed, lease_ms) in held {
            self.set_deadline(&n, &o, token, renewed, lease_ms, now);
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
        assert_eq!(
            l.expired(later, 10),
            vec![(b"x"[..].into(), b"a"[..].into(), 5 << 16, 5 << 16)]
        );
        assert!(l.expired(t0, 10).is_empty());
        assert!(
            !l.expire(b"x", 4 << 16, None, None, later),
            "another token's expiry"
        );
        assert!(l.expire(b"x", 5 << 16, None, None, later));
        assert!(l.expired(later, 10).is_empty());
        l.set_stamp(7, 1);
        assert_eq!(
            l.acquire(b"x", b"b", 10, false, later),
            Ok(Acquired::Granted((7 << 16) + 1))
        );
    }

    /// The race CI found: the leader decides a lease ended and proposes its
    /// expiry; before that commits, the holder's renewal (or re-acquire)
    /// is applied and answered "still yours". The expiry, applied after,
    /// must end nothing — else another owner is granted the lock while the
    /// renewed holder rightly believes it holds it.
    #[test]
    fn an_expiry_decided_before_a_renewal_ends_nothing() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        l.set_stamp(5, 0);
        assert_eq!(
            l.acquire(b"x", b"a", 10, false, t0),
            Ok(Acquired::Granted(5 << 16))
        );
        l.set_stamp(6, 0);
        assert_eq!(l.acquire(b"x", b"b", 10, true, t0), Ok(Acquired::Queued));
        let later = t0 + 20_000;
        let ended = l.expired(later, 10);
        assert_eq!(ended.len(), 1);
        let (name, owner, token, renewed) = ended[0].clone();
        assert_eq!((token, renewed), (5 << 16, 5 << 16));
        // Both ways of renewing: LOCK.RENEW, and the owner acquiring again.
        for (stamp, renew) in [(7u64, true), (9, false)] {
            l.set_stamp(stamp, 0);
            if renew {
                assert!(l.renew(b"x", b"a", 5 << 16, 10, later));
            } else {
                assert_eq!(
                    l.acquire(b"x", b"a", 10, false, later),
                    Ok(Acquired::Renewed(5 << 16))
                );
            }
            l.set_stamp(stamp + 1, 0);
            assert!(
                !l.expire(&name, token, Some(&owner), Some(renewed), later),
                "an expiry decided before the renewal at {stamp} ended the lease"
            );
            assert_eq!(l.holder_token(b"x", b"a"), Some(5 << 16));
            assert!(l.take_grants().is_empty(), "the waiter was granted");
        }
        // The renewed lease, once it runs out, ends by an expiry that
        // names the last renewal.
        let (name, owner, token, renewed) = l.expired(later + 20_000, 10)[0].clone();
        assert_eq!(renewed, 9 << 16);
        l.set_stamp(11, 0);
        assert!(l.expire(&name, token, Some(&owner), Some(renewed), later + 20_000));
        assert_eq!(l.holder_token(b"x", b"b"), Some(11 << 16));
    }

    #[test]
    fn expired_finds_leases_in_deadline_order_and_follows_renewals() {
        let mut l = cluster();
        for (i, lease) in [(1u64, 30u64), (2, 10), (3, 20)] {
            l.set_stamp(i, 0);
            let name = format!("n{i}");
            l.acquire(name.as_bytes(), b"o", lease, false, 0).unwrap();
        }
        let names = |v: Vec<Ended>| -> Vec<String> {
            v.iter()
                .map(|(n, ..)| String::from_utf8_lossy(n).into_owned())
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
        assert_eq!(
            l.by_deadline.len(),
            l.deadlines.values().map(Vec::len).sum::<usize>()
        );
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
        assert!(!l.expire(b"x", 5 << 16, None, None, t0));
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
                permits: 1,
            },
            Waiter {
                owner: b"c"[..].into(),
                lease_ms: 30,
                permits: 1,
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
        assert!(l.expire(b"x", 2 << 16, None, None, t0));
        assert_eq!(&*l.info(b"x", t0).unwrap().owner, b"c");
        l.set_stamp(4, 0);
        assert!(l.force_release(b"x", t0));
        assert!(l.is_empty());
    }

    fn granted(r: Result<Acquired, &'static str>) -> u64 {
        match r {
            Ok(Acquired::Granted(t)) => t,
            other => panic!("not granted: {other:?}"),
        }
    }

    #[test]
    fn a_semaphore_shares_its_permits_first_come_first_served() {
        let mut l = cluster();
        let t0 = 1_000_000u64;
        l.set_stamp(1, 0);
        let a = granted(l.acquire_permits(b"s", b"a", 2, 3, 100, false, t0));
        l.set_stamp(2, 0);
        let b = granted(l.acquire_permits(b"s", b"b", 1, 3, 100, false, t0));
        assert!(b > a);
        // Full: a third owner waits; one asking for fewer behind it does
        // not barge past it even when its permits would fit later.
        l.set_stamp(3, 0);
        assert_eq!(
            l.acquire_permits(b"s", b"c", 2, 3, 100, true, t0),
            Ok(Acquired::Queued)
        );
        assert_eq!(
            l.acquire_permits(b"s", b"d", 1, 3, 100, false, t0),
            Ok(Acquired::Busy)
        );
        assert_eq!(
            l.acquire_permits(b"s", b"d", 1, 3, 100, true, t0),
            Ok(Acquired::Queued)
        );
        // Wrong shape: refused, nothing changes.
        assert_eq!(l.acquire(b"s", b"e", 100, false, t0), Err(LIMIT_MISMATCH));
        assert_eq!(
            l.acquire_permits(b"s", b"e", 4, 4, 100, false, t0),
            Err(LIMIT_MISMATCH)
        );
        assert_eq!(
            l.acquire_permits(b"t", b"e", 4, 3, 100, false, t0),
            Err(PERMITS_OVER_LIMIT)
        );
        // a's 2 permits come back: c (2) fits, d (1) behind it does not
        // (b holds 1): one grant, with this command's token.
        l.set_stamp(4, 0);
        assert!(l.release(b"s", b"a", a, t0));
        assert_eq!(
            l.take_grants(),
            vec![Grant {
                name: b"s"[..].into(),
                owner: b"c"[..].into(),
                token: 4 << 16
            }]
        );
        let i = l.sem_info(b"s", t0).unwrap();
        assert_eq!((i.limit, i.used, i.holders.len(), i.waiters), (3, 3, 2, 1));
        // b's lease ends (the leader's expiry names the owner): d gets in.
        l.set_stamp(5, 0);
        assert!(l.expire(b"s", b, Some(&b"b"[..]), None, t0));
        assert_eq!(l.take_grants().len(), 1);
        assert!(l.holds_token(b"s", 5 << 16, t0));
        assert_eq!(l.holder_token(b"s", b"d"), Some(5 << 16));
        // A leaving waiter at the head lets those behind in.
        l.set_stamp(6, 0);
        assert_eq!(
            l.acquire_permits(b"s", b"e", 3, 3, 100, true, t0),
            Ok(Acquired::Queued)
        );
        l.set_stamp(7, 0);
        assert_eq!(
            l.acquire_permits(b"s", b"f", 1, 3, 100, true, t0),
            Ok(Acquired::Queued)
        );
        assert_eq!(l.dequeue(b"s", b"e", t0), None);
        l.set_stamp(8, 0);
        assert!(l.release(b"s", b"d", 5 << 16, t0));
        assert_eq!(l.holder_token(b"s", b"f"), Some(8 << 16));
        assert!(l.force_release(b"s", t0));
        assert!(l.is_empty());
        assert!(l.deadlines.is_empty() && l.by_deadline.is_empty());
    }

    #[test]
    fn one_release_admits_several_waiters_with_their_own_leases() {
        let mut l = cluster();
        l.set_stamp(1, 0);
        let a = granted(l.acquire_permits(b"s", b"a", 4, 4, 10, false, 0));
        for (i, o) in [b"b", b"c", b"d"].iter().enumerate() {
            l.set_stamp(2 + i as u64, 0);
            assert_eq!(
                l.acquire_permits(b"s", *o, 1, 4, 10 * (i as u64 + 2), true, 0),
                Ok(Acquired::Queued)
            );
        }
        l.set_stamp(9, 0);
        assert!(l.release(b"s", b"a", a, 0));
        assert_eq!(l.take_grants().len(), 3);
        // Each holder's lease ends on its own: b's first.
        let ended = l.expired(25_000, 10);
        assert_eq!(
            ended,
            vec![(b"s"[..].into(), b"b"[..].into(), 9 << 16, 9 << 16)]
        );
        assert!(l.expire(b"s", 9 << 16, Some(&b"b"[..]), None, 25_000));
        assert_eq!(l.sem_info(b"s", 25_000).unwrap().used, 2);
        assert_eq!(l.expired(45_000, 10).len(), 2);
    }
}
