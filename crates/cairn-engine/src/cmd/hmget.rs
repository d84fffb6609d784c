//! HMGET key field [field ...]

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HMGet<'a> {
    key: &'a [u8],
    fields: &'a [&'a [u8]],
}

impl<'a> Command<'a> for HMGet<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(HMGet {
            key,
            fields: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let h = match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => h,
            Err(e) => return out.error(e),
        };
        let h = h.as_deref();
        out.array(self.fields.len());
        for f in self.fields {
            match h.and_then(|h| h.get(f)) {
                Some(v) => out.bulk(v),
                None => out.null(),
            }
        }
    }
}
