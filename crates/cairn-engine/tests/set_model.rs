//! Model-based property test of sets: random sequences of set (and a
//! few string) commands on three keys run against the engine and against
//! a reference model written from Redis 7.2's t_set.c, compared reply by
//! reply as [`Frame`]s, and at the end key by key.
//!
//! The model predicts order exactly, so the test pins the encodings and
//! their conversions too: an intset is ascending, a listpack keeps
//! insertion order (a delete closes the gap), a table is a dense vector
//! with swap-remove; an intset becomes a listpack on its first string
//! (while it has fewer than 128 members and the string is at most 64
//! bytes) or a table (otherwise, or past 512 members), a listpack a table
//! past 128 members or on a member over 64 bytes, and nothing converts
//! back. Computed sets (SUNIONSTORE, ...) start as intsets, as in Redis.

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;
use proptest::prelude::*;

const KEYS: [&str; 3] = ["a", "b", "c"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Debug)]
enum Op {
    SAdd(usize, Vec<String>),
    SRem(usize, Vec<String>),
    SIsMember(usize, String),
    SMIsMember(usize, Vec<String>),
    SCard(usize),
    SMembers(usize),
    SMove(usize, usize, String),
    /// 0 SINTER, 1 SUNION, 2 SDIFF; with a destination: the STORE form.
    Algebra(u8, Option<usize>, Vec<usize>),
    SInterCard(Vec<usize>, usize),
    /// SPOP key count with a count at least the size: deterministic.
    SPopAll(usize),
    Encoding(usize),
    Set(usize, String),
    Get(usize),
    Del(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Enc {
    Intset,
    Listpack,
    Table,
}

#[derive(Clone, Debug)]
struct ModelSet {
    members: Vec<String>,
    enc: Enc,
}

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Set(ModelSet),
}

/// Redis' string2ll: canonical decimal only.
fn int(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| n.to_string() == s)
}

impl ModelSet {
    /// Redis' setTypeCreate.
    fn create(first: &str, hint: usize) -> ModelSet {
        let enc = if int(first).is_some() && hint <= 512 {
            Enc::Intset
        } else if hint <= 128 {
            Enc::Listpack
        } else {
            Enc::Table
        };
        ModelSet {
            members: Vec::new(),
            enc,
        }
    }

    fn empty() -> ModelSet {
        ModelSet {
            members: Vec::new(),
            enc: Enc::Intset,
        }
    }

    fn has(&self, m: &str) -> bool {
        self.members.iter().any(|x| x == m)
    }

    /// Redis' setTypeMaybeConvert.
    fn reserve(&mut self, hint: usize) {
        if (self.enc == Enc::Intset && hint > 512) || (self.enc == Enc::Listpack && hint > 128) {
            self.enc = Enc::Table;
        }
    }

    /// Redis' setTypeAddAux; true if new.
    fn add(&mut self, m: &str) -> bool {
        if self.has(m) {
            return false;
        }
        match self.enc {
            Enc::Intset => match int(m) {
                Some(n) => {
                    let at = self
                        .members
                        .iter()
                        .position(|x| int(x).is_some_and(|x| x > n))
                        .unwrap_or(self.members.len());
                    self.members.insert(at, m.to_string());
                    if self.members.len() > 512 {
                        self.enc = Enc::Table;
                    }
                    return true;
                }
                None if self.members.len() < 128 && m.len() <= 64 => self.enc = Enc::Listpack,
                None => self.enc = Enc::Table,
            },
            Enc::Listpack if self.members.len() >= 128 || m.len() > 64 => self.enc = Enc::Table,
            _ => {}
        }
        self.members.push(m.to_string());
        true
    }

    fn del(&mut self, m: &str) -> bool {
        match self.members.iter().position(|x| x == m) {
            Some(i) if self.enc == Enc::Table => {
                self.members.swap_remove(i);
                true
            }
            Some(i) => {
                self.members.remove(i);
                true
            }
            None => false,
        }
    }
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

fn members(s: &ModelSet) -> Frame {
    Frame::Array(s.members.iter().map(|m| bulk(m)).collect())
}

impl Model {
    /// The set at `k` for a read: Err(reply) for another type.
    fn set(&self, k: usize) -> Result<Option<&ModelSet>, Frame> {
        match &self.keys[k] {
            None => Ok(None),
            Some(Val::Set(s)) => Ok(Some(s)),
            Some(Val::Str(_)) => Err(error(WRONGTYPE)),
        }
    }

    /// Applies a write to the set at `k` (`create`d if absent), dropping
    /// the key when it ends empty.
    fn write<R>(
        &mut self,
        k: usize,
        create: impl FnOnce() -> ModelSet,
        f: impl FnOnce(&mut ModelSet) -> R,
    ) -> R {
        let mut s = match self.keys[k].take() {
            Some(Val::Set(s)) => s,
            _ => create(),
        };
        let r = f(&mut s);
        if !s.members.is_empty() {
            self.keys[k] = Some(Val::Set(s));
        }
        r
    }

