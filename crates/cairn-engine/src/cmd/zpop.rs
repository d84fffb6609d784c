//! ZPOPMIN / ZPOPMAX key [count], ZMPOP numkeys key [key ...] MIN|MAX
//! [COUNT count], and the blocking BZPOPMIN / BZPOPMAX key [key ...]
//! timeout and BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]
//! as the keyspace sees them: one *attempt* each (the non-blocking pop,
//! or the null a timeout gives); the server waits and retries
//! (crates/cairn-server/src/listwait.rs), as for BLPOP.
//!
//! Reply shapes are Redis 7.0's `genericZpopCommand`: ZPOPMIN without a
//! count is a flat `[member, score]`; with one, flat pairs in RESP2 and
//! nested `[member, score]` pairs in RESP3; BZPOPMIN a flat `[key, member,
//! score]`; ZMPOP and BZMPOP `[key, [[member, score], ...]]` in both.

use super::blpop::{timeout_arg, Blocking};
use super::lmpop::{COUNT, NUMKEYS};
use super::spop::NOT_POSITIVE;
use super::{is, CmdError, Command, Db, SYNTAX};
use crate::reply::Reply;

/// Pops up to `count` members from the low (`max` false) or high end of
/// the zset at `key` (which the caller found holds one), deleting it when
/// emptied; the popped members in pop order.
fn pop(
    db: &mut impl Db,
    key: &[u8],
    now_ms: u64,
    max: bool,
    count: usize,
) -> Result<Vec<(f64, Vec<u8>)>, &'static str> {
    let r = db.shard(key).write_zset(key, now_ms, None, |z, _| {
        let n = count.min(z.len());
        let mut items = if max {
            z.remove_range(z.len() - n, z.len())
        } else {
            z.remove_range(0, n)
        };
        if max {
            items.reverse();
        }
        let changed = !items.is_empty();
        (items, changed)
    })?;
    Ok(r.unwrap_or_default())
}

/// The first key that holds a value, if it is a zset (Redis picks the
/// first existing key and checks only its type).
fn first_zset<'k>(
    db: &mut impl Db,
    keys: &[&'k [u8]],
    now_ms: u64,
) -> Result<Option<&'k [u8]>, &'static str> {
    for &k in keys {
        if db.shard(k).get_zset(k, now_ms)?.is_some() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// `member, score` for each popped member, each pair an array when
/// `nested`.
fn pairs(out: &mut impl Reply, items: &[(f64, Vec<u8>)], nested: bool) {
    for (s, m) in items {
        if nested {
            out.array(2);
        }
        out.bulk(m);
        out.double(*s);
    }
}

/// ZPOPMIN (`MAX` false) and ZPOPMAX.
pub struct ZPop<'a, const MAX: bool> {
    key: &'a [u8],
    /// `None`: one member, a flat pair.
    count: Option<usize>,
}

pub type ZPopMin<'a> = ZPop<'a, false>;
pub type ZPopMax<'a> = ZPop<'a, true>;

impl<'a, const MAX: bool> Command<'a> for ZPop<'a, MAX> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        if argv.len() > 3 {
            return Err(SYNTAX.into());
        }
        // Anything but a non-negative integer, a word too, is "out of
        // range" here (Redis' getPositiveLongFromObjectOrReply).
        let count = match argv.get(2) {
            None => None,
            Some(c) => match crate::num::parse_i64(c) {
                Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => return Err(NOT_POSITIVE.into()),
            },
        };
        Ok(ZPop { key, count })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_zset(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.array(0),
            Ok(Some(_)) if self.count == Some(0) => return out.array(0),
            Ok(Some(_)) => {}
        }
        let items = match pop(db, self.key, now_ms, MAX, self.count.unwrap_or(1)) {
            Ok(items) => items,
            Err(e) => return out.error(e),
        };
        let nested = self.count.is_some() && out.resp3();
        out.array(items.len() * if nested { 1 } else { 2 });
        pairs(out, &items, nested);
    }
}

