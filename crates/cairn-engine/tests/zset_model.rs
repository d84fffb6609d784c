//! Model-based property test of sorted sets: random sequences of zset
//! (and a few string) commands on three keys run against the engine and
//! against a reference model — a `Vec` kept sorted by (score, member),
//! written from Redis 7.0's t_zset.c — compared reply by reply as
//! [`Frame`]s (RESP3 shapes), and at the end key by key.
//!
//! The model also predicts the encoding: a new zset is a listpack unless
//! its first member is over 64 bytes; a listpack becomes a skiplist on a
//! 129th member or a member over 64 bytes, and never converts back;
//! ZUNIONSTORE's and friends' results are listpacks when they have at
//! most 128 members of at most 64 bytes; ZRANGESTORE's start as a
//! listpack unless a rank range brings more than 128 members.

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;
use proptest::prelude::*;

const KEYS: [&str; 3] = ["a", "b", "c"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Debug)]
struct Flags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

#[derive(Clone, Debug)]
enum Op {
    ZAdd(usize, Flags, Vec<(f64, String)>),
    ZIncrBy(usize, f64, String),
    ZRem(usize, Vec<String>),
    ZScore(usize, String),
    ZMScore(usize, Vec<String>),
    ZRank(usize, String, bool),
    ZCard(usize),
    /// start, stop, rev, withscores
    ZRange(usize, i64, i64, bool, bool),
    /// min, minex, max, maxex, rev, withscores, limit (offset, count)
    ZRangeByScore(usize, f64, bool, f64, bool, bool, bool, Option<(i64, i64)>),
    /// min, max (as given, `[x`, `(x`, `-`, `+`), rev
    ZRangeByLex(usize, String, String, bool),
    ZCount(usize, f64, bool, f64, bool),
    ZRemRangeByRank(usize, i64, i64),
    ZRemRangeByScore(usize, f64, bool, f64, bool),
    /// max, count
    ZPop(usize, bool, Option<usize>),
    /// 0 union, 1 inter, 2 diff; destination (STORE form); keys; weights;
    /// aggregate (0 sum, 1 min, 2 max)
    Algebra(u8, Option<usize>, Vec<usize>, Option<Vec<f64>>, u8),
    ZInterCard(Vec<usize>, usize),
    /// destination, source, start, stop
    ZRangeStore(usize, usize, i64, i64),
    Encoding(usize),
    Set(usize, String),
    Get(usize),
    Del(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Enc {
    Listpack,
    Skiplist,
}

#[derive(Clone, Debug)]
struct ModelZ {
    /// Sorted by (score, member); scores never NaN.
    items: Vec<(f64, String)>,
    enc: Enc,
}

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Z(ModelZ),
}

fn cmp(a: &(f64, String), b: &(f64, String)) -> std::cmp::Ordering {
    a.0.partial_cmp(&b.0)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
}

impl ModelZ {
    fn new(first: &str) -> ModelZ {
        ModelZ {
            items: Vec::new(),
            enc: if first.len() > 64 {
                Enc::Skiplist
            } else {
                Enc::Listpack
            },
        }
    }

    /// A computed result: a listpack when small enough.
    fn computed(mut items: Vec<(f64, String)>) -> ModelZ {
        items.sort_by(cmp);
        let small = items.len() <= 128 && items.iter().all(|(_, m)| m.len() <= 64);
        ModelZ {
            items,
            enc: if small { Enc::Listpack } else { Enc::Skiplist },
        }
    }

    fn score(&self, m: &str) -> Option<f64> {
        self.items.iter().find(|(_, x)| x == m).map(|(s, _)| *s)
    }

    fn rank(&self, m: &str) -> Option<usize> {
        self.items.iter().position(|(_, x)| x == m)
    }

    /// Redis' zsetAdd's storage part: insert or move, converting a
    /// listpack for a new member that does not fit.
    fn put(&mut self, m: &str, s: f64) {
        match self.rank(m) {
            Some(i) => {
                self.items.remove(i);
            }
            None => {
                if self.enc == Enc::Listpack && (self.items.len() >= 128 || m.len() > 64) {
                    self.enc = Enc::Skiplist;
                }
            }
        }
        self.items.push((s, m.to_string()));
        self.items.sort_by(cmp);
    }