    fn sets(&self, ks: &[usize]) -> Result<Vec<Option<ModelSet>>, Frame> {
        ks.iter().map(|&k| Ok(self.set(k)?.cloned())).collect()
    }

    fn inter(sets: &[Option<ModelSet>]) -> Vec<String> {
        let Some(mut present) = sets.iter().map(|s| s.as_ref()).collect::<Option<Vec<_>>>() else {
            return Vec::new();
        };
        present.sort_by_key(|s| s.members.len());
        present[0]
            .members
            .iter()
            .filter(|m| present[1..].iter().all(|s| s.has(m)))
            .cloned()
            .collect()
    }

    fn algebra(&mut self, op: u8, dest: Option<usize>, ks: &[usize]) -> Result<Frame, Frame> {
        let sets = self.sets(ks)?;
        let found: Vec<String> = match op {
            0 => Self::inter(&sets),
            1 => sets
                .iter()
                .flatten()
                .flat_map(|s| s.members.clone())
                .collect(),
            _ => match &sets[0] {
                None => Vec::new(),
                Some(first) => first
                    .members
                    .iter()
                    .filter(|m| !sets[1..].iter().flatten().any(|s| s.has(m)))
                    .cloned()
                    .collect(),
            },
        };
        if op == 0 && dest.is_none() {
            return Ok(Frame::Array(found.iter().map(|m| bulk(m)).collect()));
        }
        let mut result = ModelSet::empty();
        for m in &found {
            result.add(m);
        }
        let Some(d) = dest else {
            return Ok(members(&result));
        };
        let n = result.members.len() as i64;
        self.keys[d] = (n > 0).then_some(Val::Set(result));
        Ok(Frame::Integer(n))
    }

    fn apply(&mut self, op: &Op) -> Frame {
        let r = match op {
            Op::SAdd(k, ms) => match self.set(*k).map(|s| s.is_some()) {
                Err(e) => Err(e),
                Ok(_) => {
                    let n = self.write(
                        *k,
                        || ModelSet::create(&ms[0], ms.len()),
                        |s| {
                            s.reserve(ms.len());
                            ms.iter().filter(|m| s.add(m)).count() as i64
                        },
                    );
                    Ok(Frame::Integer(n))
                }
            },
            Op::SRem(k, ms) => match self.set(*k).map(|s| s.is_some()) {
                Err(e) => Err(e),
                Ok(false) => Ok(Frame::Integer(0)),
                Ok(true) => {
                    let n = self.write(*k, ModelSet::empty, |s| {
                        ms.iter().filter(|m| s.del(m)).count() as i64
                    });
                    Ok(Frame::Integer(n))
                }
            },
            Op::SIsMember(k, m) => self
                .set(*k)
                .map(|s| Frame::Integer(s.is_some_and(|s| s.has(m)) as i64)),
            Op::SMIsMember(k, ms) => self.set(*k).map(|s| {
                Frame::Array(
                    ms.iter()
                        .map(|m| Frame::Integer(s.is_some_and(|s| s.has(m)) as i64))
                        .collect(),
                )
            }),
            Op::SCard(k) => self
                .set(*k)
                .map(|s| Frame::Integer(s.map_or(0, |s| s.members.len() as i64))),
            Op::SMembers(k) => self
                .set(*k)
                .map(|s| s.map_or(Frame::Array(Vec::new()), members)),
            Op::SMove(from, to, m) => match self.set(*from).map(|s| s.map(|s| s.has(m))) {
                Err(e) => Err(e),
                Ok(None) => Ok(Frame::Integer(0)),
                Ok(Some(held)) => match self.set(*to).map(|_| ()) {
                    Err(e) => Err(e),
                    Ok(()) if from == to || !held => Ok(Frame::Integer(held as i64)),
                    Ok(()) => {
                        self.write(*from, ModelSet::empty, |s| s.del(m));
                        self.write(*to, || ModelSet::create(m, 1), |s| s.add(m));
                        Ok(Frame::Integer(1))
                    }
                },
            },
            Op::Algebra(o, dest, ks) => self.algebra(*o, *dest, ks),
            Op::SInterCard(ks, limit) => self.sets(ks).map(|sets| {
                let n = Self::inter(&sets).len();
                Frame::Integer(if *limit == 0 { n } else { n.min(*limit) } as i64)
            }),
            Op::SPopAll(k) => match self.set(*k).map(|s| s.cloned()) {
                Err(e) => Err(e),
                Ok(None) => Ok(Frame::Array(Vec::new())),
                Ok(Some(s)) => {
                    let mut all = ModelSet::empty();
                    for m in &s.members {
                        all.add(m);
                    }
                    self.keys[*k] = None;
                    Ok(members(&all))
                }
            },
            Op::Encoding(k) => Ok(match &self.keys[*k] {
                None => Frame::Null,
                Some(Val::Set(s)) => bulk(match s.enc {
                    Enc::Intset => "intset",
                    Enc::Listpack => "listpack",
                    Enc::Table => "hashtable",
                }),
                Some(Val::Str(s)) => bulk(if int(s).is_some() { "int" } else { "embstr" }),
            }),
            Op::Set(k, v) => {
                self.keys[*k] = Some(Val::Str(v.clone()));
                Ok(Frame::Simple(b"OK".to_vec()))
            }
            Op::Get(k) => match &self.keys[*k] {
                None => Ok(Frame::Null),
                Some(Val::Str(s)) => Ok(bulk(s)),
                Some(Val::Set(_)) => Err(error(WRONGTYPE)),
            },
            Op::Del(k) => Ok(Frame::Integer(self.keys[*k].take().is_some() as i64)),
        };
        r.unwrap_or_else(|e| e)
    }
}

fn argv(op: &Op) -> Vec<String> {
    let key = |k: &usize| KEYS[*k].to_string();
    let mut v: Vec<String> = Vec::new();
    match op {
        Op::SAdd(k, ms) => {
            v.extend(["SADD".into(), key(k)]);
            v.extend(ms.iter().cloned());
        }
        Op::SRem(k, ms) => {
            v.extend(["SREM".into(), key(k)]);
            v.extend(ms.iter().cloned());
        }
        Op::SIsMember(k, m) => v.extend(["SISMEMBER".into(), key(k), m.clone()]),
        Op::SMIsMember(k, ms) => {
            v.extend(["SMISMEMBER".into(), key(k)]);
            v.extend(ms.iter().cloned());
        }
        Op::SCard(k) => v.extend(["SCARD".into(), key(k)]),
        Op::SMembers(k) => v.extend(["SMEMBERS".into(), key(k)]),
        Op::SMove(a, b, m) => v.extend(["SMOVE".into(), key(a), key(b), m.clone()]),
        Op::Algebra(o, dest, ks) => {
            let name = ["SINTER", "SUNION", "SDIFF"][*o as usize];
            match dest {
                Some(d) => v.extend([format!("{name}STORE"), key(d)]),
                None => v.push(name.into()),
            }
            v.extend(ks.iter().map(key));
        }
        Op::SInterCard(ks, limit) => {
            v.extend(["SINTERCARD".into(), ks.len().to_string()]);
            v.extend(ks.iter().map(key));
            v.extend(["LIMIT".into(), limit.to_string()]);
        }
        Op::SPopAll(k) => v.extend(["SPOP".into(), key(k), "1000".into()]),
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

fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (-10i64..10).prop_map(|n| n.to_string()),
        2 => (0..700i64).prop_map(|n| n.to_string()),
        4 => "[a-d]{1,2}",
        1 => (0..200u32).prop_map(|i| format!("m{i}")),
        1 => Just("-0".to_string()),
        1 => Just("007".to_string()),
        1 => Just(i64::MIN.to_string()),
        1 => (62..67usize).prop_map(|n| "L".repeat(n)),
    ]
}

fn ints(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0..700i64).prop_map(|n| n.to_string()), n)
}

