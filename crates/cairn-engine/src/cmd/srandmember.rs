//! SRANDMEMBER key [count]
//!
//! A positive count gives that many distinct members (the whole set when
//! it has no more), a negative one that many independent draws. A read:
//! draws come from the serving node's seeded generator, like HRANDFIELD.
//!
//! Bounded: a negative count beyond [`RANDFIELD_COUNT_MAX`] is refused
//! (Redis answers it, however large; cairn will not build a reply of
//! unbounded size).

use super::hrandfield::{distinct, RANDFIELD_COUNT_MAX};
use super::{CmdError, Command, Db, SYNTAX};
use crate::keyspace::xorshift_star;
use crate::reply::Reply;
use crate::set::{Member, Set};

/// Redis 7.0's wording for a count of i64::MIN (HRANDFIELD's too).
pub(crate) const COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

pub struct SRandMember<'a> {
    key: &'a [u8],
    /// `None`: one member, a bulk string (or null).
    count: Option<i64>,
}

impl<'a> Command<'a> for SRandMember<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        if argv.len() > 3 {
            return Err(SYNTAX.into());
        }
        let count = argv.get(2).map(|c| super::int_arg(c)).transpose()?;
        match count {
            Some(i64::MIN) => return Err(COUNT_RANGE.into()),
            Some(c) if c < 0 && c.unsigned_abs() > RANDFIELD_COUNT_MAX => {
                return Err(CmdError(
                    format!("ERR count is out of range (at most {RANDFIELD_COUNT_MAX} draws with a negative count)").into(),
                ))
            }
            _ => {}
        }
        Ok(SRandMember { key, count })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let mut rng = ks.rng_state();
        let seed = ks.field_seed();
        let s = match ks.get_set(self.key, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        match (s, self.count) {
            (None, None) => out.null(),
            (None, Some(_)) | (Some(_), Some(0)) => out.array(0),
            (Some(s), None) => {
                let i = (xorshift_star(&mut rng) % s.len() as u64) as usize;
                match s.nth(i) {
                    Some(m) => m.with(|b| out.bulk(b)),
                    None => out.null(),
                }
            }
            (Some(s), Some(c)) if c > 0 && c as u64 >= s.len() as u64 => {
                // The whole set, rebuilt as Redis does (a union of one),
                // an array even in RESP3 (as Redis 7).
                let all = super::sunion::union([s], seed);
                out.array(all.len());
                for m in all.iter() {
                    m.with(|b| out.bulk(b));
                }
            }
            (Some(s), Some(c)) => {
                let picks = if c < 0 {
                    (0..c.unsigned_abs())
                        .map(|_| (xorshift_star(&mut rng) % s.len() as u64) as usize)
                        .collect()
                } else {
                    distinct(s.len(), c as usize, &mut rng)
                };
                let members = members_at(s, &picks);
                out.array(members.len());
                for m in members {
                    m.with(|b| out.bulk(b));
                }
            }
        }
        ks.set_rng_state(rng);
    }
}

/// The members at positions `picks` of the set's order (a listpack is
/// walked once, so each pick is O(1) on every encoding).
pub(crate) fn members_at<'s>(s: &'s Set, picks: &[usize]) -> Vec<Member<'s>> {
    let listed: Vec<Member<'s>> = if s.is_listpack() {
        s.iter().collect()
    } else {
        Vec::new()
    };
    picks
        .iter()
        .filter_map(|&i| listed.get(i).copied().or_else(|| s.nth(i)))
        .collect()
}
