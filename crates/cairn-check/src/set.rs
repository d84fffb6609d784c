//! The set and list workloads: clients add unique elements to a set (or
//! push them onto a list) and read it back; no search is needed. A list
//! read may hold an element twice, which is a violation (each element is
//! pushed once).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::history::{Call, History, Outcome, Value};
use crate::linear::CheckError;

/// The verdict for a set key (or overall).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SetVerdict {
    /// Nothing lost, nothing unexpected, nothing read twice.
    Valid,
    /// Lost, unexpected or duplicated elements.
    Invalid,
    /// No successful final read to judge by.
    Unknown,
}

/// One set key's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetKeyResult {
    /// The key's verdict.
    pub verdict: SetVerdict,
    /// Index of the final read (the successful `ReadAll` invoked last).
    pub final_read: Option<usize>,
    /// Acknowledged adds.
    pub acknowledged: usize,
    /// Acknowledged (completed before the final read was invoked) but
    /// missing from the final read: data loss.
    pub lost: Vec<i64>,
    /// Present in some read although no add of it that could have taken
    /// effect (`Ok` or `Info`) was invoked before that read completed.
    pub unexpected: Vec<i64>,
    /// Read more than once by one read: every element is added once, so a
    /// second copy (a list push applied twice) is a violation.
    pub duplicated: Vec<i64>,
    /// Indeterminate (`Info`) adds that are present in the final read
    /// (informational: they took effect).
    pub recovered: Vec<i64>,
    /// Acknowledged adds missing from the final read but concurrent with
    /// it (informational, not a violation).
    pub concurrent_missing: Vec<i64>,
}

/// The result of [`check_set`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetReport {
    /// Invalid if any key is, else Unknown if any key is, else Valid.
    pub verdict: SetVerdict,
    /// Per-key results.
    pub keys: BTreeMap<String, SetKeyResult>,
}

/// Checks a set-workload history: every acknowledged `AddElement` must be
/// in the final `ReadAll`, and no read may contain an element never
/// (possibly) added. Only `AddElement` and `ReadAll` calls are allowed.
pub fn check_set(history: &History) -> Result<SetReport, CheckError> {
    history.validate()?;
    for (index, op) in history.ops.iter().enumerate() {
        if !matches!(op.call, Call::AddElement(_) | Call::ReadAll) {
            return Err(CheckError::Unsupported {
                index,
                key: op.key.clone(),
                model: "set",
                call: op.call.clone(),
            });
        }
    }
    let mut keys = BTreeMap::new();
    let mut verdict = SetVerdict::Valid;
    for (key, idx) in history.by_key() {
        let result = check_key(history, &idx);
        verdict = match (result.verdict, verdict) {
            (SetVerdict::Invalid, _) | (_, SetVerdict::Invalid) => SetVerdict::Invalid,
            (SetVerdict::Unknown, _) | (_, SetVerdict::Unknown) => SetVerdict::Unknown,
            _ => SetVerdict::Valid,
        };
        keys.insert(key.to_owned(), result);
    }
    Ok(SetReport { verdict, keys })
}

fn check_key(history: &History, idx: &[usize]) -> SetKeyResult {
    let ops = &history.ops;
    // Earliest invocation of a possibly-effective add, per element.
    let mut first_attempt: BTreeMap<i64, u64> = BTreeMap::new();
    let mut acked: Vec<usize> = Vec::new();
    let mut indeterminate: BTreeSet<i64> = BTreeSet::new();
    let mut reads: Vec<(usize, &[i64])> = Vec::new();
    for &i in idx {
        let op = &ops[i];
        match (&op.call, &op.outcome) {
            (Call::AddElement(x), Outcome::Ok(_) | Outcome::Info) => {
                let t = first_attempt.entry(*x).or_insert(op.invoke_ns);
                *t = (*t).min(op.invoke_ns);
                if matches!(op.outcome, Outcome::Ok(_)) {
                    acked.push(i);
                } else {
                    indeterminate.insert(*x);
                }
            }
            (Call::ReadAll, Outcome::Ok(Value::Set(members))) => reads.push((i, members)),
            _ => {}
        }
    }
    let mut unexpected = BTreeSet::new();
    let mut duplicated = BTreeSet::new();
    for &(i, members) in &reads {
        let done = ops[i].complete_ns.unwrap_or(u64::MAX);
        let mut seen = BTreeSet::new();
        for x in members {
            if first_attempt.get(x).is_none_or(|&t| t > done) {
                unexpected.insert(*x);
            }
            if !seen.insert(*x) {
                duplicated.insert(*x);
            }
        }
    }
    let final_read = reads
        .iter()
        .max_by_key(|&&(i, _)| (ops[i].invoke_ns, i))
        .copied();
    let (mut lost, mut concurrent_missing, mut recovered) =
        (BTreeSet::new(), BTreeSet::new(), Vec::new());
    if let Some((fi, members)) = final_read {
        let present: BTreeSet<i64> = members.iter().copied().collect();
        let read_start = ops[fi].invoke_ns;
        for &i in &acked {
            if let Call::AddElement(x) = ops[i].call {
                if !present.contains(&x) {
                    if ops[i].complete_ns.unwrap_or(u64::MAX) < read_start {
                        lost.insert(x);
                    } else {
                        concurrent_missing.insert(x);
                    }
                }
            }
        }
        // An element acknowledged once and missing is lost even if another
        // add of it was concurrent.
        concurrent_missing.retain(|x| !lost.contains(x));
        recovered = indeterminate
            .iter()
            .copied()
            .filter(|x| present.contains(x))
            .collect();
    }
    let verdict = if !lost.is_empty() || !unexpected.is_empty() || !duplicated.is_empty() {
        SetVerdict::Invalid
    } else if final_read.is_none() {
        SetVerdict::Unknown
    } else {
        SetVerdict::Valid
    };
    SetKeyResult {
        verdict,
        final_read: final_read.map(|(i, _)| i),
        acknowledged: acked.len(),
        lost: lost.into_iter().collect(),
        unexpected: unexpected.into_iter().collect(),
        duplicated: duplicated.into_iter().collect(),
        recovered,
        concurrent_missing: concurrent_missing.into_iter().collect(),
    }
}
