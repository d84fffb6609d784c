//! GETSET key value (clears any deadline, like SET)

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::value::Value;

pub struct GetSet<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

impl<'a> Command<'a> for GetSet<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(GetSet {
            key: super::arg(argv, 1)?,
            value: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        match ks.get_string(self.key, now_ms) {
            Ok(Some(v)) => out.value(v),
            Ok(None) => out.null(),
            Err(e) => return out.error(e),
        }
        ks.insert(self.key, Value::from_bytes(self.value), Some(None), now_ms);
    }
}
