//! LINSERT key BEFORE|AFTER pivot element: the new length, -1 when the
//! pivot is not there, 0 when the key is not.

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct LInsert<'a> {
    key: &'a [u8],
    after: bool,
    pivot: &'a [u8],
    element: &'a [u8],
}

impl<'a> Command<'a> for LInsert<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let where_ = super::arg(argv, 2)?;
        let pivot = super::arg(argv, 3)?;
        let element = super::arg(argv, 4)?;
        let after = if super::is(where_, "after") {
            true
        } else if super::is(where_, "before") {
            false
        } else {
            return Err(super::SYNTAX.into());
        };
        Ok(LInsert {
            key,
            after,
            pivot,
            element,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let at = match ks.get_list(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.int(0),
            Ok(Some(l)) => match l.iter().position(|e| e == self.pivot) {
                Some(i) => i + usize::from(self.after),
                None => return out.int(-1),
            },
        };
        let r = ks.write_list(self.key, now_ms, false, |l| {
            l.insert(at, self.element).map(|()| l.len())
        });
        match r {
            Ok(Some(Ok(n))) => out.int(n as i64),
            Ok(None) => out.int(0),
            Ok(Some(Err(e))) | Err(e) => out.error(e),
        }
    }
}
