//! LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: pops up to
//! `count` elements from the first non-empty list, answering
//! `[key, [elements]]`, or a null array when every list is empty.

use super::lmove::end_arg;
use super::{CmdError, Command, Db};
use crate::list::End;
use crate::reply::Reply;

pub const NUMKEYS: &str = "ERR numkeys should be greater than 0";
pub const COUNT: &str = "ERR count should be greater than 0";

/// The key popped from and its elements.
pub(crate) type Popped<'a> = (&'a [u8], Vec<Vec<u8>>);

pub struct LMPop<'a> {
    pub(crate) keys: &'a [&'a [u8]],
    pub(crate) end: End,
    pub(crate) count: usize,
}

impl<'a> LMPop<'a> {
    /// Parses `numkeys key... LEFT|RIGHT [COUNT n]` with numkeys at
    /// `argv[at]` (LMPOP 1, BLMPOP 2), in Redis' order of checks.
    pub(crate) fn parse_at(argv: &'a [&'a [u8]], at: usize) -> Result<Self, CmdError> {
        let numkeys = match crate::num::parse_i64(super::arg(argv, at)?) {
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => return Err(NUMKEYS.into()),
        };
        let where_at = at.saturating_add(numkeys).saturating_add(1);
        let Some(w) = argv.get(where_at) else {
            return Err(super::SYNTAX.into());
        };
        let end = end_arg(w)?;
        let mut count = None;
        let mut i = where_at + 1;
        while i < argv.len() {
            match argv.get(i + 1) {
                Some(v) if count.is_none() && super::is(argv[i], "count") => {
                    count = match crate::num::parse_i64(v) {
                        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        _ => return Err(COUNT.into()),
                    };
                }
                _ => return Err(super::SYNTAX.into()),
            }
            i += 2;
        }
        Ok(LMPop {
            keys: &argv[at + 1..where_at],
            end,
            count: count.unwrap_or(1),
        })
    }

    /// The first non-empty list's key and its popped elements.
    pub(crate) fn run(
        &self,
        db: &mut impl Db,
        now_ms: u64,
    ) -> Result<Option<Popped<'a>>, &'static str> {
        for &key in self.keys {
            let ks = db.shard(key);
            if ks.get_list(key, now_ms)?.is_none() {
                continue;
            }
            let items = super::lpop::pop_n(ks, key, now_ms, self.end, self.count)?;
            return Ok(Some((key, items)));
        }
        Ok(None)
    }

    pub(crate) fn reply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match self.run(db, now_ms) {
            Err(e) => out.error(e),
            Ok(None) => out.null_array(),
            Ok(Some((key, items))) => {
                out.array(2);
                out.bulk(key);
                out.array(items.len());
                for i in &items {
                    out.bulk(i);
                }
            }
        }
    }
}

impl<'a> Command<'a> for LMPop<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        LMPop::parse_at(argv, 1)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.reply(db, now_ms, out)
    }
}
