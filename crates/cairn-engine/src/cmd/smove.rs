//! SMOVE source destination member
//!
//! Redis' order of checks: a missing source answers 0 whatever the
//! destination holds; then both keys must be sets (or the destination
//! absent); moving within one set changes nothing.

use super::sadd::SET_FULL;
use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::set::Set;

pub struct SMove<'a> {
    from: &'a [u8],
    to: &'a [u8],
    member: &'a [u8],
}

impl<'a> Command<'a> for SMove<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SMove {
            from: super::arg(argv, 1)?,
            to: super::arg(argv, 2)?,
            member: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let member = self.member;
        let held = match db.shard(self.from).get_set(self.from, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.int(0),
            Ok(Some(s)) => s.contains(member),
        };
        if let Err(e) = db.shard(self.to).get_set(self.to, now_ms) {
            return out.error(e);
        }
        if self.from == self.to || !held {
            return out.int(i64::from(held));
        }
        if let Err(e) = db
            .shard(self.from)
            .write_set(self.from, now_ms, None, |s, _| s.remove(member))
        {
            return out.error(e);
        }
        let make = |seed| Set::for_members(member, 1, seed);
        let r = db
            .shard(self.to)
            .write_set(self.to, now_ms, Some(&make), |s, seed| s.add(member, seed));
        match r {
            Ok(Some(Err(_))) => out.error(SET_FULL),
            Ok(_) => out.int(1),
            Err(e) => out.error(e),
        }
    }
}