/// ZMPOP's arguments from `numkeys` at `argv[at]` (ZMPOP 1, BZMPOP 2),
/// checked in Redis' order.
pub struct ZMPop<'a> {
    pub(crate) keys: &'a [&'a [u8]],
    max: bool,
    count: usize,
}

impl<'a> ZMPop<'a> {
    pub(crate) fn parse_at(argv: &'a [&'a [u8]], at: usize) -> Result<Self, CmdError> {
        let numkeys = match crate::num::parse_i64(super::arg(argv, at)?) {
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => return Err(NUMKEYS.into()),
        };
        let where_at = at.saturating_add(numkeys).saturating_add(1);
        let max = match argv.get(where_at) {
            Some(w) if is(w, "MIN") => false,
            Some(w) if is(w, "MAX") => true,
            _ => return Err(SYNTAX.into()),
        };
        let mut count = None;
        let mut i = where_at + 1;
        while i < argv.len() {
            match argv.get(i + 1) {
                Some(v) if count.is_none() && is(argv[i], "COUNT") => {
                    count = match crate::num::parse_i64(v) {
                        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        _ => return Err(COUNT.into()),
                    };
                }
                _ => return Err(SYNTAX.into()),
            }
            i += 2;
        }
        Ok(ZMPop {
            keys: &argv[at + 1..where_at],
            max,
            count: count.unwrap_or(1),
        })
    }

    pub(crate) fn reply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let key = match first_zset(db, self.keys, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.null_array(),
            Ok(Some(k)) => k,
        };
        match pop(db, key, now_ms, self.max, self.count) {
            Err(e) => out.error(e),
            Ok(items) => {
                out.array(2);
                out.bulk(key);
                out.array(items.len());
                pairs(out, &items, true);
            }
        }
    }
}

impl<'a> Command<'a> for ZMPop<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        ZMPop::parse_at(argv, 1)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.reply(db, now_ms, out)
    }
}

/// BZPOPMIN (`MAX` false) and BZPOPMAX: `[key, member, score]` from the
/// first non-empty zset.
pub struct BZPop<'a, const MAX: bool> {
    keys: &'a [&'a [u8]],
    timeout_ms: u64,
}

pub type BZPopMin<'a> = BZPop<'a, false>;
pub type BZPopMax<'a> = BZPop<'a, true>;

impl<'a, const MAX: bool> Command<'a> for BZPop<'a, MAX> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 2)?;
        let timeout_ms = timeout_arg(argv[argv.len() - 1])?;
        Ok(BZPop {
            keys: &argv[1..argv.len() - 1],
            timeout_ms,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let key = match first_zset(db, self.keys, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => return out.null_array(),
            Ok(Some(k)) => k,
        };
        match pop(db, key, now_ms, MAX, 1) {
            Err(e) => out.error(e),
            Ok(items) => {
                out.array(1 + 2 * items.len());
                out.bulk(key);
                pairs(out, &items, false);
            }
        }
    }
}

impl<'a, const MAX: bool> Blocking<'a> for BZPop<'a, MAX> {
    fn wait_keys(&self) -> &[&'a [u8]] {
        self.keys
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
    fn zset(&self) -> bool {
        true
    }
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]: ZMPOP's
/// checks first, then the timeout's (Redis' order).
pub struct BZMPop<'a> {
    pop: ZMPop<'a>,
    timeout_ms: u64,
}

impl<'a> Command<'a> for BZMPop<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let t = super::arg(argv, 1)?;
        let pop = ZMPop::parse_at(argv, 2)?;
        Ok(BZMPop {
            pop,
            timeout_ms: timeout_arg(t)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.pop.reply(db, now_ms, out)
    }
}

impl<'a> Blocking<'a> for BZMPop<'a> {
    fn wait_keys(&self) -> &[&'a [u8]] {
        self.pop.keys
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
    fn zset(&self) -> bool {
        true
    }
}
