//! The rebalance throttle: a token bucket over the bytes of the data
//! groups' snapshots this node sends (docs/design/sharding.md, step 4).
//!
//! A replica added by a rebalance is caught up by a snapshot of its group,
//! built by the group's leader when raft-rs asks its storage for one
//! ([`crate::storage::GroupStorage`]'s `snapshot`). With a rate set, the
//! storage asks [`SnapThrottle::admit`] first; while the bucket is in
//! debt it answers "temporarily unavailable" and raft-rs retries at a
//! later heartbeat, as TiKV's storage does while it generates one. A
//! snapshot admitted is sent whole and its bytes charged afterwards (the
//! bucket may go into debt by one snapshot), so the rate holds on average
//! over snapshots, not within one: a single group's snapshot goes out at
//! full speed. The meta group's snapshots are never throttled.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;

/// Bytes the bucket holds at most when full: one second at the rate, and
/// at least this much (so a small rate still admits a snapshot of a few
/// MiB now and then instead of never reaching it).
const MIN_BURST: f64 = 1024.0 * 1024.0;

#[derive(Default)]
pub(crate) struct SnapThrottle {
    /// Bytes per second; 0: unlimited.
    rate: AtomicU64,
    /// (tokens in bytes, may be negative; when last refilled).
    bucket: Mutex<Option<(f64, Instant)>>,
    /// Snapshots of data groups built to be sent, and their bytes.
    pub sent: AtomicU64,
    pub bytes: AtomicU64,
    /// Times a snapshot was put off because the bucket was in debt.
    pub deferred: AtomicU64,
}

impl SnapThrottle {
    pub fn rate(&self) -> u64 {
        self.rate.load(Relaxed)
    }

    /// Sets the rate (bytes/s, 0 = unlimited). A change refills nothing:
    /// debt from earlier snapshots is paid at the new rate.
    pub fn set_rate(&self, rate: u64) {
        if self.rate.swap(rate, Relaxed) != rate && rate == 0 {
            *self.bucket.lock() = None;
        }
    }

    /// Whether a snapshot may be built and sent now.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let rate = self.rate() as f64;
        if rate <= 0.0 {
            return true;
        }
        let burst = rate.max(MIN_BURST);
        let mut b = self.bucket.lock();
        let (tokens, at) = b.get_or_insert((burst, now));
        let gained = now.saturating_duration_since(*at).as_secs_f64() * rate;
        *tokens = (*tokens + gained).min(burst);
        *at = now;
        if *tokens >= 0.0 {
            true
        } else {
            self.deferred.fetch_add(1, Relaxed);
            false
        }
    }

    /// Charges a snapshot of `bytes` that is being sent.
    pub fn charge(&self, bytes: u64) {
        self.sent.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        if self.rate() > 0 {
            if let Some((tokens, _)) = self.bucket.lock().as_mut() {
                *tokens -= bytes as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unlimited_admits_everything_and_counts() {
        let t = SnapThrottle::default();
        for _ in 0..10 {
            assert!(t.admit());
            t.charge(10 << 20);
        }
        assert_eq!(t.sent.load(Relaxed), 10);
        assert_eq!(t.bytes.load(Relaxed), 100 << 20);
        assert_eq!(t.deferred.load(Relaxed), 0);
    }

    #[test]
    fn a_rate_holds_on_average_over_snapshots() {
        let t = SnapThrottle::default();
        t.set_rate(1 << 20); // 1 MiB/s, burst 1 MiB
        let t0 = Instant::now();
        // A full bucket admits the first snapshot, which puts it 3 MiB in
        // debt: nothing more for 3 s.
        assert!(t.admit_at(t0));
        t.charge(4 << 20);
        assert!(!t.admit_at(t0 + Duration::from_millis(2900)));
        assert!(t.admit_at(t0 + Duration::from_millis(3100)));
        assert_eq!(t.deferred.load(Relaxed), 1);
        // 10 snapshots of 1 MiB over simulated time take about 10 s.
        let mut now = t0 + Duration::from_millis(3100);
        t.charge(1 << 20);
        let mut admitted = 0;
        while admitted < 10 {
            now += Duration::from_millis(100);
            if t.admit_at(now) {
                t.charge(1 << 20);
                admitted += 1;
            }
        }
        let took = now.duration_since(t0 + Duration::from_millis(3100));
        assert!(
            took >= Duration::from_secs(9) && took <= Duration::from_secs(11),
            "{took:?}"
        );
    }

    #[test]
    fn turning_the_throttle_off_forgives_the_debt() {
        let t = SnapThrottle::default();
        t.set_rate(1000);
        let t0 = Instant::now();
        assert!(t.admit_at(t0));
        t.charge(100 << 20);
        assert!(!t.admit_at(t0 + Duration::from_secs(1)));
        t.set_rate(0);
        assert!(t.admit_at(t0 + Duration::from_secs(1)));
        // And on again: a fresh, full bucket.
        t.set_rate(1000);
        assert!(t.admit_at(t0 + Duration::from_secs(2)));
    }
}
