//! SMEMBERS key: the whole set in its own order (ascending for an
//! intset, insertion order for a listpack).

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::set::Set;

pub struct SMembers<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for SMembers<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SMembers {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_set(self.key, now_ms) {
            Ok(s) => reply_members(s, out),
            Err(e) => out.error(e),
        }
    }
}

/// A set (or none: empty) as a RESP3 set reply, in its order.
pub(crate) fn reply_members(s: Option<&Set>, out: &mut impl Reply) {
    out.set(s.map_or(0, |s| s.len()));
    for m in s.into_iter().flat_map(|s| s.iter()) {
        m.with(|b| out.bulk(b));
    }
}
