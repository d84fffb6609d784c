//! HLEN key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HLen<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for HLen<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HLen {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => out.int(h.as_deref().map_or(0, |h| h.len() as i64)),
            Err(e) => out.error(e),
        }
    }
}
