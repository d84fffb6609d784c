//! HKEYS key, HVALS key, HGETALL key: the whole hash in its own order
//! (insertion order while it is a listpack, as in Redis).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub const KEYS: u8 = 1;
pub const VALS: u8 = 2;

/// `WHAT`: [`KEYS`], [`VALS`] or both (HGETALL, a map in RESP3).
pub struct HGetAll<'a, const WHAT: u8> {
    key: &'a [u8],
}

pub type HKeys<'a> = HGetAll<'a, KEYS>;
pub type HVals<'a> = HGetAll<'a, VALS>;

impl<'a, const WHAT: u8> Command<'a> for HGetAll<'a, WHAT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HGetAll {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let h = match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => h,
            Err(e) => return out.error(e),
        };
        let h = h.as_deref();
        let len = h.map_or(0, |h| h.len());
        if WHAT == KEYS | VALS {
            out.map(len);
        } else {
            out.array(len);
        }
        for (f, v) in h.into_iter().flat_map(|h| h.iter()) {
            if WHAT & KEYS != 0 {
                out.bulk(f);
            }
            if WHAT & VALS != 0 {
                out.bulk(v);
            }
        }
    }
}
