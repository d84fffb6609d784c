//! LOCK.INFO name
//!
//! A map — owner, token, lease_ms, remaining_ms (this node's view of the
//! lease: what the leader acts on; -1 where this node does not track
//! it), waiters — or a null reply when the lock is free.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LockInfo<'a> {
    name: &'a [u8],
}

impl<'a> Command<'a> for LockInfo<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 2 {
            return Err(super::wrong_arity("lock.info"));
        }
        Ok(LockInfo { name: argv[1] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        let Some(i) = locks.info(self.name, now) else {
            return out.null();
        };
        out.map(5);
        out.bulk(b"owner");
        out.bulk(&i.owner);
        out.bulk(b"token");
        out.int(i.token as i64);
        out.bulk(b"lease_ms");
        out.int(i.lease_ms as i64);
        out.bulk(b"remaining_ms");
        out.int(i.remaining_ms.map_or(-1, |r| r as i64));
        out.bulk(b"waiters");
        out.int(i.waiters as i64);
    }
}
