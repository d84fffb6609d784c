//! LREM key count element: removes up to |count| equal elements (from
//! the head, from the tail when negative, all when 0).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LRem<'a> {
    key: &'a [u8],
    count: i64,
    element: &'a [u8],
}

impl<'a> Command<'a> for LRem<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let count = super::int_arg(super::arg(argv, 2)?)?;
        Ok(LRem {
            key,
            count,
            element: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        // Removing nothing is not a write (WATCH keeps its version).
        match ks.get_list(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.int(0),
            Ok(Some(l)) if !l.iter().any(|e| e == self.element) => return out.int(0),
            Ok(Some(_)) => {}
        }
        let r = ks.write_list(self.key, now_ms, false, |l| {
            l.remove_matching(self.element, self.count)
        });
        match r {
            Ok(n) => out.int(n.unwrap_or(0) as i64),
            Err(e) => out.error(e),
        }
    }
}
