//! ZCARD key, ZSCORE key member, ZMSCORE key member [member ...]: scores
//! as doubles (RESP3) or bulk strings in Redis 7.0's `%.17g` (RESP2).

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct ZCard<'a> {
    key: &'a [u8],
}

impl<'a> Command<'a> for ZCard<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(ZCard {
            key: super::arg(argv, 1)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(z) => out.int(z.map_or(0, |z| z.len() as i64)),
            Err(e) => out.error(e),
        }
    }
}

/// `MULTI`: ZMSCORE (an array, a null for each missing member), else
/// ZSCORE (one score or a null).
pub struct ZScore<'a, const MULTI: bool> {
    key: &'a [u8],
    members: &'a [&'a [u8]],
}

pub type ZMScore<'a> = ZScore<'a, true>;

impl<'a, const MULTI: bool> Command<'a> for ZScore<'a, MULTI> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(ZScore {
            key,
            members: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let z = match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(z) => z,
            Err(e) => return out.error(e),
        };
        if MULTI {
            out.array(self.members.len());
        }
        for m in self.members {
            match z.and_then(|z| z.score(m)) {
                Some(s) => out.double(s),
                None => out.null(),
            }
        }
    }
}

/// ZRANK key member, ZREVRANK key member (`REV`): the 0-based rank, or a
/// null (Redis 7.0: no WITHSCORE).
pub struct ZRank<'a, const REV: bool> {
    key: &'a [u8],
    member: &'a [u8],
}

pub type ZRevRank<'a> = ZRank<'a, true>;

impl<'a, const REV: bool> Command<'a> for ZRank<'a, REV> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(ZRank {
            key: super::arg(argv, 1)?,
            member: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let z = match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(z) => z,
            Err(e) => return out.error(e),
        };
        match z.and_then(|z| Some((z.rank(self.member)?, z.len()))) {
            Some((r, len)) => out.int(if REV { len - 1 - r } else { r } as i64),
            None => out.null(),
        }
    }
}
