//! SREM key member [member ...] (the key goes when its last member does)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct SRem<'a> {
    key: &'a [u8],
    members: &'a [&'a [u8]],
}

impl<'a> Command<'a> for SRem<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(SRem {
            key,
            members: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        // Removing nothing is not a write (WATCH keeps its version).
        match ks.get_set(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.int(0),
            Ok(Some(s)) if !self.members.iter().any(|m| s.contains(m)) => return out.int(0),
            Ok(Some(_)) => {}
        }
        let r = ks.write_set(self.key, now_ms, None, |s, _| {
            self.members.iter().filter(|m| s.remove(m)).count() as i64
        });
        match r {
            Ok(n) => out.int(n.unwrap_or(0)),
            Err(e) => out.error(e),
        }
    }
}
