//! LINDEX key index (negative from the end; nil out of range)

use super::{CmdError, Command, Db};
use crate::list::resolve_index;
use crate::reply::Reply;

pub struct LIndex<'a> {
    key: &'a [u8],
    index: i64,
}

impl<'a> Command<'a> for LIndex<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        Ok(LIndex {
            key,
            index: super::int_arg(super::arg(argv, 2)?)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_list(self.key, now_ms) {
            Err(e) => out.error(e),
            Ok(l) => match l.and_then(|l| l.get(resolve_index(self.index, l.len())?)) {
                Some(e) => out.bulk(e),
                None => out.null(),
            },
        }
    }
}
