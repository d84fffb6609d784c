//! Fenced writes: what a lock's fencing tokens must guarantee about the
//! writes they guard, and the bound on the counters those writes add to.
//!
//! A fenced write (`INCRBY key n FENCE lock token`) is applied only if, at
//! the instant it is applied, `lock` is held with exactly `token`. That
//! instant lies somewhere in `[invoke_ns, ack_ns]`. Holds are the
//! acknowledged grants of [`crate::lock`], each *certainly* held during
//! [`LockHold::certain_interval`]. From those, with no search:
//!
//! - **order**: an accepted write acknowledged before another accepted
//!   write of the same lock was sent carries a token no larger (tokens
//!   grow grant after grant; a stale holder's write going in after a newer
//!   holder's is the bug fencing exists to prevent);
//! - **exclusion**: an accepted write that ran entirely inside another
//!   grant's certain interval was applied while the lock was held with
//!   another token;
//! - **no false refusal**: a write refused by the fence that ran entirely
//!   inside its own grant's certain interval was refused while its token
//!   certainly held the lock;
//! - **provenance**: an accepted write's token is one a hold of the lock
//!   was granted (the workload only ever sends those: anything else is a
//!   recording bug, caught rather than trusted);
//! - **counter bound**: after the run, each counter must lie between the
//!   sum of its accepted increments and that sum plus every indeterminate
//!   one ([`check_counter_bounds`]): no acknowledged increment lost, none
//!   applied twice, no refused or failed one applied.
//!
//! What must not be got wrong: only `Refused` (the fence said no) and
//! `Failed` (`-TRYAGAIN`, `-ERR`: nothing applied) are definitely not
//! applied. A timeout or `-UNKNOWN` is `Unknown`; recording it as refused
//! would turn a doubled increment into a false alarm, and recording it as
//! accepted would hide a lost one.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::lock::{check_locks, largest_token_before, LockError, LockHold, LockReport};

/// How a fenced write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceOutcome {
    /// Applied (the reply is the counter's new value).
    Accepted,
    /// Refused by the fence (`-FENCED`): not applied.
    Refused,
    /// Refused for another reason that guarantees nothing was applied
    /// (`-TRYAGAIN`, `-ERR ...`).
    Failed,
    /// May or may not have been applied (timeout, I/O error, `-UNKNOWN`).
    Unknown,
}

/// One fenced increment as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FencedWrite {
    /// The lock named by `FENCE`.
    pub lock: String,
    /// The counter incremented.
    pub key: String,
    /// The client process that sent it.
    pub process: u64,
    /// The fencing token sent.
    pub token: u64,
    /// The increment.
    pub delta: i64,
    /// When the request was sent.
    pub invoke_ns: u64,
    /// When the reply arrived (for `Unknown`: when the client gave up).
    pub ack_ns: u64,
    /// How it ended.
    pub outcome: FenceOutcome,
    /// The counter's value the reply carried (`Accepted` only).
    #[serde(default)]
    pub value: Option<i64>,
}

/// Errors in a fenced-write history.
#[derive(Debug, thiserror::Error)]
pub enum FencedError {
    /// The ack precedes the request.
    #[error("write {index}: acknowledged at {ack_ns} before its request at {invoke_ns}")]
    AckBeforeInvoke {
        /// Index of the write.
        index: usize,
        /// Request time.
        invoke_ns: u64,
        /// Ack time.
        ack_ns: u64,
    },
}

/// What a fenced write got wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FenceViolationKind {
    /// Accepted write `other` was acknowledged before accepted write
    /// `write` was sent, yet carries a larger token: `write` is a stale
    /// holder's, accepted after a newer holder's.
    StaleAccepted,
    /// Accepted write `write` ran entirely inside the certain interval of
    /// hold `other`, whose token is another.
    AcceptedDuringOtherHold,
    /// Write `write`, refused by the fence, ran entirely inside the
    /// certain interval of hold `other`, the grant of its own token.
    RefusedWhileHeld,
    /// Accepted write `write` carries a token no hold of its lock was
    /// granted (`other` is `None`).
    UnknownToken,
}

/// A fenced-write violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FenceViolation {
    /// The lock.
    pub lock: String,
    /// What went wrong.
    pub kind: FenceViolationKind,
    /// Index of the offending write.
    pub write: usize,
    /// Index of the write (`StaleAccepted`) or hold (`AcceptedDuringOtherHold`,
    /// `RefusedWhileHeld`) it conflicts with.
    pub other: Option<usize>,
}

/// The result of [`check_fenced`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FencedReport {
    /// Every violation found.
    pub violations: Vec<FenceViolation>,
}

