//! HGET key field

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HGet<'a> {
    key: &'a [u8],
    field: &'a [u8],
}

impl<'a> Command<'a> for HGet<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HGet {
            key: super::arg(argv, 1)?,
            field: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => match h.as_deref().and_then(|h| h.get(self.field)) {
                Some(v) => out.bulk(v),
                None => out.null(),
            },
            Err(e) => out.error(e),
        }
    }
}
