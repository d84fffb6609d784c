//! LPUSH / RPUSH key element [element ...], and LPUSHX / RPUSHX (only
//! onto an existing list). Elements go in one by one, so LPUSH a b c
//! leaves c first; the reply is the list's new length.

use super::{CmdError, Command, Db};
use crate::list::End;
use crate::reply::Reply;

/// `LEFT`: LPUSH (else RPUSH); `X`: only when the list exists.
pub struct Push<'a, const LEFT: bool, const X: bool> {
    key: &'a [u8],
    elements: &'a [&'a [u8]],
}

pub type LPush<'a> = Push<'a, true, false>;
pub type RPush<'a> = Push<'a, false, false>;
pub type LPushX<'a> = Push<'a, true, true>;
pub type RPushX<'a> = Push<'a, false, true>;

impl<'a, const LEFT: bool, const X: bool> Command<'a> for Push<'a, LEFT, X> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(Push {
            key,
            elements: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let end = if LEFT { End::Left } else { End::Right };
        let r = db.shard(self.key).write_list(self.key, now_ms, !X, |l| {
            l.push(end, self.elements.iter().copied()).map(|()| l.len())
        });
        match r {
            Ok(Some(Ok(n))) => out.int(n as i64),
            Ok(None) => out.int(0),
            Ok(Some(Err(e))) | Err(e) => out.error(e),
        }
    }
}
