//! INCR key, DECR key, INCRBY key n [FENCE lock token],
//! DECRBY key n [FENCE lock token]
//!
//! The stored value keeps its deadline, as in Redis. FENCE (cairn's):
//! the counter changes only while `lock` is held with `token` (`-FENCED`
//! otherwise); the lock must hash to the key's slot.

use super::set::{fence_holds, fence_tail, FENCED};
use super::{CmdError, Command, Db, NOT_INTEGER, OVERFLOW, SYNTAX};
use crate::reply::Reply;
use crate::value::Value;

/// `SIGN` is +1 or -1; `BY` says whether an amount argument follows.
pub struct IncrBy<'a, const SIGN: i8, const BY: bool> {
    key: &'a [u8],
    delta: i64,
    fence: Option<(&'a [u8], u64)>,
}

pub type Incr<'a> = IncrBy<'a, 1, false>;
pub type Decr<'a> = IncrBy<'a, -1, false>;
pub type DecrBy<'a> = IncrBy<'a, -1, true>;

impl<'a, const SIGN: i8, const BY: bool> Command<'a> for IncrBy<'a, SIGN, BY> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let fence = match argv.len() {
            3 if BY => None,
            6 if BY => match fence_tail(argv, &[key])? {
                Some(f) => Some(f),
                None => return Err(SYNTAX.into()),
            },
            2 if !BY => None,
            _ if BY => return Err(SYNTAX.into()),
            _ => return Err(super::wrong_arity(if SIGN < 0 { "decr" } else { "incr" })),
        };
        let amount = if BY {
            super::int_arg(super::arg(argv, 2)?)?
        } else {
            1
        };
        let delta = if SIGN < 0 {
            amount
                .checked_neg()
                .ok_or(CmdError::from("ERR decrement would overflow"))?
        } else {
            amount
        };
        Ok(IncrBy { key, delta, fence })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if let Some((name, token)) = self.fence {
            if !fence_holds(db, name, token, now_ms) {
                return out.error(FENCED);
            }
        }
        match incr_by(db, self.key, self.delta, now_ms) {
            Ok(n) => out.int(n),
            Err(e) => out.error(e),
        }
    }
}

/// Adds `delta` to the integer at `key` (0 when absent).
pub fn incr_by(db: &mut impl Db, key: &[u8], delta: i64, now_ms: u64) -> Result<i64, &'static str> {
    let ks = db.shard(key);
    match ks.find(key, now_ms) {
        None => {
            ks.insert(key, Value::Int(delta), Some(None), now_ms);
            Ok(delta)
        }
        Some(pos) => {
            let v = ks.value_at(pos);
            if !v.is_string() {
                return Err(super::WRONGTYPE);
            }
            let cur = v.as_i64().ok_or(NOT_INTEGER)?;
            let next = cur.checked_add(delta).ok_or(OVERFLOW)?;
            ks.update_at(pos, now_ms, |v| *v = Value::Int(next));
            Ok(next)
        }
    }
}
