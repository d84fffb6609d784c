//! LOCK.RELEASE name owner token
//!
//! 1 when `owner` held the lock with `token` (the next waiter, if any,
//! holds it now); 0 when it did not, and nothing changed.

use super::lock_acquire::{owner_arg, token_arg};
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockRelease<'a> {
    name: &'a [u8],
    owner: &'a [u8],
    token: u64,
}

impl<'a> Command<'a> for LockRelease<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 4 {
            return Err(super::wrong_arity("lock.release"));
        }
        Ok(LockRelease {
            name: argv[1],
            owner: owner_arg(argv[2])?,
            token: token_arg(argv[3])?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        let done = locks.release(self.name, self.owner, self.token, now);
        out.int(i64::from(done));
    }
}