    fn remove(&mut self, m: &str) -> bool {
        match self.rank(m) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// Ranks `lo..hi` holding scores within the bounds.
    fn score_ranks(&self, min: f64, minex: bool, max: f64, maxex: bool) -> (usize, usize) {
        let lo = self
            .items
            .iter()
            .filter(|(s, _)| if minex { *s <= min } else { *s < min })
            .count();
        let hi = self
            .items
            .iter()
            .filter(|(s, _)| if maxex { *s < max } else { *s <= max })
            .count();
        (lo, hi.max(lo))
    }
}

/// Redis' index sanitising as ascending ranks `lo..hi`.
fn rank_interval(start: i64, stop: i64, len: usize) -> (usize, usize) {
    let n = len as i64;
    let start = if start < 0 { n + start } else { start }.max(0);
    let stop = if stop < 0 { n + stop } else { stop };
    if start > stop || start >= n {
        return (0, 0);
    }
    (start as usize, stop.min(n - 1) as usize + 1)
}

#[derive(Default)]
struct Model {
    keys: [Option<Val>; 3],
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn error(s: &str) -> Frame {
    Frame::Error(s.as_bytes().to_vec())
}

fn pairs(items: &[(f64, String)], withscores: bool) -> Frame {
    Frame::Array(
        items
            .iter()
            .map(|(s, m)| {
                if withscores {
                    Frame::Array(vec![bulk(m), Frame::Double(*s)])
                } else {
                    bulk(m)
                }
            })
            .collect(),
    )
}

fn weighted(w: f64, s: f64) -> f64 {
    let v = w * s;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

fn aggregate(t: &mut f64, v: f64, how: u8) {
    match how {
        0 => {
            *t += v;
            if t.is_nan() {
                *t = 0.0;
            }
        }
        1 => {
            if v < *t {
                *t = v
            }
        }
        _ => {
            if v > *t {
                *t = v
            }
        }
    }
}

impl Model {
    fn z(&self, k: usize) -> Result<Option<&ModelZ>, Frame> {
        match &self.keys[k] {
            None => Ok(None),
            Some(Val::Z(z)) => Ok(Some(z)),
            Some(Val::Str(_)) => Err(error(WRONGTYPE)),
        }
    }

    fn store(&mut self, k: usize, z: ModelZ) {
        self.keys[k] = (!z.items.is_empty()).then_some(Val::Z(z));
    }

    /// Applies `f` to the zset at `k` (missing: `create`, or nothing),
    /// dropping the key when it ends empty.
    fn write<R>(
        &mut self,
        k: usize,
        create: Option<ModelZ>,
        f: impl FnOnce(&mut ModelZ) -> R,
    ) -> Option<R> {
        let mut z = match self.keys[k].take() {
            Some(Val::Z(z)) => z,
            _ => create?,
        };
        let r = f(&mut z);
        self.store(k, z);
        Some(r)
    }

    fn zadd(&mut self, k: usize, f: &Flags, pairs: &[(f64, String)]) -> Result<Frame, Frame> {
        if f.nx && f.xx {
            return Err(error(
                "ERR XX and NX options at the same time are not compatible",
            ));
        }
        if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
            return Err(error(
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ));
        }
        if f.incr && pairs.len() > 1 {
            return Err(error(
                "ERR INCR option supports a single increment-element pair",
            ));
        }
        let exists = self.z(k)?.is_some();
        let (mut added, mut updated, mut processed, mut last) = (0, 0, 0, 0.0);
        if exists || !f.xx {
            let r = self.write(k, Some(ModelZ::new(&pairs[0].1)), |z| {
                for (score, m) in pairs {
                    match z.score(m) {
                        Some(cur) => {
                            if f.nx {
                                continue;
                            }
                            let new = if f.incr { score + cur } else { *score };
                            if new.is_nan() {
                                return Err(error("ERR resulting score is not a number (NaN)"));
                            }
                            if (f.lt && new >= cur) || (f.gt && new <= cur) {
                                continue;
                            }
                            processed += 1;
                            last = new;
                            if new != cur {
                                z.put(m, new);
                                updated += 1;
                            }
                        }
                        None => {
                            if f.xx {
                                continue;
                            }
                            z.put(m, *score);
                            added += 1;
                            processed += 1;
                            last = *score;
                        }
                    }
                }
                Ok(())
            });
            if let Some(Err(e)) = r {
                return Err(e);
            }
        }
        Ok(if f.incr {
            if processed > 0 {
                Frame::Double(last)
            } else {
                Frame::Null
            }
        } else {
            Frame::Integer(if f.ch { added + updated } else { added })
        })
    }

    fn algebra(
        &mut self,
        op: u8,
        dest: Option<usize>,
        ks: &[usize],
        weights: &Option<Vec<f64>>,
        how: u8,
    ) -> Result<Frame, Frame> {
        let srcs: Vec<Option<ModelZ>> = ks
            .iter()
            .map(|&k| Ok(self.z(k)?.cloned()))
            .collect::<Result<_, Frame>>()?;
        let w = |i: usize| weights.as_ref().map_or(1.0, |w| w[i]);
        let mut srcs: Vec<(f64, Option<ModelZ>)> = srcs
            .into_iter()
            .enumerate()
            .map(|(i, s)| (w(i), s))
            .collect();
        if op != 2 {
            srcs.sort_by_key(|(_, s)| s.as_ref().map_or(0, |s| s.items.len()));
        }
        let mut out: Vec<(f64, String)> = Vec::new();
        match op {
            0 => {
                for (w, s) in &srcs {
                    for (sc, m) in s.iter().flat_map(|s| s.items.iter()) {
                        let v = weighted(*w, *sc);
                        match out.iter_mut().find(|(_, x)| x == m) {
                            Some(e) => aggregate(&mut e.0, v, how),
                            None => out.push((v, m.clone())),
                        }
                    }
                }
            }
            1 => {
                if srcs.iter().all(|(_, s)| s.is_some()) {
                    let (w0, first) = &srcs[0];
                    for (sc, m) in first.iter().flat_map(|s| s.items.iter()) {
                        let mut score = weighted(*w0, *sc);
                        let mut all = true;
                        for (w, o) in &srcs[1..] {
                            match o.as_ref().and_then(|o| o.score(m)) {
                                Some(v) => aggregate(&mut score, v * w, how),
                                None => {
                                    all = false;
                                    break;
                                }
                            }
                        }
                        if all {
                            out.push((score, m.clone()));
                        }
                    }
                }
            }
            _ => {
                if let (_, Some(first)) = &srcs[0] {
                    for (sc, m) in &first.items {
                        if !srcs[1..]
                            .iter()
                            .any(|(_, o)| o.as_ref().is_some_and(|o| o.score(m).is_some()))
                        {
                            out.push((*sc, m.clone()));
                        }
                    }
                }
            }
        }
        let z = ModelZ::computed(out);
        Ok(match dest {
            Some(d) => {
                let n = z.items.len() as i64;
                self.store(d, z);
                Frame::Integer(n)
            }
            None => pairs(&z.items, true),
        })
    }

    /// `None`: the model does not predict this reply (a lex range over
    /// mixed scores, which Redis leaves unspecified).
    fn apply(&mut self, op: &Op) -> Option<Frame> {
        let r = match op {
            Op::ZAdd(k, f, ps) => self.zadd(*k, f, ps),
            Op::ZIncrBy(k, by, m) => {
                let f = Flags {
                    nx: false,
                    xx: false,
                    gt: false,
                    lt: false,
                    ch: false,
                    incr: true,
                };
                self.zadd(*k, &f, &[(*by, m.clone())])
            }
            Op::ZRem(k, ms) => self.z(*k).map(|_| ()).map(|()| {
                let n = self
                    .write(*k, None, |z| ms.iter().filter(|m| z.remove(m)).count())
                    .unwrap_or(0);
                Frame::Integer(n as i64)
            }),
            Op::ZScore(k, m) => self.z(*k).map(|z| {
                z.and_then(|z| z.score(m))
                    .map_or(Frame::Null, Frame::Double)
            }),
            Op::ZMScore(k, ms) => self.z(*k).map(|z| {
                Frame::Array(
                    ms.iter()
                        .map(|m| {
                            z.and_then(|z| z.score(m))
                                .map_or(Frame::Null, Frame::Double)
                        })
                        .collect(),
                )
            }),
            Op::ZRank(k, m, rev) => {
                self.z(*k).map(
                    |z| match z.and_then(|z| Some((z.rank(m)?, z.items.len()))) {
                        Some((r, n)) => Frame::Integer(if *rev { n - 1 - r } else { r } as i64),
                        None => Frame::Null,
                    },
                )
            }
            Op::ZCard(k) => self
                .z(*k)
                .map(|z| Frame::Integer(z.map_or(0, |z| z.items.len()) as i64)),
            Op::ZRange(k, start, stop, rev, ws) => self.z(*k).map(|z| {
                let Some(z) = z else {
                    return Frame::Array(Vec::new());
                };
                let n = z.items.len();
                let (lo, hi) = rank_interval(*start, *stop, n);
                let got: Vec<(f64, String)> = if *rev {
                    z.items.iter().rev().cloned().collect::<Vec<_>>()[lo..hi].to_vec()
                } else {
                    z.items[lo..hi].to_vec()
                };
                pairs(&got, *ws)
            }),
            Op::ZRangeByScore(k, min, minex, max, maxex, rev, ws, limit) => self.z(*k).map(|z| {
                let Some(z) = z else {
                    return Frame::Array(Vec::new());
                };
                let (lo, hi) = z.score_ranks(*min, *minex, *max, *maxex);
                let mut got: Vec<(f64, String)> = z.items[lo..hi].to_vec();
                if *rev {
                    got.reverse();
                }
                if let Some((off, cnt)) = limit {
                    if *off < 0 {
                        got.clear();
                    } else {
                        got = got.into_iter().skip(*off as usize).collect();
                        if *cnt >= 0 {
                            got.truncate(*cnt as usize);
                        }
                    }
                }
                pairs(&got, *ws)
            }),
            Op::ZRangeByLex(k, min, max, rev) => match self.z(*k) {
                Err(e) => Err(e),
                Ok(None) => Ok(Frame::Array(Vec::new())),
                Ok(Some(z)) => {
                    if z.items.iter().any(|(s, _)| *s != z.items[0].0) {
                        return None;
                    }
                    let inside = |m: &str| {
                        let lo_ok = match min.as_bytes() {
                            b"-" => true,
                            b"+" => false,
                            [b'[', x @ ..] => m.as_bytes() >= x,
                            [_, x @ ..] => m.as_bytes() > x,
                            [] => false,
                        };
                        let hi_ok = match max.as_bytes() {
                            b"+" => true,
                            b"-" => false,
                            [b'[', x @ ..] => m.as_bytes() <= x,
                            [_, x @ ..] => m.as_bytes() < x,
                            [] => false,
                        };
                        lo_ok && hi_ok
                    };
                    let mut got: Vec<(f64, String)> =
                        z.items.iter().filter(|(_, m)| inside(m)).cloned().collect();
                    if *rev {
                        got.reverse();
                    }
                    Ok(pairs(&got, false))
                }
            },
            Op::ZCount(k, min, minex, max, maxex) => self.z(*k).map(|z| {
                Frame::Integer(z.map_or(0, |z| {
                    let (lo, hi) = z.score_ranks(*min, *minex, *max, *maxex);
                    hi - lo
                }) as i64)
            }),
            Op::ZRemRangeByRank(k, start, stop) => self.z(*k).map(|_| ()).map(|()| {
                let n = self.write(*k, None, |z| {
                    let (lo, hi) = rank_interval(*start, *stop, z.items.len());
                    z.items.drain(lo..hi).count()
                });
                Frame::Integer(n.unwrap_or(0) as i64)
            }),
            Op::ZRemRangeByScore(k, min, minex, max, maxex) => self.z(*k).map(|_| ()).map(|()| {
                let n = self.write(*k, None, |z| {
                    let (lo, hi) = z.score_ranks(*min, *minex, *max, *maxex);
                    z.items.drain(lo..hi).count()
                });
                Frame::Integer(n.unwrap_or(0) as i64)
            }),
            Op::ZPop(k, max, count) => match self.z(*k) {
                Err(e) => Err(e),
                Ok(None) => Ok(Frame::Array(Vec::new())),
                Ok(Some(_)) if *count == Some(0) => Ok(Frame::Array(Vec::new())),
                Ok(Some(_)) => {
                    let got = self
                        .write(*k, None, |z| {
                            let n = count.unwrap_or(1).min(z.items.len());
                            if *max {
                                let at = z.items.len() - n;
                                let mut g: Vec<_> = z.items.drain(at..).collect();
                                g.reverse();
                                g
                            } else {
                                z.items.drain(..n).collect()
                            }
                        })
                        .unwrap_or_default();
                    Ok(match count {
                        Some(_) => pairs(&got, true),
                        None => Frame::Array(
                            got.iter()
                                .flat_map(|(s, m)| [bulk(m), Frame::Double(*s)])
                                .collect(),
                        ),
                    })
                }
            },
            Op::Algebra(o, dest, ks, w, how) => self.algebra(*o, *dest, ks, w, *how),
            Op::ZInterCard(ks, limit) => match self.algebra(1, None, ks, &None, 0) {
                Ok(Frame::Array(items)) => {
                    let n = items.len();
                    Ok(Frame::Integer(
                        if *limit == 0 { n } else { n.min(*limit) } as i64
                    ))
                }
                other => other,
            },
            Op::ZRangeStore(d, src, start, stop) => match self.z(*src) {
                Err(e) => Err(e),
                Ok(z) => {
                    let items = z.map_or(Vec::new(), |z| {
                        let (lo, hi) = rank_interval(*start, *stop, z.items.len());
                        z.items[lo..hi].to_vec()
                    });
                    let mut out = ModelZ {
                        items: Vec::new(),
                        enc: if items.len() > 128 {
                            Enc::Skiplist
                        } else {
                            Enc::Listpack
                        },
                    };
                    for (s, m) in &items {
                        out.put(m, *s);
                    }
                    let n = items.len() as i64;
                    self.store(*d, out);
                    Ok(Frame::Integer(n))
                }
            },
            Op::Encoding(k) => Ok(match &self.keys[*k] {
                None => Frame::Null,
                Some(Val::Z(z)) => bulk(match z.enc {
                    Enc::Listpack => "listpack",
                    Enc::Skiplist => "skiplist",
                }),
                Some(Val::Str(_)) => bulk("embstr"),
            }),
            Op::Set(k, v) => {
                self.keys[*k] = Some(Val::Str(v.clone()));
                Ok(Frame::Simple(b"OK".to_vec()))
            }
            Op::Get(k) => match &self.keys[*k] {
                None => Ok(Frame::Null),
                Some(Val::Str(s)) => Ok(bulk(s)),
                Some(Val::Z(_)) => Err(error(WRONGTYPE)),
            },
            Op::Del(k) => Ok(Frame::Integer(self.keys[*k].take().is_some() as i64)),
        };
        Some(r.unwrap_or_else(|e| e))
    }
}

fn score_text(s: f64) -> String {
    if s == f64::INFINITY {
        "+inf".into()
    } else if s == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("{s:?}")
    }
}

fn bound(s: f64, ex: bool) -> String {
    format!("{}{}", if ex { "(" } else { "" }, score_text(s))
}

fn argv(op: &Op) -> Vec<String> {
    let key = |k: &usize| KEYS[*k].to_string();
    let mut v: Vec<String> = Vec::new();
    match op {
        Op::ZAdd(k, f, ps) => {
            v.extend(["ZADD".into(), key(k)]);
            for (on, name) in [
                (f.nx, "NX"),
                (f.xx, "XX"),
                (f.gt, "GT"),
                (f.lt, "LT"),
                (f.ch, "CH"),
                (f.incr, "INCR"),
            ] {
                if on {
                    v.push(name.into());
                }
            }
            for (s, m) in ps {
                v.extend([score_text(*s), m.clone()]);
            }
        }
        Op::ZIncrBy(k, by, m) => v.extend(["ZINCRBY".into(), key(k), score_text(*by), m.clone()]),
        Op::ZRem(k, ms) => {
            v.extend(["ZREM".into(), key(k)]);
            v.extend(ms.iter().cloned());
        }
        Op::ZScore(k, m) => v.extend(["ZSCORE".into(), key(k), m.clone()]),
        Op::ZMScore(k, ms) => {
            v.extend(["ZMSCORE".into(), key(k)]);
            v.extend(ms.iter().cloned());
        }
        Op::ZRank(k, m, rev) => v.extend([
            if *rev { "ZREVRANK" } else { "ZRANK" }.into(),
            key(k),
            m.clone(),
        ]),
        Op::ZCard(k) => v.extend(["ZCARD".into(), key(k)]),
        Op::ZRange(k, a, b, rev, ws) => {
            v.extend(["ZRANGE".into(), key(k), a.to_string(), b.to_string()]);
            if *rev {
                v.push("REV".into());
            }
            if *ws {
                v.push("WITHSCORES".into());
            }
        }
        Op::ZRangeByScore(k, min, minex, max, maxex, rev, ws, limit) => {
            let (lo, hi) = (bound(*min, *minex), bound(*max, *maxex));
            if *rev {
                v.extend(["ZREVRANGEBYSCORE".into(), key(k), hi, lo]);
            } else {
                v.extend(["ZRANGE".into(), key(k), lo, hi, "BYSCORE".into()]);
            }
            if let Some((o, c)) = limit {
                v.extend(["LIMIT".into(), o.to_string(), c.to_string()]);
            }
            if *ws {
                v.push("WITHSCORES".into());
            }
        }
        Op::ZRangeByLex(k, min, max, rev) => {
            if *rev {
                v.extend(["ZREVRANGEBYLEX".into(), key(k), max.clone(), min.clone()]);
            } else {
                v.extend(["ZRANGEBYLEX".into(), key(k), min.clone(), max.clone()]);
            }
        }
        Op::ZCount(k, min, minex, max, maxex) => v.extend([
            "ZCOUNT".into(),
            key(k),
            bound(*min, *minex),
            bound(*max, *maxex),
        ]),
        Op::ZRemRangeByRank(k, a, b) => v.extend([
            "ZREMRANGEBYRANK".into(),
            key(k),
            a.to_string(),
            b.to_string(),
        ]),
        Op::ZRemRangeByScore(k, min, minex, max, maxex) => v.extend([
            "ZREMRANGEBYSCORE".into(),
            key(k),
            bound(*min, *minex),
            bound(*max, *maxex),
        ]),
        Op::ZPop(k, max, count) => {
            v.extend([if *max { "ZPOPMAX" } else { "ZPOPMIN" }.into(), key(k)]);
            if let Some(c) = count {
                v.push(c.to_string());
            }
        }
        Op::Algebra(o, dest, ks, w, how) => {
            let name = ["ZUNION", "ZINTER", "ZDIFF"][*o as usize];
            match dest {
                Some(d) => v.extend([format!("{name}STORE"), key(d)]),
                None => v.push(name.into()),
            }
            v.push(ks.len().to_string());
            v.extend(ks.iter().map(key));
            if let Some(w) = w {
                v.push("WEIGHTS".into());
                v.extend(w.iter().map(|x| score_text(*x)));
            }
            if *o != 2 {
                v.extend([
                    "AGGREGATE".into(),
                    ["SUM", "MIN", "MAX"][*how as usize].into(),
                ]);
            }
            if dest.is_none() {
                v.push("WITHSCORES".into());
            }
        }
        Op::ZInterCard(ks, limit) => {
            v.extend(["ZINTERCARD".into(), ks.len().to_string()]);
            v.extend(ks.iter().map(key));
            v.extend(["LIMIT".into(), limit.to_string()]);
        }
        Op::ZRangeStore(d, s, a, b) => v.extend([
            "ZRANGESTORE".into(),
            key(d),
            key(s),
            a.to_string(),
            b.to_string(),
        ]),
        Op::Encoding(k) => v.extend(["OBJECT".into(), "ENCODING".into(), key(k)]),
        Op::Set(k, x) => v.extend(["SET".into(), key(k), x.clone()]),
        Op::Get(k) => v.extend(["GET".into(), key(k)]),
        Op::Del(k) => v.extend(["DEL".into(), key(k)]),
    }
    v
}

fn exec(ks: &mut Keyspace, op: &Op) -> Frame {
    let owned = argv(op);
    let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    if let Op::Encoding(_) = op {
        // OBJECT is not a transaction command: run it directly.
        use cairn_engine::cmd::Command;
        match cairn_engine::cmd::object::Object::parse(&refs) {
            Ok(c) => c.apply(ks, 0, &mut out),
            Err(e) => cairn_engine::Reply::error(&mut out, e.msg()),
        }
    } else {
        apply_in_tx(ks, &refs, 0, &mut out);
    }
    out.take().pop().expect("one reply")
}

/// Runs a command given as words; its reply.
fn run(ks: &mut Keyspace, words: &[&str]) -> Frame {
    let refs: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &refs, 0, &mut out);
    out.take().pop().expect("one reply")
}

fn bulks(f: &Frame) -> Vec<String> {
    match f {
        Frame::Array(items) => items
            .iter()
            .map(|i| match i {
                Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Every member a ZSCAN of `key` returns, paged `count` at a time.
fn scan_all(ks: &mut Keyspace, key: &str, count: usize) -> Vec<String> {
    let (mut cursor, mut seen) = ("0".to_string(), Vec::new());
    for _ in 0..10_000 {
        let count = count.to_string();
        let reply = run(ks, &["ZSCAN", key, &cursor, "COUNT", &count]);
        let Frame::Array(parts) = reply else {
            panic!("{reply:?}")
        };
        cursor = bulks(&Frame::Array(vec![parts[0].clone()])).remove(0);
        seen.extend(bulks(&parts[1]).into_iter().step_by(2));
        if cursor == "0" {
            return seen;
        }
    }
    panic!("ZSCAN of {key} never ended");
}

/// What the table-walking reads (ZSCAN, ZRANDMEMBER) see of a zset
/// agrees with the model's members, whatever holes removals left.
fn check_table_reads(ks: &mut Keyspace, key: &str, z: &ModelZ) -> Result<(), TestCaseError> {
    let mut want: Vec<String> = z.items.iter().map(|(_, m)| m.clone()).collect();
    want.sort();
    let mut seen = scan_all(ks, key, 3);
    seen.sort();
    prop_assert_eq!(&seen, &want, "ZSCAN of {}", key);
    let n = want.len();
    let distinct = (n - 1).to_string();
    let mut picks = bulks(&run(ks, &["ZRANDMEMBER", key, &distinct]));
    picks.sort();
    picks.dedup();
    prop_assert_eq!(picks.len(), n - 1, "ZRANDMEMBER {} {}", key, n - 1);
    prop_assert!(picks.iter().all(|m| want.binary_search(m).is_ok()));
    let draws = bulks(&run(ks, &["ZRANDMEMBER", key, "-50"]));
    prop_assert_eq!(draws.len(), 50);
    prop_assert!(draws.iter().all(|m| want.binary_search(m).is_ok()));
    match run(ks, &["ZRANDMEMBER", key]) {
        Frame::Bulk(m) => {
            let m = String::from_utf8_lossy(&m).into_owned();
            prop_assert!(want.binary_search(&m).is_ok());
        }
        other => prop_assert!(false, "ZRANDMEMBER {}: {:?}", key, other),
    }
    Ok(())
}

fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-f]{1,2}",
        2 => (0..300u32).prop_map(|i| format!("m{i:03}")),
        1 => (62..67usize).prop_map(|n| "L".repeat(n)),
    ]
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-6i32..7).prop_map(f64::from),
        2 => (-12i32..12).prop_map(|n| f64::from(n) / 4.0),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

fn flags() -> impl Strategy<Value = Flags> {
    (
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(nx, xx, gt, lt, ch, incr)| Flags {
            nx,
            xx,
            gt,
            lt,
            ch,
            incr,
        })
}

fn keys() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..3usize, 1..4)
}

