//! SADD key member [member ...]
//!
//! A new set takes its encoding from the first member and the number of
//! members given, and an existing one converts before the adds when they
//! would surely outgrow it, as Redis' `setTypeCreate` and
//! `setTypeMaybeConvert` do (duplicates included).

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::set::Set;

/// Why a member could not be added: the set holds `MEMBERS_MAX` already.
pub(crate) const SET_FULL: &str = "ERR set has too many members";

pub struct SAdd<'a> {
    key: &'a [u8],
    members: &'a [&'a [u8]],
}

impl<'a> Command<'a> for SAdd<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        super::arg(argv, 2)?;
        Ok(SAdd {
            key,
            members: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let members = self.members;
        // Adding nothing (and converting nothing) is not a write: WATCH
        // keeps its version, as in Redis.
        let make = |seed| Set::for_members(members[0], members.len(), seed);
        let r = ks.write_set_if(self.key, now_ms, Some(&make), |s, seed| {
            let converted = s.outgrown_by(members.len());
            s.reserve(members.len(), seed);
            let mut added = 0;
            for m in members {
                match s.add(m, seed) {
                    Ok(new) => added += i64::from(new),
                    Err(_) => return (Err(SET_FULL), converted || added > 0),
                }
            }
            (Ok(added), converted || added > 0)
        });
        match r.and_then(|r| r.unwrap_or(Ok(0))) {
            Ok(n) => out.int(n),
            Err(e) => out.error(e),
        }
    }
}
