//! LOCK.FORCERELEASE name — an operator ends whoever's grant (the next
//! waiter, if any, holds the lock now). 1 when it was held, 0 otherwise.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockForceRelease<'a> {
    name: &'a [u8],
}

impl<'a> Command<'a> for LockForceRelease<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 2 {
            return Err(super::wrong_arity("lock.forcerelease"));
        }
        Ok(LockForceRelease { name: argv[1] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        out.int(i64::from(locks.force_release(self.name, now)));
    }
}
