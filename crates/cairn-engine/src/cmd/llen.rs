//! LLEN key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LLen<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for LLen<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(LLen {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_list(self.key, now_ms) {
            Ok(l) => out.int(l.map_or(0, |l| l.len() as i64)),
            Err(e) => out.error(e),
        }
    }
}
