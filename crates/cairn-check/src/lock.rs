//! Lock properties: mutual exclusion of holders and fencing-token order.
//!
//! Input is one [`LockHold`] per *acknowledged* acquire (failed or
//! indeterminate acquires grant nothing the client relied on). The server
//! granted the lock at some unknown instant in `[acquire_invoke_ns,
//! acquire_ack_ns]` and the lease runs from that instant, so the client
//! *certainly* held the lock during
//! `[acquire_ack_ns, min(acquire_invoke_ns + lease_ns, release_invoke_ns))`:
//! from the ack (the grant was no later) until the earliest instant the
//! lease could have expired or the release could have taken effect. An
//! acknowledged renewal (same lease) moves the lease's start to its own
//! send time (`renew_invoke_ns`): the server renewed no earlier. Two
//! certain intervals that overlap are a definite violation; anything
//! weaker is not reported.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One acknowledged lock acquisition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LockHold {
    /// The lock's name.
    pub lock: String,
    /// The client process that acquired it.
    pub process: u64,
    /// The fencing token the grant carried.
    pub token: u64,
    /// When the acquire request was sent.
    pub acquire_invoke_ns: u64,
    /// When the grant was received.
    pub acquire_ack_ns: u64,
    /// Lease length (`None`: held until released).
    #[serde(default)]
    pub lease_ns: Option<u64>,
    /// When the release request was sent (`None`: never released; the
    /// lease, if any, ends the hold).
    #[serde(default)]
    pub release_invoke_ns: Option<u64>,
    /// When the last *acknowledged* renewal (`LOCK.RENEW`, same lease) was
    /// sent (`None`: never renewed).
    #[serde(default)]
    pub renew_invoke_ns: Option<u64>,
}

impl LockHold {
    /// The interval `[start, end)` during which the holder certainly held
    /// the lock (`end` is `u64::MAX` for an unbounded hold). Empty when the
    /// ack arrived after the lease may already have expired.
    pub fn certain_interval(&self) -> (u64, u64) {
        let lease_from = self
            .renew_invoke_ns
            .map_or(self.acquire_invoke_ns, |r| r.max(self.acquire_invoke_ns));
        let lease_end = self
            .lease_ns
            .map_or(u64::MAX, |l| lease_from.saturating_add(l));
        let end = lease_end.min(self.release_invoke_ns.unwrap_or(u64::MAX));
        (self.acquire_ack_ns, end)
    }
}

/// Errors in a lock history.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The ack precedes the request.
    #[error("hold {index}: acknowledged at {ack_ns} before its request at {invoke_ns}")]
    AckBeforeInvoke {
        /// Index of the hold.
        index: usize,
        /// Request time.
        invoke_ns: u64,
        /// Ack time.
        ack_ns: u64,
    },
    /// The release was sent before the grant arrived.
    #[error("hold {index}: released at {release_ns} before its grant arrived at {ack_ns}")]
    ReleaseBeforeAck {
        /// Index of the hold.
        index: usize,
        /// Ack time.
        ack_ns: u64,
        /// Release time.
        release_ns: u64,
    },
}

/// Two holders that certainly held the same lock at the same time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// The lock.
    pub lock: String,
    /// Index of the holder whose hold started first.
    pub first: usize,
    /// Index of the other holder.
    pub second: usize,
}

/// How fencing tokens were misordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TokenViolationKind {
    /// `earlier` was certainly granted before `later` (its ack precedes
    /// `later`'s request) but its token is not smaller.
    NotIncreasing,
    /// Two grants carry the same token.
    Duplicate,
}

/// A fencing-token violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenViolation {
    /// The lock.
    pub lock: String,
    /// What went wrong.
    pub kind: TokenViolationKind,
    /// Index of the earlier grant (for `Duplicate`: the first of the two).
    pub earlier: usize,
    /// Index of the later grant.
    pub later: usize,
}

/// The result of [`check_locks`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LockReport {
    /// Pairs of overlapping holders.
    pub overlaps: Vec<Overlap>,
    /// Fencing-token violations.
    pub token_violations: Vec<TokenViolation>,
}

impl LockReport {
    /// Whether no violation was found.
    pub fn is_valid(&self) -> bool {
        self.overlaps.is_empty() && self.token_violations.is_empty()
    }
}

