//! DEL key [key ...], UNLINK key [key ...] (UNLINK frees in place too:
//! values are dropped by the shard that owns them)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Del<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Del<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        Ok(Del { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let n = self
            .keys
            .iter()
            .filter(|k| db.shard(k).remove(k, now_ms).is_some())
            .count();
        out.int(n as i64)
    }
}
