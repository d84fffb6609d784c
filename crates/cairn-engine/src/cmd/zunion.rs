//! ZUNION / ZINTER / ZDIFF numkeys key [key ...] [WEIGHTS w ...]
//! [AGGREGATE SUM|MIN|MAX] [WITHSCORES], their STORE forms (destination
//! first, no WITHSCORES), and ZINTERCARD numkeys key [key ...] [LIMIT n]:
//! Redis 7.0's `zunionInterDiffGenericCommand`.
//!
//! Its order of checks is kept: `numkeys`, then every key's type (a set
//! counts, each member scoring 1), and only then the options — so a bad
//! option after a key of the wrong type answers WRONGTYPE, as in Redis.
//! The option error is therefore found at parse time but answered at
//! apply (identically on every replica). Union and intersection take the
//! inputs smallest first (a stable sort: Redis' qsort may order equal
//! sizes differently, which only changes how float sums round); a weight
//! times a score that is NaN (`inf * 0`) counts as 0, and so does a SUM
//! of `inf` and `-inf`.

use super::{is, CmdError, Command, Db, NOT_INTEGER, SYNTAX};
use crate::reply::Reply;
use crate::set::Set;
use crate::zset::{cmp_entry, ZSet};

pub const UNION: u8 = 0;
pub const INTER: u8 = 1;
pub const DIFF: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, v: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += v;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v;
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v;
            }
        }
    }
}

/// What follows the keys, parsed.
#[derive(Debug)]
struct Options {
    weights: Option<Vec<f64>>,
    aggregate: Aggregate,
    withscores: bool,
    limit: usize,
}

/// `OP`: [`UNION`], [`INTER`] or [`DIFF`]; `STORE`: the destination
/// comes first; `CARD`: ZINTERCARD.
pub struct ZSetOp<'a, const OP: u8, const STORE: bool, const CARD: bool> {
    dest: Option<&'a [u8]>,
    keys: &'a [&'a [u8]],
    /// An option error, answered after the keys' types are checked.
    options: Result<Options, CmdError>,
}

pub type ZUnion<'a> = ZSetOp<'a, UNION, false, false>;
pub type ZInter<'a> = ZSetOp<'a, INTER, false, false>;
pub type ZDiff<'a> = ZSetOp<'a, DIFF, false, false>;
pub type ZUnionStore<'a> = ZSetOp<'a, UNION, true, false>;
pub type ZInterStore<'a> = ZSetOp<'a, INTER, true, false>;
pub type ZDiffStore<'a> = ZSetOp<'a, DIFF, true, false>;
pub type ZInterCard<'a> = ZSetOp<'a, INTER, false, true>;

impl<'a, const OP: u8, const STORE: bool, const CARD: bool> ZSetOp<'a, OP, STORE, CARD> {
    fn name() -> &'static str {
        match (OP, STORE, CARD) {
            (_, _, true) => "zintercard",
            (UNION, false, _) => "zunion",
            (INTER, false, _) => "zinter",
            (DIFF, false, _) => "zdiff",
            (UNION, true, _) => "zunionstore",
            (INTER, true, _) => "zinterstore",
            _ => "zdiffstore",
        }
    }

    fn options(args: &[&[u8]], n: usize) -> Result<Options, CmdError> {
        let mut o = Options {
            weights: None,
            aggregate: Aggregate::Sum,
            withscores: false,
            limit: 0,
        };
        let algebra = OP != DIFF && !CARD;
        let mut j = 0;
        while j < args.len() {
            let left = args.len() - j;
            let a = args[j];
            if algebra && left > n && is(a, "WEIGHTS") {
                let mut w = Vec::with_capacity(n);
                for arg in &args[j + 1..j + 1 + n] {
                    match crate::num::parse_score(arg) {
                        Some(v) => w.push(v),
                        None => return Err("ERR weight value is not a float".into()),
                    }
                }
                o.weights = Some(w);
                j += 1 + n;
            } else if algebra && left >= 2 && is(a, "AGGREGATE") {
                let how = args[j + 1];
                o.aggregate = if is(how, "SUM") {
                    Aggregate::Sum
                } else if is(how, "MIN") {
                    Aggregate::Min
                } else if is(how, "MAX") {
                    Aggregate::Max
                } else {
                    return Err(SYNTAX.into());
                };
                j += 2;
            } else if !STORE && !CARD && is(a, "WITHSCORES") {
                o.withscores = true;
                j += 1;
            } else if CARD && left >= 2 && is(a, "LIMIT") {
                match crate::num::parse_i64(args[j + 1]) {
                    Some(l) if l >= 0 => o.limit = usize::try_from(l).unwrap_or(usize::MAX),
                    _ => return Err("ERR LIMIT can't be negative".into()),
                }
                j += 2;
            } else {
                return Err(SYNTAX.into());
            }
        }
        Ok(o)
    }
}

