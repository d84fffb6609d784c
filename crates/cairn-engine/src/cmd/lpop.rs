//! LPOP / RPOP key [count]: one element (a bulk), or with a count up to
//! that many (an array; Redis' null array for a missing key).

use super::{CmdError, Command, Db};
use crate::list::End;
use crate::reply::Reply;

/// Redis' `getPositiveLongFromObjectOrReply` wording (a non-number too).
pub const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

pub struct Pop<'a, const LEFT: bool> {
    key: &'a [u8],
    count: Option<usize>,
}

pub type LPop<'a> = Pop<'a, true>;
pub type RPop<'a> = Pop<'a, false>;

impl<'a, const LEFT: bool> Command<'a> for Pop<'a, LEFT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        if argv.len() > 3 {
            return Err(super::wrong_arity(if LEFT { "lpop" } else { "rpop" }));
        }
        let count = match argv.get(2) {
            None => None,
            Some(c) => Some(positive(c, NOT_POSITIVE)?),
        };
        Ok(Pop { key, count })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let end = if LEFT { End::Left } else { End::Right };
        let ks = db.shard(self.key);
        match ks.get_list(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) if self.count.is_some() => return out.null_array(),
            Ok(None) => return out.null(),
            Ok(Some(_)) => {}
        }
        if self.count == Some(0) {
            return out.array(0);
        }
        match pop_n(ks, self.key, now_ms, end, self.count.unwrap_or(1)) {
            Err(e) => out.error(e),
            Ok(items) if self.count.is_some() => {
                out.array(items.len());
                for i in &items {
                    out.bulk(i);
                }
            }
            Ok(items) => match items.first() {
                Some(i) => out.bulk(i),
                None => out.null(),
            },
        }
    }
}

/// A non-negative count; `msg` for anything else (a non-number too).
pub(crate) fn positive(arg: &[u8], msg: &'static str) -> Result<usize, CmdError> {
    match crate::num::parse_i64(arg) {
        Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(msg.into()),
    }
}

/// Takes up to `count` elements from `end` of the list at `key`
/// (deleting it when emptied).
pub(crate) fn pop_n(
    ks: &mut crate::keyspace::Keyspace,
    key: &[u8],
    now_ms: u64,
    end: End,
    count: usize,
) -> Result<Vec<Vec<u8>>, &'static str> {
    let r = ks.write_list(key, now_ms, false, |l| {
        let mut items = Vec::with_capacity(count.min(l.len()));
        while items.len() < count {
            match l.pop(end) {
                Some(e) => items.push(e),
                None => break,
            }
        }
        items
    })?;
    Ok(r.unwrap_or_default())
}
