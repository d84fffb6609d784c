//! ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count]
//! [WITHSCORES], ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV]
//! [LIMIT offset count], and the older forms Redis runs through the same
//! code: ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX,
//! ZREVRANGEBYLEX. Also the range arguments ZCOUNT, ZLEXCOUNT and the
//! ZREMRANGEBY* commands share.
//!
//! Redis' `zrangeGenericCommand`, check for check: options first (LIMIT's
//! numbers among them), then the conflicts, then the range, then the key.
//! A score or lex range is the interval of ranks its members occupy, so
//! LIMIT is arithmetic on ranks: a negative offset gives nothing, a
//! negative count everything (Redis' loops do exactly that).

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::reply::Reply;
use crate::zset::ZSet;

pub const NOT_FLOAT_RANGE: &str = "ERR min or max is not a float";
pub const NOT_LEX_RANGE: &str = "ERR min or max not valid string range item";
pub const LIMIT_BY_RANK: &str =
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
pub const LEX_WITHSCORES: &str =
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX";

/// A score bound: the value, and whether it is exclusive (`(`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreBound(pub f64, pub bool);

/// Redis' `zslParseRange` for one bound.
pub fn score_bound(arg: &[u8]) -> Option<ScoreBound> {
    match arg.split_first() {
        Some((b'(', rest)) => crate::num::parse_range_score(rest).map(|v| ScoreBound(v, true)),
        _ => crate::num::parse_range_score(arg).map(|v| ScoreBound(v, false)),
    }
}

/// A lex bound (`-`, `+`, `[member`, `(member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LexBound<'a> {
    Min,
    Max,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

/// Redis' `zslParseLexRangeItem`.
pub fn lex_bound(arg: &[u8]) -> Option<LexBound<'_>> {
    match arg {
        b"-" => Some(LexBound::Min),
        b"+" => Some(LexBound::Max),
        [b'[', rest @ ..] => Some(LexBound::Incl(rest)),
        [b'(', rest @ ..] => Some(LexBound::Excl(rest)),
        _ => None,
    }
}

/// A parsed range: ranks (as given, maybe negative), scores or members.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range<'a> {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound<'a>, LexBound<'a>),
}

impl<'a> Range<'a> {
    pub fn score(min: &[u8], max: &[u8]) -> Result<Range<'a>, CmdError> {
        match (score_bound(min), score_bound(max)) {
            (Some(a), Some(b)) => Ok(Range::Score(a, b)),
            _ => Err(NOT_FLOAT_RANGE.into()),
        }
    }

    pub fn lex(min: &'a [u8], max: &'a [u8]) -> Result<Range<'a>, CmdError> {
        match (lex_bound(min), lex_bound(max)) {
            (Some(a), Some(b)) => Ok(Range::Lex(a, b)),
            _ => Err(NOT_LEX_RANGE.into()),
        }
    }

    pub fn rank(start: &[u8], stop: &[u8]) -> Result<Range<'a>, CmdError> {
        Ok(Range::Rank(super::int_arg(start)?, super::int_arg(stop)?))
    }

    /// The ranks `lo..hi` (ascending) the range covers in `z`; empty when
    /// `lo >= hi`. Ranks count as Redis' ZRANGE does: negative from the
    /// end, clamped, an empty range when start > stop after that.
    pub fn ranks(&self, z: &ZSet) -> (usize, usize) {
        let len = z.len();
        match *self {
            Range::Rank(start, stop) => rank_interval(start, stop, len),
            Range::Score(ScoreBound(min, minex), ScoreBound(max, maxex)) => {
                let lo = z.count_score_below(min, minex);
                let hi = z.count_score_below(max, !maxex);
                (lo, hi.max(lo))
            }
            Range::Lex(min, max) => {
                let lo = match min {
                    LexBound::Min => 0,
                    LexBound::Max => len,
                    LexBound::Incl(m) => z.count_lex_below(m, false),
                    LexBound::Excl(m) => z.count_lex_below(m, true),
                };
                let hi = match max {
                    LexBound::Min => 0,
                    LexBound::Max => len,
                    LexBound::Incl(m) => z.count_lex_below(m, true),
                    LexBound::Excl(m) => z.count_lex_below(m, false),
                };
                (lo, hi.max(lo))
            }
        }
    }
}