impl FencedReport {
    /// Whether no violation was found.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks fenced writes against each other and against `holds` (the
/// acknowledged grants of the same run), per lock; see the module doc.
pub fn check_fenced(
    writes: &[FencedWrite],
    holds: &[LockHold],
) -> Result<FencedReport, FencedError> {
    let mut per_lock: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (index, w) in writes.iter().enumerate() {
        if w.ack_ns < w.invoke_ns {
            return Err(FencedError::AckBeforeInvoke {
                index,
                invoke_ns: w.invoke_ns,
                ack_ns: w.ack_ns,
            });
        }
        per_lock.entry(w.lock.as_str()).or_default().0.push(index);
    }
    for (index, h) in holds.iter().enumerate() {
        if let Some(entry) = per_lock.get_mut(h.lock.as_str()) {
            entry.1.push(index);
        }
    }
    let mut report = FencedReport::default();
    for (lock, (w_idx, h_idx)) in per_lock {
        let accepted: Vec<usize> = w_idx
            .iter()
            .copied()
            .filter(|&i| writes[i].outcome == FenceOutcome::Accepted)
            .collect();
        let out = &mut report.violations;
        stale_accepted(writes, lock, &accepted, out);
        unknown_tokens(writes, holds, lock, &accepted, &h_idx, out);
        inside_holds(writes, holds, lock, &w_idx, &h_idx, out);
    }
    Ok(report)
}

fn violation(
    lock: &str,
    kind: FenceViolationKind,
    write: usize,
    other: Option<usize>,
) -> FenceViolation {
    FenceViolation {
        lock: lock.to_owned(),
        kind,
        write,
        other,
    }
}

fn stale_accepted(
    writes: &[FencedWrite],
    lock: &str,
    accepted: &[usize],
    out: &mut Vec<FenceViolation>,
) {
    for (b, m) in largest_token_before(
        accepted,
        |i| writes[i].invoke_ns,
        |i| writes[i].ack_ns,
        |i| writes[i].token,
    ) {
        if writes[m].token > writes[b].token {
            out.push(violation(
                lock,
                FenceViolationKind::StaleAccepted,
                b,
                Some(m),
            ));
        }
    }
}

fn unknown_tokens(
    writes: &[FencedWrite],
    holds: &[LockHold],
    lock: &str,
    accepted: &[usize],
    h_idx: &[usize],
    out: &mut Vec<FenceViolation>,
) {
    let granted: BTreeSet<u64> = h_idx.iter().map(|&i| holds[i].token).collect();
    for &w in accepted {
        if !granted.contains(&writes[w].token) {
            out.push(violation(lock, FenceViolationKind::UnknownToken, w, None));
        }
    }
}

/// Writes that ran entirely inside a hold's certain interval: the lock was
/// held with that hold's token when they were applied. One sweep in
/// invocation order, keeping the holds begun so far by end time.
fn inside_holds(
    writes: &[FencedWrite],
    holds: &[LockHold],
    lock: &str,
    w_idx: &[usize],
    h_idx: &[usize],
    out: &mut Vec<FenceViolation>,
) {
    let mut spans: Vec<(u64, u64, usize)> = h_idx
        .iter()
        .map(|&i| {
            let (s, e) = holds[i].certain_interval();
            (s, e, i)
        })
        .filter(|&(s, e, _)| s < e)
        .collect();
    spans.sort_unstable();
    let mut by_invoke: Vec<usize> = w_idx
        .iter()
        .copied()
        .filter(|&i| {
            matches!(
                writes[i].outcome,
                FenceOutcome::Accepted | FenceOutcome::Refused
            )
        })
        .collect();
    by_invoke.sort_by_key(|&i| (writes[i].invoke_ns, i));
    // (end, hold) of holds that began at or before the current write.
    let mut active: BTreeSet<(u64, usize)> = BTreeSet::new();
    let mut next = 0;
    for w in by_invoke {
        let write = &writes[w];
        while next < spans.len() && spans[next].0 <= write.invoke_ns {
            active.insert((spans[next].1, spans[next].2));
            next += 1;
        }
        // Ended by this invocation: they contain no later write either.
        while active.first().is_some_and(|&(e, _)| e <= write.invoke_ns) {
            active.pop_first();
        }
        let containing = (
            Bound::Excluded((write.ack_ns, usize::MAX)),
            Bound::Unbounded,
        );
        for &(_, h) in active.range(containing) {
            let same = holds[h].token == write.token;
            let kind = match write.outcome {
                FenceOutcome::Accepted if !same => FenceViolationKind::AcceptedDuringOtherHold,
                FenceOutcome::Refused if same => FenceViolationKind::RefusedWhileHeld,
                _ => continue,
            };
            out.push(violation(lock, kind, w, Some(h)));
        }
    }
}

/// The verdict of a lock history (or of one counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockVerdict {
    /// No violation.
    Valid,
    /// A violation.
    Invalid,
    /// No violation found, but a counter was never read at the end.
    Unknown,
}