impl<'a, const OP: u8, const STORE: bool, const CARD: bool> Command<'a>
    for ZSetOp<'a, OP, STORE, CARD>
{
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let at = if STORE { 2 } else { 1 };
        let numkeys = super::arg(argv, at)?;
        let dest = STORE.then(|| argv[1]);
        let n = crate::num::parse_i64(numkeys).ok_or(CmdError::from(NOT_INTEGER))?;
        if n < 1 {
            return Err(CmdError(
                format!(
                    "ERR at least 1 input key is needed for '{}' command",
                    Self::name()
                )
                .into(),
            ));
        }
        let rest = argv.len() - at - 1;
        if n as u64 > rest as u64 {
            return Err(SYNTAX.into());
        }
        let n = n as usize;
        let keys = &argv[at + 1..at + 1 + n];
        let options = Self::options(&argv[at + 1 + n..], n);
        Ok(ZSetOp {
            dest,
            keys,
            options,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let sources = match read_sources(db, self.keys, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        let o = match &self.options {
            Ok(o) => o,
            Err(e) => return out.error(e.msg()),
        };
        let weight = |i: usize| o.weights.as_ref().map_or(1.0, |w| w[i]);
        let mut srcs: Vec<(f64, Option<Source>)> = sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| (weight(i), s))
            .collect();
        if OP != DIFF {
            srcs.sort_by_key(|(_, s)| s.as_ref().map_or(0, Source::len));
        }
        if CARD {
            return out.int(inter(&srcs, o.aggregate, o.limit).len() as i64);
        }
        let mut result = match OP {
            UNION => {
                let seed = db.shard(self.keys[0]).field_seed();
                union(&srcs, o.aggregate, seed)
            }
            INTER => inter(&srcs, o.aggregate, 0),
            _ => diff(&srcs),
        };
        result.sort_by(|a, b| cmp_entry((a.0, &a.1), (b.0, &b.1)));
        match self.dest {
            Some(dest) => {
                let ks = db.shard(dest);
                let seed = ks.field_seed();
                match ZSet::from_sorted(&result, seed) {
                    Ok(z) => {
                        let n = z.len() as i64;
                        ks.store_zset(dest, z, now_ms);
                        out.int(n);
                    }
                    Err(_) => out.error(super::zadd::ZSET_FULL),
                }
            }
            None => {
                let nested = o.withscores && out.resp3();
                let per = if o.withscores && !nested { 2 } else { 1 };
                out.array(result.len() * per);
                for (s, m) in &result {
                    if nested {
                        out.array(2);
                    }
                    out.bulk(m);
                    if o.withscores {
                        out.double(*s);
                    }
                }
            }
        }
    }
}

/// An input, copied out of its shard: a zset, or a set (scores 1).
pub(crate) enum Source {
    ZSet(ZSet),
    Set(Set),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::ZSet(z) => z.len(),
            Source::Set(s) => s.len(),
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            Source::ZSet(z) => z.score(member),
            Source::Set(s) => s.contains(member).then_some(1.0),
        }
    }

    /// Every member with its score in the order Redis' set-operation
    /// iterator visits them: a zset from its highest member down, a set
    /// in its own order. (Only float rounding of sums depends on it.)
    fn items(&self) -> Vec<(f64, Vec<u8>)> {
        match self {
            Source::ZSet(z) => {
                let mut v = z.to_vec();
                v.reverse();
                v
            }
            Source::Set(s) => s.iter().map(|m| (1.0, m.to_vec())).collect(),
        }
    }
}

/// The inputs at `keys` (`None` for a missing key); a value that is
/// neither a zset nor a set is WRONGTYPE.
pub(crate) fn read_sources(
    db: &mut impl Db,
    keys: &[&[u8]],
    now_ms: u64,
) -> Result<Vec<Option<Source>>, &'static str> {
    keys.iter()
        .map(|k| {
            let v = db.shard(k).get(k, now_ms);
            match v {
                None => Ok(None),
                Some(v) => match (v.as_zset(), v.as_set()) {
                    (Some(z), _) => Ok(Some(Source::ZSet(z.clone()))),
                    (_, Some(s)) => Ok(Some(Source::Set(s.clone()))),
                    _ => Err(super::WRONGTYPE),
                },
            }
        })
        .collect()
}

/// `w * s`, 0 when that is NaN (`inf * 0`).
fn weighted(w: f64, s: f64) -> f64 {
    let v = w * s;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// The union, members in the order they are first met; `seed` keys the
/// member index (the shard's secret-derived seed: members cannot be
/// chosen to collide).
fn union(srcs: &[(f64, Option<Source>)], how: Aggregate, seed: u64) -> Vec<(f64, Vec<u8>)> {
    let mut out: Vec<(f64, Vec<u8>)> = Vec::new();
    let mut index: hashbrown::HashMap<Vec<u8>, usize, foldhash::fast::FixedState> =
        hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed));
    for (w, src) in srcs {
        let Some(src) = src else {
            continue;
        };
        for (s, m) in src.items() {
            let score = weighted(*w, s);
            match index.get(&m) {
                Some(&i) => aggregate(&mut out[i].0, score, how),
                None => {
                    index.insert(m.clone(), out.len());
                    out.push((score, m));
                }
            }
        }
    }
    out
}

/// The members of the smallest input in every other, at most `limit` of
/// them (0: all).
fn inter(srcs: &[(f64, Option<Source>)], how: Aggregate, limit: usize) -> Vec<(f64, Vec<u8>)> {
    let mut out = Vec::new();
    let Some((w0, Some(first))) = srcs.first() else {
        return out;
    };
    if srcs.iter().any(|(_, s)| s.is_none()) {
        return out;
    }
    'members: for (s, m) in first.items() {
        let mut score = weighted(*w0, s);
        for (w, other) in &srcs[1..] {
            let Some(v) = other.as_ref().and_then(|o| o.score(&m)) else {
                continue 'members;
            };
            aggregate(&mut score, v * w, how);
        }
        out.push((score, m));
        if limit != 0 && out.len() >= limit {
            break;
        }
    }
    out
}

/// The members of the first input in none of the others, with their
/// scores there.
fn diff(srcs: &[(f64, Option<Source>)]) -> Vec<(f64, Vec<u8>)> {
    let Some((_, Some(first))) = srcs.first() else {
        return Vec::new();
    };
    first
        .items()
        .into_iter()
        .filter(|(_, m)| {
            !srcs[1..]
                .iter()
                .any(|(_, o)| o.as_ref().is_some_and(|o| o.score(m).is_some()))
        })
        .collect()
}
