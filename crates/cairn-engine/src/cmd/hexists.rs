//! HEXISTS key field

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HExists<'a> {
    key: &'a [u8],
    field: &'a [u8],
}

impl<'a> Command<'a> for HExists<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HExists {
            key: super::arg(argv, 1)?,
            field: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => out.int(i64::from(
                h.as_deref().is_some_and(|h| h.get(self.field).is_some()),
            )),
            Err(e) => out.error(e),
        }
    }
}
