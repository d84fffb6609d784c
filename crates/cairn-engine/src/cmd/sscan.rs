//! SSCAN key cursor [MATCH pattern] [COUNT count]
//!
//! An intset or a listpack comes back whole in one call (cursor 0), as in
//! Redis; a table is walked by position (see [`crate::set::Set::scan`]).
//! As in Redis, the options are checked only once the key is found to
//! hold a set: a missing key answers an empty scan whatever follows.

use super::hscan::{empty_scan, options, ScanArgs};
use super::{CmdError, Command, Db};
use crate::glob::glob_match;
use crate::reply::Reply;

pub struct SScan<'a>(ScanArgs<'a>);

impl<'a> Command<'a> for SScan<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        ScanArgs::parse(argv).map(SScan)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let a = &self.0;
        let s = match db.shard(a.key).get_set(a.key, now_ms) {
            Ok(Some(s)) => s,
            Ok(None) => return empty_scan(out),
            Err(e) => return out.error(e),
        };
        let o = match options(a.options, false) {
            Ok(o) => o,
            Err(e) => return super::reply_err(out, e),
        };
        let mut found = Vec::new();
        let next = s.scan(a.cursor, o.count, |m| {
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
