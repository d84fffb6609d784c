//! ZSCAN key cursor [MATCH pattern] [COUNT count]
//!
//! A listpack comes back whole in one call (cursor 0), in order, as in
//! Redis; a skiplist's member table is walked by position (see
//! [`crate::zset::ZSet::scan`]). Scores are bulk strings in both
//! protocols, as Redis prints them from each encoding: `%.17g` from a
//! skiplist, and from a listpack an integral score as an integer (1e17
//! is `100000000000000000` there). As in Redis, the options are checked
//! only once the key is found to hold a zset.

use super::hscan::{cursor, options};
use super::{CmdError, Command, Db};
use crate::glob::glob_match;
use crate::reply::Reply;

pub struct ZScan<'a> {
    key: &'a [u8],
    cursor: u64,
    options: &'a [&'a [u8]],
}

impl<'a> Command<'a> for ZScan<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(ZScan {
            key: super::arg(argv, 1)?,
            cursor: cursor(super::arg(argv, 2)?)?,
            options: &argv[3..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let z = match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(Some(z)) => z,
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
        let next = z.scan(self.cursor, o.count, |s, m| {
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
