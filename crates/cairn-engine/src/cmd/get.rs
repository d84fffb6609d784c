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
        match db.shard(self.key).get(self.key, now_ms) {
            Some(v) => out.value(v),
            None => out.null(),
        }
    }
}
