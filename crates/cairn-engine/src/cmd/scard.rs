//! SCARD key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct SCard<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for SCard<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SCard {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_set(self.key, now_ms) {
            Ok(s) => out.int(s.map_or(0, |s| s.len() as i64)),
            Err(e) => out.error(e),
        }
    }
}
