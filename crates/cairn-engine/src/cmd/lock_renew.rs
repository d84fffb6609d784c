//! LOCK.RENEW name owner token lease_ms
//!
//! 1 when `owner` holds the lock with `token` (its lease now `lease_ms`
//! from here); otherwise a LOCKLOST error and nothing changes.

use super::lock_acquire::{lease_arg, owner_arg, token_arg};
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub const LOCKLOST: &str = "LOCKLOST the lock is not held by this owner and token";

pub struct LockRenew<'a> {
    name: &'a [u8],
    owner: &'a [u8],
    token: u64,
    lease_ms: u64,
}

impl<'a> Command<'a> for LockRenew<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 5 {
            return Err(super::wrong_arity("lock.renew"));
        }
        Ok(LockRenew {
            name: argv[1],
            owner: owner_arg(argv[2])?,
            token: token_arg(argv[3])?,
            lease_ms: lease_arg(argv[4])?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        if locks.renew(self.name, self.owner, self.token, self.lease_ms, now) {
            out.int(1);
        } else {
            out.error(LOCKLOST);
        }
    }
}
