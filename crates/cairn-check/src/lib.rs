//! Offline consistency checkers for cairn's fault lab.
//!
//! Clients of a (possibly faulty) cluster record a [`History`] of
//! operations: who ([`Op::process`]), on which key, what ([`Call`]), when
//! (invocation and completion in monotonic nanoseconds) and how it ended
//! ([`Outcome`]: `Ok(reply)`, `Fail` = definitely did not happen, `Info` =
//! indeterminate). Histories round-trip through JSON Lines so a run can be
//! rechecked later.
//!
//! - [`check`] decides linearizability against a sequential [`Model`]
//!   ([`Register`], [`Counter`], or your own) with the Wing–Gong/Lowe
//!   search, memoized, split per key, bounded by a [`Budget`]: a key that
//!   exhausts it is [`KeyResult::Unknown`], never linearizable.
//! - [`check_set`] checks the set workload: no acknowledged element lost,
//!   no element that was never added.
//! - [`check_locks`] checks lock holders never overlap and fencing tokens
//!   increase in grant order.
//! - [`check_fenced`] checks writes fenced by those tokens: accepted ones
//!   never go back to an older token and never land in another grant's
//!   hold; [`check_counter_bounds`] checks the counters they increment
//!   lost no acknowledged increment and doubled none;
//!   [`check_lock_history`] runs all three on a recorded [`LockHistory`].
//!
//! See `docs/design/checker.md` for the algorithm and its costs.
//!
//! ```
//! use cairn_check::{check, Budget, Call, History, Op, Register, Value, Verdict};
//!
//! // p1 writes 1 and completes; afterwards p2 still reads the initial nil.
//! let history = History::from(vec![
//!     Op::ok(1, "k", Call::Write(1), 0, 10, Value::Ack),
//!     Op::ok(2, "k", Call::Read, 20, 30, Value::Nil),
//! ]);
//! let report = check(&history, &Register, &Budget::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::NotLinearizable);
//!
//! // Recorded histories are JSON Lines; an overlapping read may see nil.
//! let text = r#"
//! {"process":1,"key":"k","call":{"write":1},"invoke_ns":0,"complete_ns":10,"outcome":{"ok":"ack"}}
//! {"process":2,"key":"k","call":"read","invoke_ns":5,"complete_ns":30,"outcome":{"ok":"nil"}}
//! {"process":3,"key":"k","call":{"cas":{"expect":1,"new":2}},"invoke_ns":40,"outcome":"info"}
//! "#;
//! let history = History::from_jsonl_str(text).unwrap();
//! let report = check(&history, &Register, &Budget::default()).unwrap();
//! assert!(report.is_linearizable());
//! ```

#![warn(missing_docs)]

pub mod fenced;
pub mod history;
pub mod linear;
pub mod lock;
pub mod model;
pub mod ports;
pub mod set;

pub use fenced::{
    check_counter_bounds, check_fenced, check_lock_history, CounterBound, FenceOutcome,
    FenceViolation, FenceViolationKind, FencedError, FencedReport, FencedWrite, LockHistory,
    LockHistoryError, LockHistoryReport, LockVerdict,
};
pub use history::{Call, History, HistoryError, Op, Outcome, Value};
pub use linear::{
    check, check_ops, Budget, CheckError, KeyResult, Report, UnknownReason, Verdict, Witness,
};
pub use lock::{
    check_locks, LockError, LockHold, LockReport, Overlap, TokenViolation, TokenViolationKind,
};
pub use model::{Counter, Model, Register};
pub use set::{check_set, SetKeyResult, SetReport, SetVerdict};