/// Redis' index sanitising (ZRANGE, ZREMRANGEBYRANK): `start..=stop`
/// with negative indexes from the end, as ascending ranks `lo..hi`.
pub fn rank_interval(start: i64, stop: i64, len: usize) -> (usize, usize) {
    let n = len as i64;
    let start = if start < 0 {
        n.saturating_add(start)
    } else {
        start
    }
    .max(0);
    let stop = if stop < 0 {
        n.saturating_add(stop)
    } else {
        stop
    };
    if start > stop || start >= n {
        return (0, 0);
    }
    let stop = stop.min(n - 1);
    (start as usize, stop as usize + 1)
}

/// Which command of the family, fixing what its options may change.
pub const ZRANGE: u8 = 0;
pub const ZRANGESTORE: u8 = 1;
pub const ZRANGEBYSCORE: u8 = 2;
pub const ZREVRANGEBYSCORE: u8 = 3;
pub const ZRANGEBYLEX: u8 = 4;
pub const ZREVRANGEBYLEX: u8 = 5;
pub const ZREVRANGE: u8 = 6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

pub struct ZRangeOf<'a, const FORM: u8> {
    dest: Option<&'a [u8]>,
    key: &'a [u8],
    range: Range<'a>,
    rev: bool,
    withscores: bool,
    offset: i64,
    /// Negative: no limit.
    limit: i64,
}

pub type ZRange<'a> = ZRangeOf<'a, ZRANGE>;
pub type ZRangeStore<'a> = ZRangeOf<'a, ZRANGESTORE>;
pub type ZRangeByScore<'a> = ZRangeOf<'a, ZRANGEBYSCORE>;
pub type ZRevRangeByScore<'a> = ZRangeOf<'a, ZREVRANGEBYSCORE>;
pub type ZRangeByLex<'a> = ZRangeOf<'a, ZRANGEBYLEX>;
pub type ZRevRangeByLex<'a> = ZRangeOf<'a, ZREVRANGEBYLEX>;
pub type ZRevRange<'a> = ZRangeOf<'a, ZREVRANGE>;

impl<'a, const FORM: u8> Command<'a> for ZRangeOf<'a, FORM> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let store = FORM == ZRANGESTORE;
        let at = if store { 2 } else { 1 };
        let key = super::arg(argv, at)?;
        let (mut min_i, mut max_i) = (at + 1, at + 2);
        super::arg(argv, max_i)?;
        let (mut by, mut rev) = match FORM {
            ZRANGEBYSCORE => (By::Score, Some(false)),
            ZREVRANGEBYSCORE => (By::Score, Some(true)),
            ZRANGEBYLEX => (By::Lex, Some(false)),
            ZREVRANGEBYLEX => (By::Lex, Some(true)),
            ZREVRANGE => (By::Rank, Some(true)),
            _ => (By::Auto, None),
        };
        let (mut withscores, mut offset, mut limit) = (false, 0, -1);
        let mut j = at + 3;
        while j < argv.len() {
            let a = argv[j];
            let left = argv.len() - j - 1;
            if !store && is(a, "WITHSCORES") {
                withscores = true;
            } else if is(a, "LIMIT") && left >= 2 {
                offset = super::int_arg(argv[j + 1])?;
                limit = super::int_arg(argv[j + 2])?;
                j += 2;
            } else if rev.is_none() && is(a, "REV") {
                rev = Some(true);
            } else if by == By::Auto && is(a, "BYLEX") {
                by = By::Lex;
            } else if by == By::Auto && is(a, "BYSCORE") {
                by = By::Score;
            } else {
                return Err(SYNTAX.into());
            }
            j += 1;
        }
        let rev = rev.unwrap_or(false);
        if by == By::Auto {
            by = By::Rank;
        }
        if limit != -1 && by == By::Rank {
            return Err(LIMIT_BY_RANK.into());
        }
        if withscores && by == By::Lex {
            return Err(LEX_WITHSCORES.into());
        }
        if rev && by != By::Rank {
            // Given as max, min.
            std::mem::swap(&mut min_i, &mut max_i);
        }
        let range = match by {
            By::Score => Range::score(argv[min_i], argv[max_i])?,
            By::Lex => Range::lex(argv[min_i], argv[max_i])?,
            _ => Range::rank(argv[min_i], argv[max_i])?,
        };
        Ok(ZRangeOf {
            dest: store.then(|| argv[1]),
            key,
            range,
            rev,
            withscores,
            offset,
            limit,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let z = match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(z) => z,
            Err(e) => return out.error(e),
        };
        let Some(dest) = self.dest else {
            let Some(z) = z else {
                return out.array(0);
            };
            let (from, to) = self.window(z);
            let nested = self.withscores && out.resp3();
            let per = if self.withscores && !nested { 2 } else { 1 };
            out.array((to - from) * per);
            z.for_range(from, to, self.rev, |score, m| {
                if nested {
                    out.array(2);
                }
                out.bulk(m);
                if self.withscores {
                    out.double(score);
                }
            });
            return;
        };
        // ZRANGESTORE: the result is built as Redis builds it (a listpack
        // unless a rank range says more than 128 will come, members added
        // in the order they are emitted), then replaces the destination.
        let (result, hint) = match z {
            None => (Vec::new(), 0),
            Some(z) => {
                let (from, to) = self.window(z);
                let mut items = Vec::with_capacity(to - from);
                z.for_range(from, to, self.rev, |s, m| items.push((s, m.to_vec())));
                let hint = if matches!(self.range, Range::Rank(..)) {
                    items.len()
                } else {
                    0
                };
                (items, hint)
            }
        };
        let ks = db.shard(dest);
        let seed = ks.field_seed();
        let mut stored = ZSet::with_hint(hint, seed);
        for (s, m) in &result {
            if stored.insert(m, *s, seed).is_err() {
                return out.error(super::zadd::ZSET_FULL);
            }
        }
        let n = stored.len() as i64;
        ks.store_zset(dest, stored, now_ms);
        out.int(n);
    }
}