fn keys() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..3usize, 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..3usize;
    prop_oneof![
        10 => (k.clone(), prop::collection::vec(member(), 1..5)).prop_map(|(k, m)| Op::SAdd(k, m)),
        1 => (k.clone(), prop::collection::vec(member(), 100..140)).prop_map(|(k, m)| Op::SAdd(k, m)),
        1 => (k.clone(), ints(100..600)).prop_map(|(k, m)| Op::SAdd(k, m)),
        4 => (k.clone(), prop::collection::vec(member(), 1..4)).prop_map(|(k, m)| Op::SRem(k, m)),
        1 => (k.clone(), ints(50..300)).prop_map(|(k, m)| Op::SRem(k, m)),
        2 => (k.clone(), member()).prop_map(|(k, m)| Op::SIsMember(k, m)),
        1 => (k.clone(), prop::collection::vec(member(), 1..4)).prop_map(|(k, m)| Op::SMIsMember(k, m)),
        1 => k.clone().prop_map(Op::SCard),
        3 => k.clone().prop_map(Op::SMembers),
        3 => (k.clone(), k.clone(), member()).prop_map(|(a, b, m)| Op::SMove(a, b, m)),
        4 => (0..3u8, prop::option::of(k.clone()), keys()).prop_map(|(o, d, ks)| Op::Algebra(o, d, ks)),
        1 => (keys(), 0..4usize).prop_map(|(ks, l)| Op::SInterCard(ks, l)),
        1 => k.clone().prop_map(Op::SPopAll),
        3 => k.clone().prop_map(Op::Encoding),
        1 => (k.clone(), "[0-9a-z]{1,4}").prop_map(|(k, v)| Op::Set(k, v)),
        1 => k.clone().prop_map(Op::Get),
        1 => k.prop_map(Op::Del),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_sets_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut ks = Keyspace::new(0x5eed);
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = exec(&mut ks, op);
            prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
        }
        for (k, name) in KEYS.iter().enumerate() {
            let want = model.apply(&Op::SMembers(k));
            prop_assert_eq!(exec(&mut ks, &Op::SMembers(k)), want, "final {}", name);
        }
        let live = model.keys.iter().filter(|v| v.is_some()).count();
        prop_assert_eq!(ks.len(), live);
    }
}
