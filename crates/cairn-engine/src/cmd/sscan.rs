//! SSCAN key cursor [MATCH pattern] [COUNT count]
//!
//! An intset or a listpack comes back whole in one call (cursor 0), as in
//! Redis; a table is walked by position (see [`crate::set::Set::scan`]).
//! As in Redis, the options are checked only once the key is found to
//! hold a set: a missing key answers an empty scan whatever follows.

use super::hscan::{cursor, options};
use super::{CmdError, Command, Db};
use crate::glob::glob_match;
use crate::reply::Reply;

pub struct SScan<'a> {
    key: &'a [u8],
    cursor: u64,
    options: &'a [&'a [u8]],
}

impl<'a> Command<'a> for SScan<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SScan {
            key: super::arg(argv, 1)?,
            cursor: cursor(super::arg(argv, 2)?)?,
            options: &argv[3..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let s = match db.shard(self.key).get_set(self.key, now_ms) {
            Ok(Some(s)) => s,
            Ok(None) => {
                out.array(2);
                out.bulk(b"0");
                return out.array(0);
            }
            Err(e) => return out.error(e),
        };
        let o = match options(self.options, false) {
            Ok(o) => o,
            Err(e) => return super::reply_err(out, e),
        };
        let mut found = Vec::new();
        let next = s.scan(self.cursor, o.count, |m| {
            if m.with(|b| o.pattern.is_none_or(|p| glob_match(p, b))) {
                found.push(m);
            }
        });
        out.array(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array(found.len());
        for m in found {
            m.with(|b| out.bulk(b));
        }
    }
}
