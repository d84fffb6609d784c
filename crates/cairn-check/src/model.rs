//! Sequential specifications the linearizability checker tests against.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{Call, Value};

/// A sequential specification of one key's object.
///
/// The checker looks for an order of the operations, consistent with
/// real time, in which replaying them through [`Model::step`] from
/// [`Model::init`] reproduces every observed reply.
pub trait Model {
    /// The object's state. Hashed into the search's memo table, so keep it
    /// small.
    type State: Clone + Eq + Hash + Debug;

    /// A short name for error messages.
    fn name(&self) -> &'static str;

    /// The state of a key nobody has written.
    fn init(&self) -> Self::State;

    /// Whether the model knows this call. Histories with other calls on a
    /// key are rejected with [`crate::CheckError::Unsupported`].
    fn supports(&self, call: &Call) -> bool;

    /// Whether the call never changes the state. Indeterminate (`Info`)
    /// read-only ops constrain nothing and are dropped before the search.
    fn is_read_only(&self, call: &Call) -> bool;

    /// Applies `call` to `state`. `ret` is the observed reply, or `None`
    /// when it is unknown (an `Info` op: any reply is acceptable). Returns
    /// the next state, or `None` if the observed reply is impossible from
    /// `state`.
    fn step(&self, state: &Self::State, call: &Call, ret: Option<&Value>) -> Option<Self::State>;
}

/// A read/write/compare-and-set register (`GET`, `SET`, `SET .. IFEQ`).
/// The state is `None` for a missing key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

impl Model for Register {
    type State = Option<i64>;

    fn name(&self) -> &'static str {
        "register"
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn supports(&self, call: &Call) -> bool {
        matches!(call, Call::Read | Call::Write(_) | Call::Cas { .. })
    }

    fn is_read_only(&self, call: &Call) -> bool {
        matches!(call, Call::Read)
    }

    fn step(&self, state: &Option<i64>, call: &Call, ret: Option<&Value>) -> Option<Option<i64>> {
        match call {
            Call::Read => {
                let seen = match state {
                    None => Value::Nil,
                    Some(v) => Value::Int(*v),
                };
                match ret {
                    None => Some(*state),
                    Some(r) if *r == seen => Some(*state),
                    Some(_) => None,
                }
            }
            Call::Write(v) => match ret {
                None | Some(Value::Ack) => Some(Some(*v)),
                Some(_) => None,
            },
            Call::Cas { expect, new } => {
                let matched = *state == Some(*expect);
                match ret {
                    None => Some(if matched { Some(*new) } else { *state }),
                    Some(Value::Bool(true)) if matched => Some(Some(*new)),
                    // A Cas reported false must have been a non-matching
                    // compare.
                    Some(Value::Bool(false)) if !matched => Some(*state),
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }
}

/// A counter (`INCRBY`, whose reply is the new value, and `GET`; `SET`
/// resets it). The state is `None` for a missing key, which `INCRBY`
/// treats as 0. An `INCRBY` that would overflow is an error in Redis and
/// has no effect.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter;

impl Model for Counter {
    type State = Option<i64>;

    fn name(&self) -> &'static str {
        "counter"
    }

    fn init(&self) -> Option<i64> {
        None
    }

    fn supports(&self, call: &Call) -> bool {
        matches!(call, Call::Read | Call::Add(_) | Call::Write(_))
    }

    fn is_read_only(&self, call: &Call) -> bool {
        matches!(call, Call::Read)
    }

    fn step(&self, state: &Option<i64>, call: &Call, ret: Option<&Value>) -> Option<Option<i64>> {
        match call {
            Call::Add(delta) => match (state.unwrap_or(0).checked_add(*delta), ret) {
                (Some(next), None) => Some(Some(next)),
                (Some(next), Some(Value::Int(v))) if *v == next => Some(Some(next)),
                (None, None) => Some(*state),
                _ => None,
            },
            Call::Read | Call::Write(_) => Register.step(state, call, ret),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_semantics() {
        let r = Register;
        assert_eq!(r.step(&None, &Call::Read, Some(&Value::Nil)), Some(None));
        assert_eq!(r.step(&None, &Call::Read, Some(&Value::Int(0))), None);
        assert_eq!(
            r.step(&Some(1), &Call::Write(2), Some(&Value::Ack)),
            Some(Some(2))
        );
        let cas = Call::Cas { expect: 1, new: 5 };
        assert_eq!(
            r.step(&Some(1), &cas, Some(&Value::Bool(true))),
            Some(Some(5))
        );
        assert_eq!(r.step(&Some(1), &cas, Some(&Value::Bool(false))), None);
        assert_eq!(r.step(&Some(2), &cas, Some(&Value::Bool(true))), None);
        assert_eq!(
            r.step(&Some(2), &cas, Some(&Value::Bool(false))),
            Some(Some(2))
        );
        assert_eq!(r.step(&None, &cas, None), Some(None));
        assert_eq!(r.step(&Some(1), &cas, None), Some(Some(5)));
    }

    #[test]
    fn counter_semantics() {
        let c = Counter;
        assert_eq!(
            c.step(&None, &Call::Add(3), Some(&Value::Int(3))),
            Some(Some(3))
        );
        assert_eq!(c.step(&Some(3), &Call::Add(3), Some(&Value::Int(3))), None);
        assert_eq!(
            c.step(&Some(i64::MAX), &Call::Add(1), None),
            Some(Some(i64::MAX))
        );
        assert_eq!(
            c.step(&Some(i64::MAX), &Call::Add(1), Some(&Value::Int(0))),
            None
        );
        assert_eq!(
            c.step(&Some(4), &Call::Read, Some(&Value::Int(4))),
            Some(Some(4))
        );
    }
}
