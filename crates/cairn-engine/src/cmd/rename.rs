//! RENAME key newkey, RENAMENX key newkey (the deadline moves too)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

/// `NX` false: RENAME; true: RENAMENX.
pub struct Rename<'a, const NX: bool> {
    from: &'a [u8],
    to: &'a [u8],
}

pub type RenameNx<'a> = Rename<'a, true>;

impl<'a, const NX: bool> Command<'a> for Rename<'a, NX> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Rename {
            from: super::arg(argv, 1)?,
            to: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if !db.shard(self.from).contains(self.from, now_ms) {
            return out.error("ERR no such key");
        }
        if self.from == self.to {
            return if NX { out.int(0) } else { out.ok() };
        }
        if NX && db.shard(self.to).contains(self.to, now_ms) {
            return out.int(0);
        }
        let Some((value, deadline)) = db.shard(self.from).remove(self.from, now_ms) else {
            return out.error("ERR no such key");
        };
        db.shard(self.to)
            .insert(self.to, value, Some(deadline), now_ms);
        if NX {
            out.int(1)
        } else {
            out.ok()
        }
    }
}
