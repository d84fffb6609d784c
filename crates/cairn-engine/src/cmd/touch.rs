//! TOUCH key [key ...]: refreshes access time, returns keys found

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct Touch<'a> {
    keys: &'a [&'a [u8]],
}

impl<'a> Command<'a> for Touch<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 1)?;
        Ok(Touch { keys: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let mut n = 0;
        for k in self.keys {
            let ks = db.shard(k);
            if let Some(pos) = ks.find(k, now_ms) {
                ks.touch_at(pos, now_ms);
                n += 1;
            }
        }
        out.int(n)
    }
}
