//! SISMEMBER key member, and SMISMEMBER key member [member ...] (an
//! array of 0/1, one per member).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

/// `MANY`: SMISMEMBER's array reply instead of one integer.
pub struct SIsMember<'a, const MANY: bool> {
    key: &'a [u8],
    members: &'a [&'a [u8]],
}

pub type SMIsMember<'a> = SIsMember<'a, true>;

impl<'a, const MANY: bool> Command<'a> for SIsMember<'a, MANY> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(SIsMember {
            key,
            members: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let s = match db.shard(self.key).get_set(self.key, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        let is = |m: &[u8]| i64::from(s.is_some_and(|s| s.contains(m)));
        if !MANY {
            return out.int(is(self.members[0]));
        }
        out.array(self.members.len());
        for m in self.members {
            out.int(is(m));
        }
    }
}
