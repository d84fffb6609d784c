//! SUNION key [key ...], SDIFF key [key ...], and their STORE forms
//! (SUNIONSTORE / SDIFFSTORE destination key [key ...]).
//!
//! As in Redis, the result is built into a fresh set that starts as an
//! intset and converts as members arrive, so its encoding (and, for an
//! intset, its ascending order) is Redis'; a missing key is an empty set
//! and any key of another type is WRONGTYPE. The STORE forms replace the
//! destination (its deadline too), or delete it when the result is empty.

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::set::Set;

pub const UNION: u8 = 0;
pub const DIFF: u8 = 1;

/// `OP`: [`UNION`] or [`DIFF`]; `STORE`: the first argument is the
/// destination and the reply is the result's size.
pub struct SUnion<'a, const OP: u8, const STORE: bool> {
    dest: Option<&'a [u8]>,
    keys: &'a [&'a [u8]],
}

pub type SDiff<'a> = SUnion<'a, DIFF, false>;
pub type SUnionStore<'a> = SUnion<'a, UNION, true>;
pub type SDiffStore<'a> = SUnion<'a, DIFF, true>;

/// The sets at `keys`, copied out (they may live in different shards);
/// `None` for a missing key.
pub(crate) fn read_sets(
    db: &mut impl Db,
    keys: &[&[u8]],
    now_ms: u64,
) -> Result<Vec<Option<Set>>, &'static str> {
    keys.iter()
        .map(|k| Ok(db.shard(k).get_set(k, now_ms)?.cloned()))
        .collect()
}

/// The union of `sets`, built as Redis builds it.
pub(crate) fn union<'s>(sets: impl IntoIterator<Item = &'s Set>, seed: u64) -> Set {
    let mut out = Set::empty();
    for s in sets {
        for m in s.iter() {
            // A computed set cannot outgrow MEMBERS_MAX before its sources.
            let _ = m.with(|b| out.add(b, seed));
        }
    }
    out
}

/// The members of the first set in none of the others.
fn diff(sets: &[Option<Set>], seed: u64) -> Set {
    let mut out = Set::empty();
    let Some(Some(first)) = sets.first() else {
        return out;
    };
    for m in first.iter() {
        m.with(|b| {
            if !sets[1..].iter().flatten().any(|s| s.contains(b)) {
                let _ = out.add(b, seed);
            }
        });
    }
    out
}

/// Writes a computed set: stored at `dest` (reply: its size), or sent.
pub(crate) fn finish(
    db: &mut impl Db,
    dest: Option<&[u8]>,
    result: Set,
    now_ms: u64,
    out: &mut impl Reply,
) {
    match dest {
        Some(d) => {
            let n = result.len() as i64;
            db.shard(d).store_set(d, result, now_ms);
            out.int(n)
        }
        None => super::smembers::reply_members(Some(&result), out),
    }
}

/// The destination (the STORE forms) and the source keys of a set
/// algebra command.
pub(crate) type Operands<'a> = (Option<&'a [u8]>, &'a [&'a [u8]]);

pub(crate) fn operands<'a>(argv: &'a [&'a [u8]], store: bool) -> Result<Operands<'a>, CmdError> {
    super::arg(argv, 1)?;
    if store {
        super::arg(argv, 2)?;
        Ok((Some(argv[1]), &argv[2..]))
    } else {
        Ok((None, &argv[1..]))
    }
}

impl<'a, const OP: u8, const STORE: bool> Command<'a> for SUnion<'a, OP, STORE> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let (dest, keys) = operands(argv, STORE)?;
        Ok(SUnion { dest, keys })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let sets = match read_sets(db, self.keys, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        let seed = db.shard(self.dest.unwrap_or(self.keys[0])).field_seed();
        let result = if OP == UNION {
            union(sets.iter().flatten(), seed)
        } else {
            diff(&sets, seed)
        };
        finish(db, self.dest, result, now_ms, out);
    }
}
