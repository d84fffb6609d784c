//! HSETNX key field value

use super::hset::HASH_FULL;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HSetNx<'a> {
    key: &'a [u8],
    field: &'a [u8],
    value: &'a [u8],
}

impl<'a> Command<'a> for HSetNx<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HSetNx {
            key: super::arg(argv, 1)?,
            field: super::arg(argv, 2)?,
            value: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        // A field already there changes nothing: look before writing, so
        // the key's WATCH version stays.
        match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(Some(h)) if h.get(self.field).is_some() => return out.int(0),
            Ok(_) => {}
        }
        let r = ks.write_hash(self.key, now_ms, true, |h, seed| {
            h.set(self.field, self.value, seed).map_err(|_| HASH_FULL)
        });
        match r.and_then(|r| r.unwrap_or(Ok(false))) {
            Ok(added) => out.int(i64::from(added)),
            Err(e) => out.error(e),
        }
    }
}
