//! HINCRBY key field increment

use super::hset::HASH_FULL;
use super::{CmdError, Command, Db, OVERFLOW};
use crate::reply::Reply;

pub(crate) const HASH_NOT_INTEGER: &str = "ERR hash value is not an integer";

pub struct HIncrBy<'a> {
    key: &'a [u8],
    field: &'a [u8],
    delta: i64,
}

impl<'a> Command<'a> for HIncrBy<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HIncrBy {
            key: super::arg(argv, 1)?,
            field: super::arg(argv, 2)?,
            delta: super::int_arg(super::arg(argv, 3)?)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        // Errors change nothing: decide them on a read first.
        let next = match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(h) => match h.as_deref().and_then(|h| h.get(self.field)) {
                None => self.delta,
                Some(v) => match crate::num::parse_i64(v) {
                    None => return out.error(HASH_NOT_INTEGER),
                    Some(cur) => match cur.checked_add(self.delta) {
                        Some(n) => n,
                        None => return out.error(OVERFLOW),
                    },
                },
            },
        };
        let text = itoa::Buffer::new().format(next).as_bytes().to_vec();
        let r = ks.write_hash(self.key, now_ms, true, |h, seed| {
            h.set(self.field, &text, seed).map_err(|_| HASH_FULL)
        });
        match r.and_then(|r| r.unwrap_or(Ok(false))) {
            Ok(_) => out.int(next),
            Err(e) => out.error(e),
        }
    }
}
