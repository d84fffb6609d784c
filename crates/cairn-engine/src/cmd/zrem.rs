//! ZREM key member [member ...] (the key goes when its last member does;
//! removing nothing is no write).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct ZRem<'a> {
    key: &'a [u8],
    members: &'a [&'a [u8]],
}

impl<'a> Command<'a> for ZRem<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(ZRem {
            key,
            members: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let r = db
            .shard(self.key)
            .write_zset(self.key, now_ms, None, |z, _| {
                let n = self
                    .members
                    .iter()
                    .filter(|m| z.remove(m).is_some())
                    .count() as i64;
                (n, n > 0)
            });
        match r {
            Ok(n) => out.int(n.unwrap_or(0)),
            Err(e) => out.error(e),
        }
    }
}