/// Checks mutual exclusion and fencing-token order, per lock.
pub fn check_locks(holds: &[LockHold]) -> Result<LockReport, LockError> {
    let mut per_lock: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, h) in holds.iter().enumerate() {
        if h.acquire_ack_ns < h.acquire_invoke_ns {
            return Err(LockError::AckBeforeInvoke {
                index,
                invoke_ns: h.acquire_invoke_ns,
                ack_ns: h.acquire_ack_ns,
            });
        }
        if let Some(release_ns) = h.release_invoke_ns {
            if release_ns < h.acquire_ack_ns {
                return Err(LockError::ReleaseBeforeAck {
                    index,
                    ack_ns: h.acquire_ack_ns,
                    release_ns,
                });
            }
        }
        per_lock.entry(h.lock.as_str()).or_default().push(index);
    }
    let mut report = LockReport::default();
    for (lock, idx) in per_lock {
        overlaps(holds, lock, &idx, &mut report.overlaps);
        tokens(holds, lock, &idx, &mut report.token_violations);
    }
    Ok(report)
}

fn overlaps(holds: &[LockHold], lock: &str, idx: &[usize], out: &mut Vec<Overlap>) {
    let mut spans: Vec<(u64, u64, usize)> = idx
        .iter()
        .map(|&i| {
            let (s, e) = holds[i].certain_interval();
            (s, e, i)
        })
        .filter(|&(s, e, _)| s < e)
        .collect();
    spans.sort_unstable();
    // Sweep by start, remembering the span reaching furthest right.
    let mut reach: Option<(u64, usize)> = None;
    for (s, e, i) in spans {
        if let Some((end, j)) = reach {
            if s < end {
                out.push(Overlap {
                    lock: lock.to_owned(),
                    first: j,
                    second: i,
                });
            }
            if e > end {
                reach = Some((e, i));
            }
        } else {
            reach = Some((e, i));
        }
    }
}

fn tokens(holds: &[LockHold], lock: &str, idx: &[usize], out: &mut Vec<TokenViolation>) {
    let mut by_token: Vec<usize> = idx.to_vec();
    by_token.sort_by_key(|&i| (holds[i].token, i));
    for pair in by_token.windows(2) {
        if holds[pair[0]].token == holds[pair[1]].token {
            out.push(TokenViolation {
                lock: lock.to_owned(),
                kind: TokenViolationKind::Duplicate,
                earlier: pair[0],
                later: pair[1],
            });
        }
    }
    // For each grant B, every grant acknowledged before B was requested was
    // granted before B and must carry a smaller token.
    for (b, m) in largest_token_before(
        idx,
        |i| holds[i].acquire_invoke_ns,
        |i| holds[i].acquire_ack_ns,
        |i| holds[i].token,
    ) {
        if holds[m].token >= holds[b].token {
            out.push(TokenViolation {
                lock: lock.to_owned(),
                kind: TokenViolationKind::NotIncreasing,
                earlier: m,
                later: b,
            });
        }
    }
}

/// For each item `b` of `idx` that has one, `(b, m)`: `m` is the item with
/// the largest token among those acknowledged strictly before `b` was
/// invoked (so certainly applied before `b`; `m != b`). One sweep, so
/// O(n log n) rather than every pair: it serves both grant order (the
/// token must grow) and fenced-write order (it must not shrink).
pub(crate) fn largest_token_before(
    idx: &[usize],
    invoke_ns: impl Fn(usize) -> u64,
    ack_ns: impl Fn(usize) -> u64,
    token: impl Fn(usize) -> u64,
) -> Vec<(usize, usize)> {
    let mut by_ack: Vec<usize> = idx.to_vec();
    by_ack.sort_by_key(|&i| (ack_ns(i), i));
    let mut by_invoke: Vec<usize> = idx.to_vec();
    by_invoke.sort_by_key(|&i| (invoke_ns(i), i));
    let mut out = Vec::new();
    let mut max_before: Option<usize> = None;
    let mut a = 0;
    for &b in &by_invoke {
        while a < by_ack.len() && ack_ns(by_ack[a]) < invoke_ns(b) {
            let cand = by_ack[a];
            if max_before.is_none_or(|m| token(cand) > token(m)) {
                max_before = Some(cand);
            }
            a += 1;
        }
        if let Some(m) = max_before {
            out.push((b, m));
        }
    }
    out
}
