//! SINTER key [key ...], SINTERSTORE destination key [key ...]
//!
//! As in Redis, the smallest set is walked and each member kept when
//! every other set holds it, so SINTER answers in the smallest set's own
//! order; SINTERSTORE builds the result into a fresh set (an intset
//! first, converting as members arrive) and replaces the destination, or
//! deletes it when the result is empty. A missing key makes the result
//! empty, but every key is still checked for WRONGTYPE.

use super::sunion::{finish, read_sets};
use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::set::{Member, Set};

/// `STORE`: the first argument is the destination.
pub struct SInter<'a, const STORE: bool> {
    dest: Option<&'a [u8]>,
    keys: &'a [&'a [u8]],
}

pub type SInterStore<'a> = SInter<'a, true>;

/// Members of the intersection in the smallest set's order, at most
/// `limit` of them (0: all). Empty when a set is missing.
pub(crate) fn intersection(sets: &[Option<Set>], limit: usize) -> Vec<Member<'_>> {
    let Some(mut present) = sets
        .iter()
        .map(|s| s.as_ref())
        .collect::<Option<Vec<&Set>>>()
    else {
        return Vec::new();
    };
    present.sort_by_key(|s| s.len());
    let Some((smallest, others)) = present.split_first() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for m in smallest.iter() {
        if limit != 0 && found.len() >= limit {
            break;
        }
        if m.with(|b| others.iter().all(|s| s.contains(b))) {
            found.push(m);
        }
    }
    found
}

impl<'a, const STORE: bool> Command<'a> for SInter<'a, STORE> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let (dest, keys) = super::sunion::operands(argv, STORE)?;
        Ok(SInter { dest, keys })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let sets = match read_sets(db, self.keys, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        let found = intersection(&sets, 0);
        let Some(dest) = self.dest else {
            out.set(found.len());
            for m in found {
                m.with(|b| out.bulk(b));
            }
            return;
        };
        let seed = db.shard(dest).field_seed();
        let mut result = Set::empty();
        for m in found {
            let _ = m.with(|b| result.add(b, seed));
        }
        finish(db, Some(dest), result, now_ms, out);
    }
}
