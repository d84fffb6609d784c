//! TTL, PTTL (time left), EXPIRETIME, PEXPIRETIME (absolute deadline)
//! key. -2: no such key; -1: no deadline.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

/// `MODE`: 0 TTL, 1 PTTL, 2 EXPIRETIME, 3 PEXPIRETIME.
pub struct Ttl<'a, const MODE: u8> {
    key: &'a [u8],
}

pub type PTtl<'a> = Ttl<'a, 1>;
pub type ExpireTime<'a> = Ttl<'a, 2>;
pub type PExpireTime<'a> = Ttl<'a, 3>;

impl<'a, const MODE: u8> Command<'a> for Ttl<'a, MODE> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Ttl {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).deadline(self.key, now_ms) {
            None => out.int(-2),
            Some(None) => out.int(-1),
            Some(Some(at)) => {
                let left = at.saturating_sub(now_ms);
                out.int(match MODE {
                    0 => ((left + 500) / 1000) as i64,
                    1 => left as i64,
                    2 => ((at + 500) / 1000) as i64,
                    _ => at as i64,
                })
            }
        }
    }
}
