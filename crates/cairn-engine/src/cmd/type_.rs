//! TYPE key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Type<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for Type<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Type {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        match ks.find(self.key, now_ms) {
            Some(pos) => out.simple(ks.value_at(pos).value_type().name()),
            None => out.simple("none"),
        }
    }
}
