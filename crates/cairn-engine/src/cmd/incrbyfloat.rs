//! INCRBYFLOAT key increment

use super::{CmdError, Command, Db, NOT_FLOAT};
use crate::num::{format_f64, parse_f64};
use crate::reply::Reply;
use crate::value::Value;

pub struct IncrByFloat<'a> {
    key: &'a [u8],
    delta: f64,
}

impl<'a> Command<'a> for IncrByFloat<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(IncrByFloat {
            key: super::arg(argv, 1)?,
            delta: parse_f64(super::arg(argv, 2)?).ok_or(CmdError::from(NOT_FLOAT))?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let pos = ks.find(self.key, now_ms);
        let cur = match pos {
            None => 0.0,
            Some(p) if !ks.value_at(p).is_string() => return out.error(super::WRONGTYPE),
            Some(p) => match ks.value_at(p).with_bytes(parse_f64) {
                Some(f) => f,
                None => return out.error(NOT_FLOAT),
            },
        };
        let next = cur + self.delta;
        if !next.is_finite() {
            return out.error("ERR increment would produce NaN or Infinity");
        }
        let text = format_f64(next);
        let value = Value::from_bytes(text.as_bytes());
        match pos {
            Some(p) => ks.update_at(p, now_ms, |v| *v = value),
            None => {
                ks.insert(self.key, value, Some(None), now_ms);
            }
        }
        out.bulk(text.as_bytes())
    }
}
