//! GETDEL key

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct GetDel<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for GetDel<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(GetDel {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        if let Err(e) = ks.get_string(self.key, now_ms) {
            return out.error(e);
        }
        match ks.remove(self.key, now_ms) {
            Some((v, _)) => out.value(&v),
            None => out.null(),
        }
    }
}
