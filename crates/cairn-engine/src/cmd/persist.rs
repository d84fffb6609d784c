//! PERSIST key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Persist<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for Persist<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Persist {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        match ks.deadline(self.key, now_ms) {
            Some(Some(_)) => {
                ks.set_deadline(self.key, None, now_ms);
                out.int(1)
            }
            _ => out.int(0),
        }
    }
}
