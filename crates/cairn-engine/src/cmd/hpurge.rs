//! `CAIRN.HPURGE key [key ...]` — internal, never accepted from clients:
//! the replicated form of active hash field expiry. A Raft leader finds
//! hashes with fields whose deadline passed and proposes this; every
//! replica removes the fields still expired at the entry's timestamp (a
//! key whose last field goes is deleted) and stops tracking keys left
//! without deadlines. Replies with the number of hashes changed.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HPurge<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for HPurge<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HPurge { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let mut n = 0;
        for k in self.keys {
            n += db.shard(k).hash_purge(k, now_ms) as i64;
        }
        out.int(n);
    }
}
