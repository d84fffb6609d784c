//! ZRANDMEMBER key [count [WITHSCORES]]
//!
//! A positive count gives that many distinct members (the whole zset,
//! highest first, when it has no more), a negative one that many independent
//! draws. A read: draws come from the serving node's seeded generator,
//! like SRANDMEMBER and HRANDFIELD (a write never draws from it).
//!
//! Bounded: a negative count beyond [`RANDFIELD_COUNT_MAX`] is refused
//! (Redis answers it, however large; cairn will not build a reply of
//! unbounded size).

use super::hrandfield::{distinct_where, RANDFIELD_COUNT_MAX};
use super::srandmember::COUNT_RANGE;
use super::{is, CmdError, Command, Db, SYNTAX};
use crate::keyspace::xorshift_star;
use crate::reply::Reply;
use crate::zset::ZSet;

pub struct ZRandMember<'a> {
    key: &'a [u8],
    /// `None`: one member, a bulk string (or null).
    count: Option<i64>,
    withscores: bool,
}

impl<'a> Command<'a> for ZRandMember<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let count = argv.get(2).map(|c| super::int_arg(c)).transpose()?;
        if count == Some(i64::MIN) {
            return Err(COUNT_RANGE.into());
        }
        let withscores = match argv.get(3) {
            None => false,
            Some(w) if is(w, "WITHSCORES") && argv.len() == 4 => true,
            Some(_) => return Err(SYNTAX.into()),
        };
        if let Some(c) = count {
            // Redis' range (scores are paired in the reply), then cairn's
            // reply bound.
            if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c) {
                return Err("ERR value is out of range".into());
            }
            if c < 0 && c.unsigned_abs() > RANDFIELD_COUNT_MAX {
                return Err(CmdError(
                    format!("ERR count is out of range (at most {RANDFIELD_COUNT_MAX} draws with a negative count)").into(),
                ));
            }
        }
        Ok(ZRandMember {
            key,
            count,
            withscores,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let mut rng = ks.rng_state();
        let z = match ks.get_zset(self.key, now_ms) {
            Ok(z) => z,
            Err(e) => return out.error(e),
        };
        match (z, self.count) {
            (None, None) => out.null(),
            (None, Some(_)) | (Some(_), Some(0)) => out.array(0),
            (Some(z), None) => match z.stored(draw(z, &mut rng)) {
                Some((_, m)) => out.bulk(m),
                None => out.null(),
            },
            (Some(z), Some(c)) => self.reply_many(z, c, &mut rng, out),
        }
        ks.set_rng_state(rng);
    }
}

/// Draws after which [`draw`] stops drawing (a hole is at most every
/// other position, so each draw misses with probability below 1/2).
const DRAWS_MAX: usize = 64;

/// A uniformly drawn storage position holding a member (a listpack has
/// no holes; a skiplist's table may): positions are drawn until one
/// does, at most [`DRAWS_MAX`] times, and then the first member at or
/// after the last draw is taken. With no holes it is one draw, as
/// before holes existed.
fn draw(z: &ZSet, rng: &mut u64) -> usize {
    let n = z.stored_len().max(1);
    let mut i = 0;
    for _ in 0..DRAWS_MAX {
        i = (xorshift_star(rng) % n as u64) as usize;
        if z.holds(i) {
            return i;
        }
    }
    (0..n)
        .map(|d| (i + d) % n)
        .find(|&j| z.holds(j))
        .unwrap_or(i)
}

impl ZRandMember<'_> {
    /// One member of the reply: `[member, score]` nested in RESP3, flat
    /// in RESP2, the member alone without WITHSCORES.
    fn entry(&self, out: &mut impl Reply, nested: bool, s: f64, m: &[u8]) {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        if self.withscores {
            out.double(s);
        }
    }

    fn reply_many(&self, z: &ZSet, count: i64, rng: &mut u64, out: &mut impl Reply) {
        let len = z.len();
        let nested = self.withscores && out.resp3();
        let per = if self.withscores && !nested { 2 } else { 1 };
        if count > 0 && count as u64 >= len as u64 {
            // The whole zset, highest first (Redis' CASE 2 walks it with
            // its set-operation iterator, from the tail), so the reply is
            // the same on every node.
            out.array(len * per);
            z.for_range(0, len, true, |s, m| self.entry(out, nested, s, m));
            return;
        }
        // A listpack is walked once into a list (at most 128 members), so
        // each draw is O(1) in either encoding.
        let listed: Vec<(f64, Vec<u8>)> = match z {
            ZSet::Listpack(_) => z.to_vec(),
            ZSet::Skiplist(_) => Vec::new(),
        };
        let picks: Vec<usize> = if count < 0 {
            let n = count.unsigned_abs() as usize;
            (0..n).map(|_| draw(z, rng)).collect()
        } else {
            distinct_where(z.stored_len(), count as usize, rng, |i| z.holds(i))
        };
        out.array(picks.len() * per);
        for i in picks {
            let item = match listed.get(i) {
                Some((s, m)) => Some((*s, m.as_slice())),
                None => z.stored(i),
            };
            match item {
                Some((s, m)) => self.entry(out, nested, s, m),
                None => out.null(),
            }
        }
    }
}