/// One counter's bound: its final value must lie in `[low, high]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterBound {
    /// The counter.
    pub key: String,
    /// Sum of the accepted increments, plus the negative indeterminate ones.
    pub low: i64,
    /// Sum of the accepted increments, plus the positive indeterminate ones.
    pub high: i64,
    /// Accepted writes.
    pub accepted: usize,
    /// Indeterminate writes.
    pub unknown: usize,
    /// The value read after the run (`None`: never read).
    pub final_value: Option<i64>,
}

impl CounterBound {
    /// `Valid` when the final value is in `[low, high]`, `Unknown` when
    /// there is none.
    pub fn verdict(&self) -> LockVerdict {
        match self.final_value {
            None => LockVerdict::Unknown,
            Some(v) if (self.low..=self.high).contains(&v) => LockVerdict::Valid,
            Some(_) => LockVerdict::Invalid,
        }
    }
}

/// The bound of every counter written or read: `finals` maps a counter to
/// its value read after every write had ended (a missing key, or `None`, is
/// a counter never read; a counter that did not exist reads as 0).
pub fn check_counter_bounds(
    writes: &[FencedWrite],
    finals: &BTreeMap<String, Option<i64>>,
) -> Vec<CounterBound> {
    let mut bounds: BTreeMap<&str, CounterBound> = BTreeMap::new();
    let keys = finals
        .keys()
        .map(String::as_str)
        .chain(writes.iter().map(|w| w.key.as_str()));
    for key in keys {
        bounds.entry(key).or_insert_with(|| CounterBound {
            key: key.to_owned(),
            low: 0,
            high: 0,
            accepted: 0,
            unknown: 0,
            final_value: finals.get(key).copied().flatten(),
        });
    }
    for w in writes {
        let Some(b) = bounds.get_mut(w.key.as_str()) else {
            continue;
        };
        match w.outcome {
            FenceOutcome::Accepted => {
                b.low = b.low.saturating_add(w.delta);
                b.high = b.high.saturating_add(w.delta);
                b.accepted += 1;
            }
            FenceOutcome::Unknown => {
                b.low = b.low.saturating_add(w.delta.min(0));
                b.high = b.high.saturating_add(w.delta.max(0));
                b.unknown += 1;
            }
            FenceOutcome::Refused | FenceOutcome::Failed => {}
        }
    }
    bounds.into_values().collect()
}

/// A lock workload's record: acknowledged grants, fenced writes, and the
/// counters read at the end. Saved as one JSON object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHistory {
    /// One per acknowledged grant.
    pub holds: Vec<LockHold>,
    /// Every fenced write sent, whatever its outcome.
    pub writes: Vec<FencedWrite>,
    /// Counter → value read after the run (`None`: never read).
    pub finals: BTreeMap<String, Option<i64>>,
}

/// Errors in a lock history.
#[derive(Debug, thiserror::Error)]
pub enum LockHistoryError {
    /// A malformed hold.
    #[error(transparent)]
    Hold(#[from] LockError),
    /// A malformed write.
    #[error(transparent)]
    Write(#[from] FencedError),
}

/// The result of [`check_lock_history`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockHistoryReport {
    /// `Invalid` if any part found a violation, else `Unknown` if a counter
    /// was never read, else `Valid`.
    pub verdict: LockVerdict,
    /// Mutual exclusion and grant order ([`check_locks`]).
    pub locks: LockReport,
    /// Fenced writes ([`check_fenced`]).
    pub fenced: FencedReport,
    /// Counter bounds ([`check_counter_bounds`]).
    pub counters: Vec<CounterBound>,
}

/// Runs every lock check on a recorded lock history.
pub fn check_lock_history(history: &LockHistory) -> Result<LockHistoryReport, LockHistoryError> {
    let locks = check_locks(&history.holds)?;
    let fenced = check_fenced(&history.writes, &history.holds)?;
    let counters = check_counter_bounds(&history.writes, &history.finals);
    let verdicts = counters.iter().map(CounterBound::verdict);
    let verdict = if !locks.is_valid() || !fenced.is_valid() {
        LockVerdict::Invalid
    } else {
        verdicts.fold(LockVerdict::Valid, |acc, v| match (acc, v) {
            (LockVerdict::Invalid, _) | (_, LockVerdict::Invalid) => LockVerdict::Invalid,
            (LockVerdict::Unknown, _) | (_, LockVerdict::Unknown) => LockVerdict::Unknown,
            _ => LockVerdict::Valid,
        })
    };
    Ok(LockHistoryReport {
        verdict,
        locks,
        fenced,
        counters,
    })
}
