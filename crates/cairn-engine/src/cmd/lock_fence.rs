//! LOCK.FENCE name token
//!
//! `+OK` while lock `name` is held with fencing token `token`, else
//! `-FENCED`. Inside MULTI it is the transaction's precondition: EXEC
//! applies nothing and answers `-FENCED` unless every LOCK.FENCE of the
//! transaction holds (checked in the same log entry as the writes, so a
//! paused former holder cannot slip a transaction in after the lock
//! moved on).

use super::set::{fence_holds, FENCED};
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockFence<'a> {
    pub name: &'a [u8],
    pub token: u64,
}

impl<'a> Command<'a> for LockFence<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 3 {
            return Err(super::wrong_arity("lock.fence"));
        }
        Ok(LockFence {
            name: argv[1],
            token: super::lock_acquire::token_arg(argv[2])?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if fence_holds(db, self.name, self.token, now_ms) {
            out.ok()
        } else {
            out.error(FENCED)
        }
    }
}
