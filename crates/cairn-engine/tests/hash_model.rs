//! Model-based property test of hashes: random sequences of hash (and a
//! few string) commands on three keys run against the engine and against
//! a reference model written from Redis' t_hash.c, compared reply by
//! reply as [`Frame`]s, and at the end key by key.
//!
//! The model predicts order exactly, so the test pins the encodings too:
//! a listpack keeps insertion order (updates in place, deletes close the
//! gap), a table is a dense vector with swap-remove; a hash converts past
//! 128 pairs (or more than 128 pairs in one HSET) or a field or value
//! over 64 bytes, and never back.
//!
//! Field deadlines (HPEXPIRE, HPERSIST, HPTTL) run on a clock the test
//! advances: readers never see an expired field, and a write first
//! removes the expired fields in field-name order (which fixes a table's
//! order after swap-removes, so the model predicts it too).

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;
use proptest::prelude::*;

const KEYS: [&str; 3] = ["h", "{h}2", "s"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Debug)]
enum Op {
    HSet(usize, Vec<(String, String)>),
    HSetNx(usize, String, String),
    HDel(usize, Vec<String>),
    HGet(usize, String),
    HMGet(usize, Vec<String>),
    HLen(usize),
    HExists(usize, String),
    HStrLen(usize, String),
    HIncrBy(usize, String, i64),
    HGetAll(usize),
    HKeys(usize),
    Encoding(usize),
    Set(usize, String),
    Get(usize),
    Del(usize),
    /// HPEXPIRE key ms [cond] FIELDS n f...
    HPExpire(usize, u64, Option<&'static str>, Vec<String>),
    HPersist(usize, Vec<String>),
    HPTtl(usize, Vec<String>),
    /// The clock moves on (ms).
    Advance(u64),
}

#[derive(Clone, Default, Debug)]
struct ModelHash {
    pairs: Vec<(String, String)>,
    table: bool,
    ttl: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Hash(ModelHash),
}

impl ModelHash {
    fn pos(&self, f: &str) -> Option<usize> {
        self.pairs.iter().position(|(k, _)| k == f)
    }

    fn get(&self, f: &str) -> Option<&str> {
        self.pos(f).map(|i| self.pairs[i].1.as_str())
    }

    /// Redis' hashTypeSet on either encoding; true if new.
    fn set(&mut self, f: &str, v: &str) -> bool {
        if f.len() > 64 || v.len() > 64 {
            self.table = true;
        }
        let new = match self.pos(f) {
            Some(i) => {
                self.pairs[i].1 = v.to_string();
                false
            }
            None => {
                self.pairs.push((f.to_string(), v.to_string()));
                true
            }
        };
        if self.pairs.len() > 128 {
            self.table = true;
        }
        new
    }

    /// The fields expired at `now`, removed in field-name order.
    fn purge(&mut self, now: u64) {
        let gone: Vec<String> = self
            .ttl
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(f, _)| f.clone())
            .collect();
        for f in gone {
            self.del(&f);
        }
    }

    fn del(&mut self, f: &str) -> bool {
        self.ttl.remove(f);
        match self.pos(f) {
            Some(i) if self.table => {
                self.pairs.swap_remove(i);
                true
            }
            Some(i) => {
                self.pairs.remove(i);
                true
            }
            None => false,
        }
    }
}

#[derive(Default)]
struct Model {
    keys: [Option<Val>; 3],
    now: u64,
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn error(s: &str) -> Frame {
    Frame::Error(s.as_bytes().to_vec())
}

impl Model {
    /// The hash at `k` as a reader sees it now (without expired fields;
    /// none when all expired): Err(reply) for another type.
    fn hash(&self, k: usize) -> Result<Option<ModelHash>, Frame> {
        match &self.keys[k] {
            None => Ok(None),
            Some(Val::Hash(h)) => {
                let mut h = h.clone();
                h.purge(self.now);
                Ok((!h.pairs.is_empty()).then_some(h))
            }
            Some(Val::Str(_)) => Err(error(WRONGTYPE)),
        }
    }

    /// Applies a write to the hash at `k` (created if absent), dropping
    /// the key when it ends empty.
    fn write<R>(&mut self, k: usize, f: impl FnOnce(&mut ModelHash) -> R) -> Result<R, Frame> {
        let mut h = match self.keys[k].take() {
            None => ModelHash::default(),
            Some(Val::Hash(h)) => h,
            Some(s) => {
                self.keys[k] = Some(s);
                return Err(error(WRONGTYPE));
            }
        };
        h.purge(self.now);
        let r = f(&mut h);
        if !h.pairs.is_empty() {
            self.keys[k] = Some(Val::Hash(h));
        }
        Ok(r)
    }

