//! LSET key index element

use super::{CmdError, Command, Db};
use crate::list::resolve_index;
use crate::reply::Reply;

pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";

pub struct LSet<'a> {
    key: &'a [u8],
    index: i64,
    element: &'a [u8],
}

impl<'a> Command<'a> for LSet<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let index = super::int_arg(super::arg(argv, 2)?)?;
        Ok(LSet {
            key,
            index,
            element: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let i = match ks.get_list(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.error(NO_SUCH_KEY),
            Ok(Some(l)) => match resolve_index(self.index, l.len()) {
                Some(i) => i,
                None => return out.error(INDEX_OUT_OF_RANGE),
            },
        };
        match ks.write_list(self.key, now_ms, false, |l| l.set(i, self.element)) {
            Ok(_) => out.ok(),
            Err(e) => out.error(e),
        }
    }
}
