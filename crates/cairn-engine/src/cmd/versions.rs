//! CAIRN.VERSIONS key [key ...]
//!
//! What WATCH records for each key, as a flat array: the key's write
//! version, then 1 if the key is alive, else 0 (see
//! `Keyspace::key_version`). cairn's own: a cluster node that does not
//! lead the keys' group asks the leader with it.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Versions<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Versions<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        Ok(Versions { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        out.array(self.keys.len() * 2);
        for k in self.keys {
            let (v, alive) = db.shard(k).key_version(k, now_ms);
            // Versions fit in i64: a log index below 2^47 shifted by 16.
            out.int(v as i64);
            out.int(alive as i64);
        }
    }
}