    fn apply(&mut self, op: &Op) -> Frame {
        let r = match op {
            Op::HSet(k, pairs) => self
                .write(*k, |h| {
                    if pairs.len() > 128 {
                        h.table = true;
                    }
                    pairs
                        .iter()
                        .filter(|(f, v)| {
                            let new = h.set(f, v);
                            h.ttl.remove(f.as_str());
                            new
                        })
                        .count() as i64
                })
                .map(Frame::Integer),
            Op::HSetNx(k, f, v) => match self.hash(*k) {
                Err(e) => Err(e),
                Ok(Some(h)) if h.get(f).is_some() => Ok(Frame::Integer(0)),
                Ok(_) => self.write(*k, |h| h.set(f, v)).map(|_| Frame::Integer(1)),
            },
            Op::HDel(k, fields) => match self.hash(*k) {
                Err(e) => Err(e),
                Ok(None) => Ok(Frame::Integer(0)),
                // Deleting nothing is not a write: expired fields stay
                // stored (and the encoding keeps its deadlines).
                Ok(Some(h)) if fields.iter().all(|f| h.get(f).is_none()) => Ok(Frame::Integer(0)),
                Ok(Some(_)) => self
                    .write(*k, |h| fields.iter().filter(|f| h.del(f)).count() as i64)
                    .map(Frame::Integer),
            },
            Op::HGet(k, f) => self
                .hash(*k)
                .map(|h| h.as_ref().and_then(|h| h.get(f)).map_or(Frame::Null, bulk)),
            Op::HMGet(k, fs) => self.hash(*k).map(|h| {
                Frame::Array(
                    fs.iter()
                        .map(|f| h.as_ref().and_then(|h| h.get(f)).map_or(Frame::Null, bulk))
                        .collect(),
                )
            }),
            Op::HLen(k) => self
                .hash(*k)
                .map(|h| Frame::Integer(h.map_or(0, |h| h.pairs.len() as i64))),
            Op::HExists(k, f) => self
                .hash(*k)
                .map(|h| Frame::Integer(h.as_ref().and_then(|h| h.get(f)).is_some() as i64)),
            Op::HStrLen(k, f) => self.hash(*k).map(|h| {
                Frame::Integer(
                    h.as_ref()
                        .and_then(|h| h.get(f))
                        .map_or(0, |v| v.len() as i64),
                )
            }),
            Op::HIncrBy(k, f, d) => match self.hash(*k) {
                Err(e) => Err(e),
                Ok(h) => {
                    let cur = h.as_ref().and_then(|h| h.get(f)).map(|v| {
                        // Redis' string2ll: canonical decimal only.
                        v.parse::<i64>().ok().filter(|n| n.to_string() == v)
                    });
                    match cur {
                        Some(None) => Err(error("ERR hash value is not an integer")),
                        cur => match cur.flatten().unwrap_or(0).checked_add(*d) {
                            None => Err(error("ERR increment or decrement would overflow")),
                            Some(n) => self
                                .write(*k, |h| h.set(f, &n.to_string()))
                                .map(|_| Frame::Integer(n)),
                        },
                    }
                }
            },
            Op::HGetAll(k) => self.hash(*k).map(|h| {
                Frame::Map(
                    h.as_ref()
                        .map_or(&[][..], |h| &h.pairs)
                        .iter()
                        .map(|(f, v)| (bulk(f), bulk(v)))
                        .collect(),
                )
            }),
            Op::HKeys(k) => self.hash(*k).map(|h| {
                Frame::Array(
                    h.as_ref()
                        .map_or(&[][..], |h| &h.pairs)
                        .iter()
                        .map(|(f, _)| bulk(f))
                        .collect(),
                )
            }),
            Op::Encoding(k) => Ok(match &self.keys[*k] {
                None => Frame::Null,
                Some(Val::Hash(h)) => bulk(match (h.table, h.ttl.is_empty()) {
                    (true, _) => "hashtable",
                    (false, true) => "listpack",
                    (false, false) => "listpackex",
                }),
                Some(Val::Str(s)) => bulk(if s.parse::<i64>().is_ok_and(|n| n.to_string() == *s) {
                    "int"
                } else {
                    "embstr"
                }),
            }),
            Op::Set(k, v) => {
                self.keys[*k] = Some(Val::Str(v.clone()));
                Ok(Frame::Simple(b"OK".to_vec()))
            }
            Op::Get(k) => match &self.keys[*k] {
                None => Ok(Frame::Null),
                Some(Val::Str(s)) => Ok(bulk(s)),
                Some(Val::Hash(_)) => Err(error(WRONGTYPE)),
            },
            Op::Del(k) => Ok(Frame::Integer(self.keys[*k].take().is_some() as i64)),
            Op::HPExpire(k, ms, cond, fields) => match self.hash(*k) {
                Err(e) => Err(e),
                Ok(h) => {
                    let at = self.now + ms;
                    let codes: Vec<i64> = fields
                        .iter()
                        .map(|f| match h.as_ref().filter(|h| h.get(f).is_some()) {
                            None => -2,
                            Some(h) => {
                                let cur = h.ttl.get(f.as_str()).copied();
                                let ok = match *cond {
                                    None => true,
                                    Some("NX") => cur.is_none(),
                                    Some("XX") => cur.is_some(),
                                    Some("GT") => cur.is_some_and(|c| at > c),
                                    _ => cur.is_none_or(|c| at < c),
                                };
                                match (ok, at <= self.now) {
                                    (false, _) => 0,
                                    (true, false) => 1,
                                    (true, true) => 2,
                                }
                            }
                        })
                        .collect();
                    if codes.iter().any(|&c| c > 0) {
                        let _ = self.write(*k, |h| {
                            for (f, &c) in fields.iter().zip(&codes) {
                                if c == 1 {
                                    h.ttl.insert(f.clone(), at);
                                } else if c == 2 {
                                    h.del(f);
                                }
                            }
                        });
                    }
                    Ok(Frame::Array(
                        codes.into_iter().map(Frame::Integer).collect(),
                    ))
                }
            },
            Op::HPersist(k, fields) => match self.hash(*k) {
                Err(e) => Err(e),
                Ok(h) => {
                    let codes: Vec<i64> = fields
                        .iter()
                        .map(|f| match h.as_ref().filter(|h| h.get(f).is_some()) {
                            None => -2,
                            Some(h) if h.ttl.contains_key(f.as_str()) => 1,
                            Some(_) => -1,
                        })
                        .collect();
                    if codes.contains(&1) {
                        let _ = self.write(*k, |h| {
                            for f in fields {
                                h.ttl.remove(f.as_str());
                            }
                        });
                    }
                    Ok(Frame::Array(
                        codes.into_iter().map(Frame::Integer).collect(),
                    ))
                }
            },
            Op::HPTtl(k, fields) => self.hash(*k).map(|h| {
                Frame::Array(
                    fields
                        .iter()
                        .map(|f| {
                            Frame::Integer(match h.as_ref().filter(|h| h.get(f).is_some()) {
                                None => -2,
                                Some(h) => {
                                    h.ttl.get(f.as_str()).map_or(-1, |&t| (t - self.now) as i64)
                                }
                            })
                        })
                        .collect(),
                )
            }),
            Op::Advance(ms) => {
                self.now += ms;
                Ok(Frame::Simple(b"OK".to_vec()))
            }
        };
        r.unwrap_or_else(|e| e)
    }
}

fn argv(op: &Op) -> Vec<String> {
    let key = |k: &usize| KEYS[*k].to_string();
    let mut v: Vec<String> = Vec::new();
    match op {
        Op::HSet(k, pairs) => {
            v.extend(["HSET".into(), key(k)]);
            for (f, x) in pairs {
                v.extend([f.clone(), x.clone()]);
            }
        }
        Op::HSetNx(k, f, x) => v.extend(["HSETNX".into(), key(k), f.clone(), x.clone()]),
        Op::HDel(k, fs) => {
            v.extend(["HDEL".into(), key(k)]);
            v.extend(fs.iter().cloned());
        }
        Op::HGet(k, f) => v.extend(["HGET".into(), key(k), f.clone()]),
        Op::HMGet(k, fs) => {
            v.extend(["HMGET".into(), key(k)]);
            v.extend(fs.iter().cloned());
        }
        Op::HLen(k) => v.extend(["HLEN".into(), key(k)]),
        Op::HExists(k, f) => v.extend(["HEXISTS".into(), key(k), f.clone()]),
        Op::HStrLen(k, f) => v.extend(["HSTRLEN".into(), key(k), f.clone()]),
        Op::HIncrBy(k, f, d) => v.extend(["HINCRBY".into(), key(k), f.clone(), d.to_string()]),
        Op::HGetAll(k) => v.extend(["HGETALL".into(), key(k)]),
        Op::HKeys(k) => v.extend(["HKEYS".into(), key(k)]),
        Op::Encoding(k) => v.extend(["OBJECT".into(), "ENCODING".into(), key(k)]),
        Op::Set(k, x) => v.extend(["SET".into(), key(k), x.clone()]),
        Op::Get(k) => v.extend(["GET".into(), key(k)]),
        Op::Del(k) => v.extend(["DEL".into(), key(k)]),
        Op::HPExpire(k, ms, cond, fs) => {
            v.extend(["HPEXPIRE".into(), key(k), ms.to_string()]);
            v.extend(cond.map(String::from));
            v.extend(["FIELDS".into(), fs.len().to_string()]);
            v.extend(fs.iter().cloned());
        }
        Op::HPersist(k, fs) => {
            v.extend([
                "HPERSIST".into(),
                key(k),
                "FIELDS".into(),
                fs.len().to_string(),
            ]);
            v.extend(fs.iter().cloned());
        }
        Op::HPTtl(k, fs) => {
            v.extend([
                "HPTTL".into(),
                key(k),
                "FIELDS".into(),
                fs.len().to_string(),
            ]);
            v.extend(fs.iter().cloned());
        }
        Op::Advance(_) => v.push("PING".into()),
    }
    v
}

fn exec(ks: &mut Keyspace, op: &Op, now: &mut u64) -> Frame {
    if let Op::Advance(ms) = op {
        *now += ms;
        return Frame::Simple(b"OK".to_vec());
    }
    let owned = argv(op);
    let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    if let Op::Encoding(_) = op {
        // OBJECT is not a transaction command: run it directly.
        use cairn_engine::cmd::Command;
        match cairn_engine::cmd::object::Object::parse(&refs) {
            Ok(c) => c.apply(ks, *now, &mut out),
            Err(e) => cairn_engine::Reply::error(&mut out, e.msg()),
        }
    } else {
        apply_in_tx(ks, &refs, *now, &mut out);
    }
    out.take().pop().expect("one reply")
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0..8u32).prop_map(|i| format!("f{i}")),
        2 => (0..200u32).prop_map(|i| format!("f{i}")),
        1 => (60..70usize).prop_map(|n| "F".repeat(n)),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (-20i64..20).prop_map(|n| n.to_string()),
        2 => "[a-z]{0,6}",
        1 => Just("9223372036854775807".to_string()),
        1 => Just("012".to_string()),
        1 => (60..70usize).prop_map(|n| "v".repeat(n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..3usize;
    prop_oneof![
        8 => (k.clone(), prop::collection::vec((field(), value()), 1..4)).prop_map(|(k, p)| Op::HSet(k, p)),
        1 => (k.clone(), prop::collection::vec((field(), value()), 20..140)).prop_map(|(k, p)| Op::HSet(k, p)),
        2 => (k.clone(), field(), value()).prop_map(|(k, f, v)| Op::HSetNx(k, f, v)),
        4 => (k.clone(), prop::collection::vec(field(), 1..4)).prop_map(|(k, f)| Op::HDel(k, f)),
        1 => (k.clone(), prop::collection::vec(field(), 30..80)).prop_map(|(k, f)| Op::HDel(k, f)),
        3 => (k.clone(), field()).prop_map(|(k, f)| Op::HGet(k, f)),
        1 => (k.clone(), prop::collection::vec(field(), 1..4)).prop_map(|(k, f)| Op::HMGet(k, f)),
        1 => k.clone().prop_map(Op::HLen),
        1 => (k.clone(), field()).prop_map(|(k, f)| Op::HExists(k, f)),
        1 => (k.clone(), field()).prop_map(|(k, f)| Op::HStrLen(k, f)),
        3 => (k.clone(), field(), prop_oneof![-5i64..5, Just(i64::MAX), Just(i64::MIN)]).prop_map(|(k, f, d)| Op::HIncrBy(k, f, d)),
        2 => k.clone().prop_map(Op::HGetAll),
        1 => k.clone().prop_map(Op::HKeys),
        2 => k.clone().prop_map(Op::Encoding),
        1 => (k.clone(), "[0-9a-z]{1,4}").prop_map(|(k, v)| Op::Set(k, v)),
        1 => k.clone().prop_map(Op::Get),
        1 => k.clone().prop_map(Op::Del),
        3 => (k.clone(), prop_oneof![Just(0u64), 1..50u64, Just(1000)], prop_oneof![Just(None), Just(Some("NX")), Just(Some("XX")), Just(Some("GT")), Just(Some("LT"))], prop::collection::vec(field(), 1..4)).prop_map(|(k, ms, c, f)| Op::HPExpire(k, ms, c, f)),
        1 => (k.clone(), prop::collection::vec(field(), 1..3)).prop_map(|(k, f)| Op::HPersist(k, f)),
        1 => (k, prop::collection::vec(field(), 1..3)).prop_map(|(k, f)| Op::HPTtl(k, f)),
        2 => (1..40u64).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_hashes_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut ks = Keyspace::new(0x5eed);
        let mut model = Model::default();
        let mut now = 0;
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = exec(&mut ks, op, &mut now);
            prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
        }
        for (k, name) in KEYS.iter().enumerate() {
            let want = model.apply(&Op::HGetAll(k));
            prop_assert_eq!(exec(&mut ks, &Op::HGetAll(k), &mut now), want, "final {}", name);
        }
        let live = model.keys.iter().filter(|v| v.is_some()).count();
        prop_assert_eq!(ks.len(), live);
    }
}
