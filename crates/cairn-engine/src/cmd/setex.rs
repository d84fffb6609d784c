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

impl<const MILLIS: bool> SetEx<'_, MILLIS> {
    fn deadline(&self, now_ms: u64) -> Result<u64, CmdError> {
        let (unit, name) = if MILLIS {
            (ExpireUnit::Millis, "psetex")
        } else {
            (ExpireUnit::Seconds, "setex")
        };
        unit.deadline(self.ttl, now_ms, name)
    }
}

impl<'a, const MILLIS: bool> Command<'a> for SetEx<'a, MILLIS> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SetEx {
            key: super::arg(argv, 1)?,
            ttl: super::int_arg(super::arg(argv, 2)?)?,
            value: super::arg(argv, 3)?,
        })
    }

    fn check(&self, now_ms: u64) -> Result<(), CmdError> {
        self.deadline(now_ms).map(|_| ())
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match self.deadline(now_ms) {
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
