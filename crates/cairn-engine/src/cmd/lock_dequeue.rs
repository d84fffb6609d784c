//! LOCK.DEQUEUE name owner — `owner` stops waiting for `name` (a waiting
//! connection whose WAIT ran out sends it). The token when the owner
//! holds the lock (granted before this: the wait succeeded after all),
//! otherwise 0 (out of the queue, or it was not in it).

use super::lock_acquire::owner_arg;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockDequeue<'a> {
    name: &'a [u8],
    owner: &'a [u8],
}

impl<'a> Command<'a> for LockDequeue<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 3 {
            return Err(super::wrong_arity("lock.dequeue"));
        }
        Ok(LockDequeue {
            name: argv[1],
            owner: owner_arg(argv[2])?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        out.int(
            locks
                .dequeue(self.name, self.owner, now)
                .map_or(0, |t| t as i64),
        );
    }
}
