//! HINCRBYFLOAT key field increment (the same arithmetic and formatting
//! as INCRBYFLOAT: f64, at most 17 significant digits, no exponent).

use super::hset::HASH_FULL;
use super::{CmdError, Command, Db, NOT_FLOAT};
use crate::num::{format_f64, parse_f64};
use crate::reply::Reply;

pub(crate) const HASH_NOT_FLOAT: &str = "ERR hash value is not a float";

pub struct HIncrByFloat<'a> {
    key: &'a [u8],
    field: &'a [u8],
    delta: f64,
}

impl<'a> Command<'a> for HIncrByFloat<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let delta = parse_f64(super::arg(argv, 3)?).ok_or(CmdError::from(NOT_FLOAT))?;
        // Redis refuses an infinite increment itself (INCRBYFLOAT only
        // refuses the sum).
        if !delta.is_finite() {
            return Err("ERR value is NaN or Infinity".into());
        }
        Ok(HIncrByFloat {
            key: super::arg(argv, 1)?,
            field: super::arg(argv, 2)?,
            delta,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let cur = match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(h) => match h.as_deref().and_then(|h| h.get(self.field)) {
                None => 0.0,
                Some(v) => match parse_f64(v) {
                    Some(f) => f,
                    None => return out.error(HASH_NOT_FLOAT),
                },
            },
        };
        let next = cur + self.delta;
        if !next.is_finite() {
            return out.error("ERR increment would produce NaN or Infinity");
        }
        let text = format_f64(next);
        let r = ks.write_hash(self.key, now_ms, true, |h, seed| {
            h.set(self.field, text.as_bytes(), seed)
                .map_err(|_| HASH_FULL)
        });
        match r.and_then(|r| r.unwrap_or(Ok(false))) {
            Ok(_) => out.bulk(text.as_bytes()),
            Err(e) => out.error(e),
        }
    }
}
