//! SETEX key seconds value, PSETEX key milliseconds value

use super::{CmdError, Command, Db, ExpireUnit};
use crate::reply::Reply;
use crate::value::Value;

/// `MILLIS` false: SETEX; true: PSETEX.
pub struct SetEx<'a, const MILLIS: bool> {
    key: &'a [u8],
    ttl: i64,
    value: &'a [u8],
}

pub type PSetEx<'a> = SetEx<'a, true>;

impl<'a, const MILLIS: bool> Command<'a> for SetEx<'a, MILLIS> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SetEx {
            key: super::arg(argv, 1)?,
            ttl: super::int_arg(super::arg(argv, 2)?)?,
            value: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let (unit, name) = if MILLIS {
            (ExpireUnit::Millis, "psetex")
        } else {
            (ExpireUnit::Seconds, "setex")
        };
        match unit.deadline(self.ttl, now_ms, name) {
            Ok(d) => {
                db.shard(self.key).insert(
                    self.key,
                    Value::from_bytes(self.value),
                    Some(Some(d)),
                    now_ms,
                );
                out.ok()
            }
            Err(e) => super::reply_err(out, e),
        }
    }
}
