//! The history model: operations recorded by concurrent client processes,
//! and their JSON Lines encoding.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `GET k`: returns [`Value::Nil`] for a missing key or [`Value::Int`].
    Read,
    /// `SET k v`: returns [`Value::Ack`].
    Write(i64),
    /// `SET k new IFEQ expect`: returns [`Value::Bool`] (`true` = swapped).
    Cas {
        /// The value the key must hold for the swap to happen.
        expect: i64,
        /// The value written when it does.
        new: i64,
    },
    /// `INCRBY k delta`: returns the new value as [`Value::Int`].
    Add(i64),
    /// `SADD k x` (set workload): returns [`Value::Ack`].
    AddElement(i64),
    /// `SMEMBERS k` (set workload): returns [`Value::Set`].
    ReadAll,
}

impl Call {
    /// Whether `value` has the shape this call's reply must have.
    pub fn accepts(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Call::Read, Value::Nil | Value::Int(_))
                | (Call::Write(_), Value::Ack)
                | (Call::Cas { .. }, Value::Bool(_))
                | (Call::Add(_), Value::Int(_))
                | (Call::AddElement(_), Value::Ack)
                | (Call::ReadAll, Value::Set(_))
        )
    }
}

/// A reply payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// An acknowledgement without payload (`+OK`, or `SADD`'s count).
    Ack,
    /// A read of a missing key.
    Nil,
    /// An integer (a read value or `INCRBY`'s new value).
    Int(i64),
    /// A compare-and-set's result.
    Bool(bool),
    /// A set read's members (order irrelevant).
    Set(Vec<i64>),
}

/// How an operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed with this reply: it took effect exactly once, somewhere
    /// between invocation and completion.
    Ok(Value),
    /// Definitely did not take effect (e.g. rejected before being
    /// proposed). Checkers drop it.
    Fail,
    /// Indeterminate (timeout, connection lost): may or may not have taken
    /// effect, at any time after its invocation. Treated as never
    /// completing.
    Info,
}

/// One operation of one client process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    /// The client process. A process is sequential: its `Ok`/`Fail`
    /// operations must not overlap. `Info` operations are exempt (the
    /// process gave up waiting; the operation may still be in flight).
    pub process: u64,
    /// The key the operation touched (histories are split per key).
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// Monotonic nanoseconds when the request was sent.
    pub invoke_ns: u64,
    /// Monotonic nanoseconds when the reply arrived (required for `Ok`;
    /// ignored for `Info`, which is treated as never completing).
    #[serde(default)]
    pub complete_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Op {
    /// A completed operation.
    pub fn ok(
        process: u64,
        key: &str,
        call: Call,
        invoke_ns: u64,
        complete_ns: u64,
        value: Value,
    ) -> Op {
        Op::completed(
            process,
            key,
            call,
            invoke_ns,
            complete_ns,
            Outcome::Ok(value),
        )
    }

    /// An operation that definitely did not happen.
    pub fn fail(process: u64, key: &str, call: Call, invoke_ns: u64, complete_ns: u64) -> Op {
        Op::completed(process, key, call, invoke_ns, complete_ns, Outcome::Fail)
    }

    fn completed(
        process: u64,
        key: &str,
        call: Call,
        invoke_ns: u64,
        complete_ns: u64,
        outcome: Outcome,
    ) -> Op {
        Op {
            process,
            key: key.to_owned(),
            call,
            invoke_ns,
            complete_ns: Some(complete_ns),
            outcome,
        }
    }

    /// An indeterminate operation (no reply).
    pub fn info(process: u64, key: &str, call: Call, invoke_ns: u64) -> Op {
        Op {
            process,
            key: key.to_owned(),
            call,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Info,
        }
    }
}

/// Errors reading or validating a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A JSON line that does not decode as an [`Op`].
    #[error("line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// Encoding an op failed (should not happen for well-formed ops).
    #[error("encoding op {index}: {source}")]
    Encode {
        /// Index of the op.
        index: usize,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// Reading or writing the underlying stream failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// `complete_ns < invoke_ns`.
    #[error("op {index}: completes at {complete_ns} before its invocation at {invoke_ns}")]
    CompletesBeforeInvoke {
        /// Index of the op.
        index: usize,
        /// Its invocation time.
        invoke_ns: u64,
        /// Its completion time.
        complete_ns: u64,
    },
    /// An `Ok` outcome without `complete_ns`.
    #[error("op {index}: ok outcome without a completion time")]
    MissingCompletion {
        /// Index of the op.
        index: usize,
    },
    /// A reply whose shape does not fit the call (e.g. a read returning a set).
    #[error("op {index}: reply {value:?} does not fit call {call:?}")]
    OutcomeMismatch {
        /// Index of the op.
        index: usize,
        /// The call.
        call: Call,
        /// The reply.
        value: Value,
    },
    /// Two determinate operations of one process overlap in time.
    #[error("ops {first} and {second} of process {process} overlap; a process must be sequential")]
    ProcessOverlap {
        /// The process.
        process: u64,
        /// The earlier op's index.
        first: usize,
        /// The later op's index.
        second: usize,
    },
}

/// A recorded history: operations in any order (checkers sort by time).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations. Indices into this vector identify ops in reports.
    pub ops: Vec<Op>,
}

