//! MGET key [key ...]

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct MGet<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for MGet<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        Ok(MGet { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        out.array(self.keys.len());
        for k in self.keys {
            match db.shard(k).get(k, now_ms) {
                // Another type reads as absent, as in Redis.
                Some(v) if v.is_string() => out.value(v),
                _ => out.null(),
            }
        }
    }
}
