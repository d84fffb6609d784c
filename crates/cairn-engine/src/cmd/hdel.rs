//! HDEL key field [field ...] (the key goes when its last field does)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HDel<'a> {
    key: &'a [u8],
    fields: &'a [&'a [u8]],
}

impl<'a> Command<'a> for HDel<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(HDel {
            key,
            fields: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        // Deleting nothing is not a write (WATCH keeps its version).
        match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.int(0),
            Ok(Some(h)) if self.fields.iter().all(|f| h.get(f).is_none()) => return out.int(0),
            Ok(Some(_)) => {}
        }
        let r = ks.write_hash(self.key, now_ms, false, |h, _| {
            self.fields.iter().filter(|f| h.remove(f)).count() as i64
        });
        match r {
            Ok(n) => out.int(n.unwrap_or(0)),
            Err(e) => out.error(e),
        }
    }
}
