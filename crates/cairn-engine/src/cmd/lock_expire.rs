//! CAIRN.LOCKEXPIRE name token [owner [renewed]] — proposed by a group's
//! leader when the lease of the grant `token` (to `owner`: a semaphore's
//! holders admitted by one command share a token) ran out by its clock
//! (not for clients, like CAIRN.EXPIRED). `renewed` is the stamp of the
//! grant or renewal whose lease ran out: if the holder renewed after the
//! leader decided (the renewal was applied first), nothing ends. 1 when
//! that grant still held and ended (the next waiters, if any, hold it
//! now); 0 otherwise.

use super::lock_acquire::token_arg;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockExpire<'a> {
    name: &'a [u8],
    token: u64,
    owner: Option<&'a [u8]>,
    renewed: Option<u64>,
}

impl<'a> Command<'a> for LockExpire<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if !(3..=5).contains(&argv.len()) {
            return Err(super::wrong_arity("cairn.lockexpire"));
        }
        Ok(LockExpire {
            name: argv[1],
            token: token_arg(argv[2])?,
            owner: argv.get(3).copied(),
            renewed: argv.get(4).map(|r| token_arg(r)).transpose()?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        out.int(i64::from(locks.expire(
            self.name,
            self.token,
            self.owner,
            self.renewed,
            now,
        )));
    }
}
