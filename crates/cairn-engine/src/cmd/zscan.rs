//! ZSCAN key cursor [MATCH pattern] [COUNT count]
//!
//! A listpack comes back whole in one call (cursor 0), in order, as in
//! Redis; a skiplist's member table is walked by position (see
//! [`crate::zset::ZSet::scan`]). Scores are bulk strings in both
//! protocols, as Redis prints them from each encoding: `%.17g` from a
//! skiplist, and from a listpack an integral score as an integer (1e17
//! is `100000000000000000` there). As in Redis, the options are checked
//! only once the key is found to hold a zset.

use super::hscan::{empty_scan, options, ScanArgs};
use super::{CmdError, Command, Db};
use crate::glob::glob_match;
use crate::reply::Reply;

pub struct ZScan<'a>(ScanArgs<'a>);

impl<'a> Command<'a> for ZScan<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        ScanArgs::parse(argv).map(ZScan)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let a = &self.0;
        let z = match db.shard(a.key).get_zset(a.key, now_ms) {
            Ok(Some(z)) => z,
            Ok(None) => return empty_scan(out),
            Err(e) => return out.error(e),
        };
        let o = match options(a.options, false) {
            Ok(o) => o,
            Err(e) => return super::reply_err(out, e),
        };
        let mut found = Vec::new();
        let next = z.scan(a.cursor, o.count, |s, m| {
            if o.pattern.is_none_or(|p| glob_match(p, m)) {
                found.push((s, m));
            }
        });
        out.array(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array(found.len() * 2);
        let listpack = z.encoding() == "listpack";
        for (s, m) in found {
            out.bulk(m);
            let text = if listpack {
                crate::zset::listpack_score_text(s)
            } else {
                cairn_proto::format_double(s)
            };
            out.bulk(text.as_bytes());
        }
    }
}