impl<const FORM: u8> ZRangeOf<'_, FORM> {
    /// The ascending ranks `from..to` the reply holds (walked downward
    /// when `rev`), LIMIT applied.
    fn window(&self, z: &ZSet) -> (usize, usize) {
        let len = z.len();
        if let Range::Rank(start, stop) = self.range {
            // Reversed ranks count from the top.
            let (lo, hi) = rank_interval(start, stop, len);
            return if self.rev && lo < hi {
                (len - hi, len - lo)
            } else {
                (lo, hi)
            };
        }
        let (lo, hi) = self.range.ranks(z);
        if self.offset < 0 || lo >= hi {
            return (0, 0);
        }
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let n = hi - lo;
        if offset >= n {
            return (0, 0);
        }
        let count = (n - offset).min(take);
        if self.rev {
            (hi - offset - count, hi - offset)
        } else {
            (lo + offset, lo + offset + count)
        }
    }
}

/// ZCOUNT key min max, ZLEXCOUNT key min max (`LEX`).
pub struct ZCount<'a, const LEX: bool> {
    key: &'a [u8],
    range: Range<'a>,
}

pub type ZLexCount<'a> = ZCount<'a, true>;

impl<'a, const LEX: bool> Command<'a> for ZCount<'a, LEX> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let (min, max) = (super::arg(argv, 2)?, super::arg(argv, 3)?);
        let range = if LEX {
            Range::lex(min, max)?
        } else {
            Range::score(min, max)?
        };
        Ok(ZCount { key, range })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_zset(self.key, now_ms) {
            Ok(z) => out.int(z.map_or(0, |z| {
                let (lo, hi) = self.range.ranks(z);
                (hi - lo) as i64
            })),
            Err(e) => out.error(e),
        }
    }
}

/// ZREMRANGEBYRANK / ZREMRANGEBYSCORE / ZREMRANGEBYLEX key min max.
pub const BY_RANK: u8 = 0;
pub const BY_SCORE: u8 = 1;
pub const BY_LEX: u8 = 2;

pub struct ZRemRange<'a, const BY: u8> {
    key: &'a [u8],
    range: Range<'a>,
}

pub type ZRemRangeByRank<'a> = ZRemRange<'a, BY_RANK>;
pub type ZRemRangeByScore<'a> = ZRemRange<'a, BY_SCORE>;
pub type ZRemRangeByLex<'a> = ZRemRange<'a, BY_LEX>;

impl<'a, const BY: u8> Command<'a> for ZRemRange<'a, BY> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let (min, max) = (super::arg(argv, 2)?, super::arg(argv, 3)?);
        let range = match BY {
            BY_RANK => Range::rank(min, max)?,
            BY_SCORE => Range::score(min, max)?,
            _ => Range::lex(min, max)?,
        };
        Ok(ZRemRange { key, range })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let r = db
            .shard(self.key)
            .write_zset(self.key, now_ms, None, |z, _| {
                let (lo, hi) = self.range.ranks(z);
                let n = z.remove_range(lo, hi).len() as i64;
                (n, n > 0)
            });
        match r {
            Ok(n) => out.int(n.unwrap_or(0)),
            Err(e) => out.error(e),
        }
    }
}
