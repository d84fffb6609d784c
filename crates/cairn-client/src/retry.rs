//! What to do after each attempt, and how long to wait before the next.
//!
//! The one thing not to get wrong: only replies that prove nothing was
//! applied (`-MOVED`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`, a request
//! never sent) are retried freely. `-UNKNOWN` and a connection lost or
//! timed out after the request left are *unknown*: the caller decides,
//! per command, whether those may be retried.

use std::time::Duration;

use cairn_proto::Frame;

use crate::conn::ConnError;
use crate::error::ServerError;

/// How often and how patiently a request is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    attempts_max: u32,
    redirects_max: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 16,
            redirects_max: 8,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(1000),
        }
    }
}

impl RetryPolicy {
    /// Attempts in all, the first included (at least 1; default 16: with
    /// the default backoff that outlasts a leader election of a few
    /// seconds; the request's own timeout still bounds the total).
    pub fn attempts_max(mut self, n: u32) -> Self {
        self.attempts_max = n.max(1);
        self
    }

    /// `-MOVED` redirects followed per request, without backoff
    /// (default 8).
    pub fn redirects_max(mut self, n: u32) -> Self {
        self.redirects_max = n;
        self
    }

    /// Backoff before retry `n` (0-based) is uniform in `[cap/2, cap]`
    /// with `cap = min(max, base × 2ⁿ)` ("equal jitter": spread out, yet
    /// every retry waits at least half its cap, so a run of retries
    /// reliably spans a failover). Defaults 10 ms, 1 s.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts_max
    }

    pub(crate) fn redirects(&self) -> u32 {
        self.redirects_max
    }

    /// The ceiling of the backoff before retry `n`: exponential, capped.
    pub(crate) fn backoff_cap(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }

    /// A jittered backoff before retry `n`.
    pub(crate) fn backoff_for(&self, n: u32) -> Duration {
        let cap = self.backoff_cap(n).as_micros() as u64;
        Duration::from_micros(fastrand::u64(cap / 2..=cap))
    }
}

/// The meaning of one attempt's result.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// A reply to return (which may be a null, an integer, ...).
    Done(Frame),
    /// An error reply to return: the server refused the command.
    Refused(ServerError),
    /// Ask `addr`, which leads `slot`'s group; nothing was applied.
    Moved { slot: u16, addr: String },
    /// Nothing was applied; retry after a backoff.
    Retry(String),
    /// It may have been applied.
    Unknown(String),
}

pub(crate) fn classify(r: Result<Frame, ConnError>) -> Verdict {
    let e = match r {
        Err(ConnError::NotSent(why)) => return Verdict::Retry(why),
        Err(ConnError::MaybeSent(why)) => return Verdict::Unknown(why),
        Ok(Frame::Error(e)) => ServerError::new(&e),
        Ok(f) => return Verdict::Done(f),
    };
    match e.code() {
        "MOVED" => match parse_moved(e.text()) {
            Some((slot, addr)) => Verdict::Moved { slot, addr },
            None => Verdict::Refused(e),
        },
        "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" => Verdict::Retry(e.text().to_string()),
        "UNKNOWN" => Verdict::Unknown(e.text().to_string()),
        _ => Verdict::Refused(e),
    }
}

/// `MOVED <slot> <host:port>`.
pub(crate) fn parse_moved(text: &str) -> Option<(u16, String)> {
    let mut it = text.split(' ');
    let _code = it.next()?;
    let slot: u16 = it.next()?.parse().ok()?;
    let addr = it.next()?;
    (slot < crate::slot::SLOTS && addr.contains(':')).then(|| (slot, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> Result<Frame, ConnError> {
        Ok(Frame::Error(s.as_bytes().to_vec()))
    }

    #[test]
    fn replies_are_classified_by_what_they_prove() {
        assert_eq!(
            classify(err("MOVED 12182 127.0.0.1:7303")),
            Verdict::Moved {
                slot: 12182,
                addr: "127.0.0.1:7303".into()
            }
        );
        assert!(matches!(
            classify(err("TRYAGAIN no leader")),
            Verdict::Retry(_)
        ));
        assert!(matches!(classify(err("CLUSTERDOWN x")), Verdict::Retry(_)));
        assert!(matches!(
            classify(err("UNKNOWN outcome unknown")),
            Verdict::Unknown(_)
        ));
        assert!(matches!(classify(err("FENCED no")), Verdict::Refused(_)));
        assert!(matches!(
            classify(err("MOVED nonsense")),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            classify(Err(ConnError::NotSent("x".into()))),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(Err(ConnError::MaybeSent("x".into()))),
            Verdict::Unknown(_)
        ));
        assert_eq!(classify(Ok(Frame::Null)), Verdict::Done(Frame::Null));
    }

    #[test]
    fn backoff_grows_exponentially_to_its_cap_and_jitter_stays_under_it() {
        let p =
            RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(300));
        let caps: Vec<u128> = (0..7).map(|n| p.backoff_cap(n).as_millis()).collect();
        assert_eq!(caps, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            p.backoff_cap(200),
            Duration::from_millis(300),
            "no overflow"
        );
        fastrand::seed(3);
        let draws: Vec<Duration> = (0..1000).map(|_| p.backoff_for(3)).collect();
        let (lo, hi) = (Duration::from_millis(40), Duration::from_millis(80));
        assert!(draws.iter().all(|d| lo <= *d && *d <= hi));
        // Jittered: spread over the range, not one value.
        assert!(draws.iter().any(|d| *d < Duration::from_millis(45)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(75)));
    }
}
