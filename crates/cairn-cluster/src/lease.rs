//! Leader leases for reads without a network round.
//!
//! When a follower accepts an AppendEntries (heartbeats included) of the
//! leader's term, it will not start an election for at least
//! `election_timeout_min` after receiving it, and openraft makes it refuse
//! to vote for anyone else for `election_timeout_max`. So if a quorum
//! accepted requests the leader *sent* at time `t` (its own monotonic
//! clock), no other leader can exist before `t + election_timeout_min`
//! as measured by the followers. The leader may serve reads locally until
//! `t + LEASE_FRACTION * election_timeout_min`.
//!
//! Clock assumption (documented in docs/CONSISTENCY.md): monotonic clocks
//! of the nodes advance at rates within 20% of each other. Wall-clock
//! jumps do not matter (monotonic time only). A paused leader is safe:
//! the send times were taken before the pause, so its lease has expired
//! when it resumes.
//!
//! The send times are recorded by this crate's network client
//! (`raftnet.rs`) around every AppendEntries that the follower did not
//! reject with a higher vote.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Share of `election_timeout_min` a lease lasts (the rest is margin for
/// clock-rate drift and scheduling).
pub const LEASE_FRACTION: f64 = 0.8;

#[derive(Default)]
pub struct LeaseClock {
    inner: Mutex<Acks>,
}

#[derive(Default)]
struct Acks {
    term: u64,
    sent_at: HashMap<u64, Instant>,
}

impl LeaseClock {
    /// `peer` accepted a request of `term` that was sent at `sent`.
    pub fn record(&self, term: u64, peer: u64, sent: Instant) {
        let mut a = self.inner.lock();
        if term > a.term {
            a.term = term;
            a.sent_at.clear();
        }
        if term == a.term {
            let e = a.sent_at.entry(peer).or_insert(sent);
            if sent > *e {
                *e = sent;
            }
        }
    }

    /// Until when this node's leadership in `term` is certain: the send
    /// time acknowledged by a quorum of `voters` (this node counting as
    /// one) plus the lease. `None` when no such quorum exists.
    pub fn valid_until(
        &self,
        term: u64,
        me: u64,
        voters: &[u64],
        lease: Duration,
        now: Instant,
    ) -> Option<Instant> {
        let majority = voters.len() / 2 + 1;
        let need = majority - usize::from(voters.contains(&me));
        if need == 0 {
            return Some(now + lease);
        }
        let a = self.inner.lock();
        if a.term != term {
            return None;
        }
        let mut times: Vec<Instant> = voters
            .iter()
            .filter(|&&v| v != me)
            .filter_map(|v| a.sent_at.get(v).copied())
            .collect();
        if times.len() < need {
            return None;
        }
        times.sort_unstable_by(|x, y| y.cmp(x));
        Some(times[need - 1] + lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_time_is_the_majoritys_oldest_ack_and_terms_reset() {
        let c = LeaseClock::default();
        let t0 = Instant::now();
        let lease = Duration::from_millis(100);
        let voters = [1, 2, 3];
        assert_eq!(c.valid_until(5, 1, &voters, lease, t0), None);
        c.record(5, 2, t0);
        // Self + node 2 = 2 of 3.
        assert_eq!(c.valid_until(5, 1, &voters, lease, t0), Some(t0 + lease));
        c.record(5, 3, t0 + Duration::from_millis(30));
        assert_eq!(
            c.valid_until(5, 1, &voters, lease, t0),
            Some(t0 + Duration::from_millis(130))
        );
        // An older ack never moves the time back.
        c.record(5, 3, t0);
        assert_eq!(
            c.valid_until(5, 1, &voters, lease, t0),
            Some(t0 + Duration::from_millis(130))
        );
        // Acks of another term do not count.
        assert_eq!(c.valid_until(6, 1, &voters, lease, t0), None);
        c.record(6, 2, t0 + Duration::from_millis(50));
        assert_eq!(c.valid_until(5, 1, &voters, lease, t0), None);
        // Five voters need two followers.
        let five = [1, 2, 3, 4, 5];
        assert_eq!(c.valid_until(6, 1, &five, lease, t0), None);
        c.record(6, 4, t0 + Duration::from_millis(10));
        assert_eq!(
            c.valid_until(6, 1, &five, lease, t0),
            Some(t0 + Duration::from_millis(110))
        );
        // A single voter is its own quorum.
        assert_eq!(c.valid_until(1, 1, &[1], lease, t0), Some(t0 + lease));
    }
}
