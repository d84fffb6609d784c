//! STRLEN key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct StrLen<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for StrLen<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(StrLen {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_string(self.key, now_ms) {
            Ok(v) => out.int(v.map_or(0, |v| v.str_len() as i64)),
            Err(e) => out.error(e),
        }
    }
}
