//! SETNX key value

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::value::Value;

pub struct SetNx<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

impl<'a> Command<'a> for SetNx<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SetNx {
            key: super::arg(argv, 1)?,
            value: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        if ks.contains(self.key, now_ms) {
            out.int(0)
        } else {
            ks.insert(self.key, Value::from_bytes(self.value), Some(None), now_ms);
            out.int(1)
        }
    }
}
