//! LTRIM key start stop: keeps only that range (the key goes when it is
//! empty).

use super::{CmdError, Command, Db};
use crate::list::resolve_range;
use crate::reply::Reply;

pub struct LTrim<'a> {
    key: &'a [u8],
    start: i64,
    stop: i64,
}

impl<'a> Command<'a> for LTrim<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        Ok(LTrim {
            key,
            start: super::int_arg(super::arg(argv, 2)?)?,
            stop: super::int_arg(super::arg(argv, 3)?)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let r = db.shard(self.key).write_list(self.key, now_ms, false, |l| {
            l.retain_range(resolve_range(self.start, self.stop, l.len()))
        });
        match r {
            Ok(_) => out.ok(),
            Err(e) => out.error(e),
        }
    }
}
