//! LRANGE key start stop (inclusive, negative from the end, clamped)

use super::{CmdError, Command, Db};
use crate::list::resolve_range;
use crate::reply::Reply;

pub struct LRange<'a> {
    key: &'a [u8],
    start: i64,
    stop: i64,
}

impl<'a> Command<'a> for LRange<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        Ok(LRange {
            key,
            start: super::int_arg(super::arg(argv, 2)?)?,
            stop: super::int_arg(super::arg(argv, 3)?)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let l = match db.shard(self.key).get_list(self.key, now_ms) {
            Ok(Some(l)) => l,
            Ok(None) => return out.array(0),
            Err(e) => return out.error(e),
        };
        match resolve_range(self.start, self.stop, l.len()) {
            None => out.array(0),
            Some((a, b)) => {
                out.array(b - a + 1);
                for e in l.iter().skip(a).take(b - a + 1) {
                    out.bulk(e);
                }
            }
        }
    }
}
