//! GET key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Get<'a> {
    pub key: &'a [u8],
}

impl<'a> Command<'a> for Get<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Get {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_string(self.key, now_ms) {
            Ok(Some(v)) => out.value(v),
            Ok(None) => out.null(),
            Err(e) => out.error(e),
        }
    }
}
