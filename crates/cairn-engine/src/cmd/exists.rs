//! EXISTS key [key ...] (a key named twice counts twice)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Exists<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Exists<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        Ok(Exists { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let n = self
            .keys
            .iter()
            .filter(|k| db.shard(k).contains(k, now_ms))
            .count();
        out.int(n as i64)
    }
}
