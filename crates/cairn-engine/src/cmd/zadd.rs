//! ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...],
//! and ZINCRBY key increment member (ZADD's INCR form, parsed by the same
//! code from the increment on, as Redis does: `ZINCRBY k nx m` is a
//! syntax error there too).
//!
//! Every check Redis makes before touching the key is made at parse
//! time, in its order (pairs, option conflicts, INCR's single pair, the
//! scores), so a node refuses a bad ZADD before proposing it. A ZADD that
//! adds and updates nothing is no write (WATCH keeps its version).

use super::{is, CmdError, Command, Db, NOT_FLOAT, SYNTAX};
use crate::reply::Reply;
use crate::zset::ZSet;

pub const XX_NX: &str = "ERR XX and NX options at the same time are not compatible";
pub const GT_LT_NX: &str = "ERR GT, LT, and/or NX options at the same time are not compatible";
pub const INCR_PAIR: &str = "ERR INCR option supports a single increment-element pair";
pub const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";
/// Why a member could not be added: the zset holds `MEMBERS_MAX` already.
pub(crate) const ZSET_FULL: &str = "ERR zset has too many members";

/// `ZINCRBY`: the form whose options start at the increment (INCR set).
pub struct ZAdd<'a, const ZINCRBY: bool> {
    key: &'a [u8],
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
    pairs: Vec<(f64, &'a [u8])>,
}

pub type ZIncrBy<'a> = ZAdd<'a, true>;

impl<'a, const ZINCRBY: bool> Command<'a> for ZAdd<'a, ZINCRBY> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let mut z = ZAdd {
            key,
            nx: false,
            xx: false,
            gt: false,
            lt: false,
            ch: false,
            incr: ZINCRBY,
            pairs: Vec::new(),
        };
        let mut at = 2;
        while let Some(opt) = argv.get(at) {
            if is(opt, "NX") {
                z.nx = true;
            } else if is(opt, "XX") {
                z.xx = true;
            } else if is(opt, "CH") {
                z.ch = true;
            } else if is(opt, "INCR") {
                z.incr = true;
            } else if is(opt, "GT") {
                z.gt = true;
            } else if is(opt, "LT") {
                z.lt = true;
            } else {
                break;
            }
            at += 1;
        }
        let rest = &argv[at.min(argv.len())..];
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(SYNTAX.into());
        }
        if z.nx && z.xx {
            return Err(XX_NX.into());
        }
        if ((z.gt || z.lt) && z.nx) || (z.gt && z.lt) {
            return Err(GT_LT_NX.into());
        }
        if z.incr && rest.len() > 2 {
            return Err(INCR_PAIR.into());
        }
        z.pairs.reserve(rest.len() / 2);
        for pair in rest.chunks(2) {
            let score = crate::num::parse_score(pair[0]).ok_or(CmdError::from(NOT_FLOAT))?;
            z.pairs.push((score, pair[1]));
        }
        Ok(z)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let exists = match ks.get_zset(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(z) => z.is_some(),
        };
        let r = if !exists && self.xx {
            // No key and XX: nothing to do, nothing created.
            Ok(Some(Ok(Added::default())))
        } else {
            let first = self.pairs[0].1;
            let make = |seed| ZSet::for_member(first, seed);
            ks.write_zset(self.key, now_ms, Some(&make), |z, seed| {
                let r = self.add(z, seed);
                let changed = r.as_ref().is_ok_and(|a| a.added + a.updated > 0);
                (r, changed)
            })
        };
        match r {
            Err(e) => out.error(e),
            Ok(None) => out.int(0),
            Ok(Some(Err(e))) => out.error(e),
            Ok(Some(Ok(a))) if self.incr => match a.last {
                Some(score) if a.processed > 0 => out.double(score),
                _ => out.null(),
            },
            Ok(Some(Ok(a))) => out.int(if self.ch {
                a.added + a.updated
            } else {
                a.added
            }),
        }
    }
}

#[derive(Default)]
struct Added {
    added: i64,
    updated: i64,
    processed: i64,
    last: Option<f64>,
}

impl<const ZINCRBY: bool> ZAdd<'_, ZINCRBY> {
    /// Redis' `zsetAdd` for each pair, in order.
    fn add(&self, z: &mut ZSet, seed: u64) -> Result<Added, &'static str> {
        let mut a = Added::default();
        for &(score, member) in &self.pairs {
            match z.score(member) {
                Some(cur) => {
                    if self.nx {
                        continue;
                    }
                    let new = if self.incr { score + cur } else { score };
                    if new.is_nan() {
                        return Err(NAN_SCORE);
                    }
                    if (self.lt && new >= cur) || (self.gt && new <= cur) {
                        continue;
                    }
                    a.processed += 1;
                    a.last = Some(new);
                    if new != cur {
                        z.insert(member, new, seed).map_err(|_| ZSET_FULL)?;
                        a.updated += 1;
                    }
                }
                None => {
                    if self.xx {
                        continue;
                    }
                    z.insert(member, score, seed).map_err(|_| ZSET_FULL)?;
                    a.added += 1;
                    a.processed += 1;
                    a.last = Some(score);
                }
            }
        }
        Ok(a)
    }
}
