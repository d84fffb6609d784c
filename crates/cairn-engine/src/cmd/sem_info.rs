//! SEM.INFO name
//!
//! A map — limit, used, waiters, holders (an array of maps: owner, token,
//! permits, lease_ms, remaining_ms by this node's clock, -1 where it does
//! not track it) — or a null reply when nobody holds or waits for it.
//! Works on locks too (a lock is a semaphore of one permit).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct SemInfo<'a> {
    name: &'a [u8],
}

impl<'a> Command<'a> for SemInfo<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 2 {
            return Err(super::wrong_arity("sem.info"));
        }
        Ok(SemInfo { name: argv[1] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        let Some(i) = locks.sem_info(self.name, now) else {
            return out.null();
        };
        out.map(4);
        out.bulk(b"limit");
        out.int(i64::from(i.limit));
        out.bulk(b"used");
        out.int(i.used as i64);
        out.bulk(b"waiters");
        out.int(i.waiters as i64);
        out.bulk(b"holders");
        out.array(i.holders.len());
        for h in &i.holders {
            out.map(5);
            out.bulk(b"owner");
            out.bulk(&h.owner);
            out.bulk(b"token");
            out.int(h.token as i64);
            out.bulk(b"permits");
            out.int(i64::from(h.permits));
            out.bulk(b"lease_ms");
            out.int(h.lease_ms as i64);
            out.bulk(b"remaining_ms");
            out.int(h.remaining_ms.map_or(-1, |r| r as i64));
        }
    }
}