impl From<Vec<Op>> for History {
    fn from(ops: Vec<Op>) -> Self {
        History { ops }
    }
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Appends an op, returning its index.
    pub fn push(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// Checks the history is well formed: completions not before
    /// invocations, `Ok` ops completed with a reply of the right shape, and
    /// each process's determinate (`Ok`/`Fail`) ops sequential.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut per_process: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (index, op) in self.ops.iter().enumerate() {
            if let Some(complete_ns) = op.complete_ns {
                if complete_ns < op.invoke_ns {
                    return Err(HistoryError::CompletesBeforeInvoke {
                        index,
                        invoke_ns: op.invoke_ns,
                        complete_ns,
                    });
                }
            }
            match &op.outcome {
                Outcome::Ok(value) => {
                    if op.complete_ns.is_none() {
                        return Err(HistoryError::MissingCompletion { index });
                    }
                    if !op.call.accepts(value) {
                        return Err(HistoryError::OutcomeMismatch {
                            index,
                            call: op.call.clone(),
                            value: value.clone(),
                        });
                    }
                    per_process.entry(op.process).or_default().push(index);
                }
                Outcome::Fail => {
                    if op.complete_ns.is_some() {
                        per_process.entry(op.process).or_default().push(index);
                    }
                }
                Outcome::Info => {}
            }
        }
        for (process, mut idx) in per_process {
            idx.sort_by_key(|&i| (self.ops[i].invoke_ns, i));
            for pair in idx.windows(2) {
                let (a, b) = (&self.ops[pair[0]], &self.ops[pair[1]]);
                // A process may send its next request in the same nanosecond
                // it received the previous reply.
                if a.complete_ns.unwrap_or(u64::MAX) > b.invoke_ns {
                    return Err(HistoryError::ProcessOverlap {
                        process,
                        first: pair[0],
                        second: pair[1],
                    });
                }
            }
        }
        Ok(())
    }

    /// Indices of ops grouped per key (keys in sorted order, indices in
    /// history order).
    pub fn by_key(&self) -> BTreeMap<&str, Vec<usize>> {
        let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            out.entry(op.key.as_str()).or_default().push(i);
        }
        out
    }

    /// Reads a JSON Lines history (one [`Op`] per line; blank lines are
    /// skipped). Does not validate; call [`History::validate`] or a checker.
    pub fn read_jsonl<R: BufRead>(reader: R) -> Result<History, HistoryError> {
        let mut ops = Vec::new();
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op: Op = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
                line: n + 1,
                source,
            })?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Parses a JSON Lines history from a string.
    pub fn from_jsonl_str(s: &str) -> Result<History, HistoryError> {
        History::read_jsonl(s.as_bytes())
    }

    /// Writes the history as JSON Lines, one op per line.
    pub fn write_jsonl<W: Write>(&self, mut writer: W) -> Result<(), HistoryError> {
        for (index, op) in self.ops.iter().enumerate() {
            serde_json::to_writer(&mut writer, op)
                .map_err(|source| HistoryError::Encode { index, source })?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    /// The history as a JSON Lines string.
    pub fn to_jsonl_string(&self) -> Result<String, HistoryError> {
        let mut buf = Vec::new();
        self.write_jsonl(&mut buf)?;
        // serde_json only emits UTF-8.
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trip_and_line_numbers() {
        let h = History::from(vec![
            Op::ok(1, "k", Call::Write(3), 0, 10, Value::Ack),
            Op::ok(2, "k", Call::Read, 5, 12, Value::Int(3)),
            Op::ok(
                2,
                "k",
                Call::Cas { expect: 3, new: 4 },
                13,
                20,
                Value::Bool(true),
            ),
            Op::info(3, "k", Call::Add(2), 7),
            Op::fail(4, "s", Call::AddElement(9), 1, 2),
            Op::ok(4, "s", Call::ReadAll, 3, 4, Value::Set(vec![1, 2])),
        ]);
        let text = h.to_jsonl_string().unwrap();
        assert_eq!(text.lines().count(), 6);
        let back = History::from_jsonl_str(&format!("\n{text}\n")).unwrap();
        assert_eq!(back, h);

        let bad = format!("{}\n{{\"process\": 1}}\n", text.lines().next().unwrap());
        match History::from_jsonl_str(&bad) {
            Err(HistoryError::Json { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn validation_rejects_malformed_histories() {
        let h = History::from(vec![Op::ok(1, "k", Call::Read, 10, 5, Value::Nil)]);
        assert!(matches!(
            h.validate(),
            Err(HistoryError::CompletesBeforeInvoke { index: 0, .. })
        ));
        let mut op = Op::ok(1, "k", Call::Read, 1, 5, Value::Nil);
        op.complete_ns = None;
        assert!(matches!(
            History::from(vec![op]).validate(),
            Err(HistoryError::MissingCompletion { index: 0 })
        ));
        let h = History::from(vec![Op::ok(1, "k", Call::Read, 1, 5, Value::Ack)]);
        assert!(matches!(
            h.validate(),
            Err(HistoryError::OutcomeMismatch { .. })
        ));
        let h = History::from(vec![
            Op::ok(1, "k", Call::Read, 1, 5, Value::Nil),
            Op::ok(1, "k", Call::Read, 4, 8, Value::Nil),
        ]);
        assert!(matches!(
            h.validate(),
            Err(HistoryError::ProcessOverlap {
                process: 1,
                first: 0,
                second: 1
            })
        ));
        // Info ops are exempt, and back-to-back ops are fine.
        let h = History::from(vec![
            Op::ok(1, "k", Call::Read, 1, 5, Value::Nil),
            Op::info(1, "k", Call::Write(1), 5),
            Op::ok(1, "k", Call::Read, 6, 8, Value::Nil),
        ]);
        h.validate().unwrap();
    }
}