fn lex_bound() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_string()),
        Just("+".to_string()),
        "[a-f]{0,2}".prop_map(|m| format!("[{m}")),
        "[a-f]{0,2}".prop_map(|m| format!("({m}")),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..3usize;
    let idx = -8i64..8;
    prop_oneof![
        12 => (k.clone(), flags(), prop::collection::vec((score(), member()), 1..5))
            .prop_map(|(k, f, p)| Op::ZAdd(k, f, p)),
        1 => (k.clone(), prop::collection::vec(
                ((-6i32..7).prop_map(f64::from), (0..300u32).prop_map(|i| format!("m{i:03}"))),
                100..160))
            .prop_map(|(k, p)| Op::ZAdd(k, Flags { nx: false, xx: false, gt: false, lt: false, ch: false, incr: false }, p)),
        2 => (k.clone(), score(), member()).prop_map(|(k, s, m)| Op::ZIncrBy(k, s, m)),
        3 => (k.clone(), prop::collection::vec(member(), 1..4)).prop_map(|(k, m)| Op::ZRem(k, m)),
        2 => (k.clone(), member()).prop_map(|(k, m)| Op::ZScore(k, m)),
        1 => (k.clone(), prop::collection::vec(member(), 1..4)).prop_map(|(k, m)| Op::ZMScore(k, m)),
        2 => (k.clone(), member(), any::<bool>()).prop_map(|(k, m, r)| Op::ZRank(k, m, r)),
        1 => k.clone().prop_map(Op::ZCard),
        3 => (k.clone(), idx.clone(), idx.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(k, a, b, r, w)| Op::ZRange(k, a, b, r, w)),
        3 => (k.clone(), score(), any::<bool>(), score(), any::<bool>(), any::<bool>(), any::<bool>(),
              prop::option::of((-1i64..4, -1i64..4)))
            .prop_map(|(k, a, ax, b, bx, r, w, l)| Op::ZRangeByScore(k, a, ax, b, bx, r, w, l)),
        2 => (k.clone(), lex_bound(), lex_bound(), any::<bool>())
            .prop_map(|(k, a, b, r)| Op::ZRangeByLex(k, a, b, r)),
        1 => (k.clone(), score(), any::<bool>(), score(), any::<bool>())
            .prop_map(|(k, a, ax, b, bx)| Op::ZCount(k, a, ax, b, bx)),
        1 => (k.clone(), idx.clone(), idx.clone()).prop_map(|(k, a, b)| Op::ZRemRangeByRank(k, a, b)),
        1 => (k.clone(), score(), any::<bool>(), score(), any::<bool>())
            .prop_map(|(k, a, ax, b, bx)| Op::ZRemRangeByScore(k, a, ax, b, bx)),
        2 => (k.clone(), any::<bool>(), prop::option::of(0..5usize))
            .prop_map(|(k, m, c)| Op::ZPop(k, m, c)),
        3 => (0..3u8, prop::option::of(k.clone()), keys(), 0..3u8, any::<bool>())
            .prop_flat_map(|(o, d, ks, how, w)| {
                let n = ks.len();
                (Just(o), Just(d), Just(ks), Just(how),
                 if w { prop::option::of(prop::collection::vec((-2i32..3).prop_map(f64::from), n..=n)).boxed() }
                 else { Just(None).boxed() })
            })
            .prop_map(|(o, d, ks, how, w)| Op::Algebra(o, d, ks, if o == 2 { None } else { w }, how)),
        1 => (keys(), 0..4usize).prop_map(|(ks, l)| Op::ZInterCard(ks, l)),
        1 => (k.clone(), k.clone(), idx.clone(), idx.clone()).prop_map(|(d, s, a, b)| Op::ZRangeStore(d, s, a, b)),
        2 => k.clone().prop_map(Op::Encoding),
        1 => (k.clone(), "[a-z]{1,4}").prop_map(|(k, v)| Op::Set(k, v)),
        1 => k.clone().prop_map(Op::Get),
        1 => k.prop_map(Op::Del),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_zsets_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut ks = Keyspace::new(0x5eed);
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = exec(&mut ks, op);
            if let Some(want) = want {
                prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
            }
        }
        for (k, name) in KEYS.iter().enumerate() {
            let op = Op::ZRange(k, 0, -1, false, true);
            let want = model.apply(&op).expect("predicted");
            let got = exec(&mut ks, &op);
            prop_assert_eq!(got, want, "final {}", name);
            let op = Op::Encoding(k);
            prop_assert_eq!(exec(&mut ks, &op), model.apply(&op).expect("predicted"));
            if let Ok(Some(z)) = model.z(k) {
                check_table_reads(&mut ks, name, z)?;
            }
        }
        let live = model.keys.iter().filter(|v| v.is_some()).count();
        prop_assert_eq!(ks.len(), live);
    }

    /// A snapshot of any such keyspace restores to the same zsets, with
    /// the same encodings and (skiplist) table order.
    #[test]
    fn zsets_survive_a_snapshot(ops in prop::collection::vec(op(), 1..60)) {
        let mut ks = Keyspace::new(0x5eed);
        for op in &ops {
            exec(&mut ks, op);
        }
        let mut bytes = Vec::new();
        cairn_engine::snapshot::write(&ks, &mut bytes).expect("write");
        let (mut restored, _) = cairn_engine::snapshot::read(&mut &bytes[..], 0x5eed).expect("read");
        prop_assert_eq!(restored.digest(), ks.digest());
        for (k, name) in KEYS.iter().enumerate() {
            for op in [Op::ZRange(k, 0, -1, false, true), Op::Encoding(k)] {
                prop_assert_eq!(exec(&mut restored, &op), exec(&mut ks, &op));
            }
            let scan: Vec<&[u8]> = vec![b"ZSCAN", name.as_bytes(), b"0", b"COUNT", b"1000"];
            let (mut a, mut b) = (FrameReply::new(), FrameReply::new());
            apply_in_tx(&mut restored, &scan, 0, &mut a);
            apply_in_tx(&mut ks, &scan, 0, &mut b);
            prop_assert_eq!(a.take(), b.take());
        }
        // The same positions (holes included) and generator: the same
        // ZSCAN pages and ZRANDMEMBER draws, now and after more writes
        // (which compact alike).
        for round in 0..2 {
            for name in KEYS {
                for words in [
                    &["ZSCAN", name, "0", "COUNT", "3"][..],
                    &["ZRANDMEMBER", name, "-20", "WITHSCORES"],
                    &["ZRANDMEMBER", name, "5"],
                    &["ZRANDMEMBER", name],
                ] {
                    prop_assert_eq!(run(&mut restored, words), run(&mut ks, words), "{:?}", words);
                }
                if matches!(run(&mut ks, &["TYPE", name]), Frame::Simple(t) if t == b"zset") {
                    // Every page: the same members at the same positions.
                    prop_assert_eq!(scan_all(&mut restored, name, 3), scan_all(&mut ks, name, 3));
                }
                if round == 0 {
                    for words in [
                        &["ZPOPMIN", name, "40"][..],
                        &["ZADD", name, "1", "new", "2", "new2", "3", "new3"],
                    ] {
                        prop_assert_eq!(run(&mut restored, words), run(&mut ks, words));
                    }
                }
            }
        }
    }
}
