//! Model-based property test of lists: random sequences of list (and a
//! few string) commands on three keys run against the engine and against
//! a `VecDeque` model written from Redis' t_list.c, compared reply by
//! reply as [`Frame`]s, and at the end key by key.

use std::collections::VecDeque;

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;
use proptest::prelude::*;

const KEYS: [&str; 3] = ["l", "{l}2", "s"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Debug)]
enum Op {
    Push(bool, bool, usize, Vec<String>),
    Pop(bool, usize, Option<usize>),
    Len(usize),
    Range(usize, i64, i64),
    Index(usize, i64),
    LSet(usize, i64, String),
    Insert(usize, bool, String, String),
    Rem(usize, i64, String),
    Trim(usize, i64, i64),
    Pos(usize, String, i64, Option<usize>, usize),
    Move(usize, usize, bool, bool),
    MPop(Vec<usize>, bool, usize),
    BPop(bool, Vec<usize>),
    Set(usize, String),
    Del(usize),
}

#[derive(Clone, Debug)]
enum Val {
    Str,
    List(VecDeque<String>),
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

fn array(items: impl IntoIterator<Item = Frame>) -> Frame {
    Frame::Array(items.into_iter().collect())
}

/// Redis' index and range rules, written independently of the engine's.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (i >= 0 && i < len as i64).then_some(i as usize)
}

fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let s = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let e = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (s <= e && s < len).then_some((s as usize, e as usize))
}

impl Model {
    fn list(&self, k: usize) -> Result<Option<&VecDeque<String>>, Frame> {
        match &self.keys[k] {
            None => Ok(None),
            Some(Val::List(l)) => Ok(Some(l)),
            Some(Val::Str) => Err(error(WRONGTYPE)),
        }
    }

    /// A write to the list at `k` (created when `create`), dropping the
    /// key when it ends empty.
    fn write<R>(
        &mut self,
        k: usize,
        create: bool,
        f: impl FnOnce(&mut VecDeque<String>) -> R,
    ) -> Result<Option<R>, Frame> {
        let mut l = match self.keys[k].take() {
            None if !create => return Ok(None),
            None => VecDeque::new(),
            Some(Val::List(l)) => l,
            Some(Val::Str) => {
                self.keys[k] = Some(Val::Str);
                return Err(error(WRONGTYPE));
            }
        };
        let r = f(&mut l);
        if !l.is_empty() {
            self.keys[k] = Some(Val::List(l));
        }
        Ok(Some(r))
    }

    fn pop_n(&mut self, k: usize, left: bool, n: usize) -> Vec<String> {
        self.write(k, false, |l| {
            (0..n)
                .map_while(|_| if left { l.pop_front() } else { l.pop_back() })
                .collect()
        })
        .ok()
        .flatten()
        .unwrap_or_default()
    }

    fn apply(&mut self, op: &Op) -> Frame {
        self.try_apply(op).unwrap_or_else(|e| e)
    }

    fn try_apply(&mut self, op: &Op) -> Result<Frame, Frame> {
        Ok(match op {
            Op::Push(left, x, k, es) => {
                let r = self.write(*k, !x, |l| {
                    for e in es {
                        if *left {
                            l.push_front(e.clone())
                        } else {
                            l.push_back(e.clone())
                        }
                    }
                    l.len()
                })?;
                Frame::Integer(r.unwrap_or(0) as i64)
            }
            Op::Pop(left, k, count) => {
                if self.list(*k)?.is_none() {
                    return Ok(Frame::Null);
                }
                match count {
                    None => bulk(&self.pop_n(*k, *left, 1)[0]),
                    Some(n) => array(self.pop_n(*k, *left, *n).iter().map(|e| bulk(e))),
                }
            }
            Op::Len(k) => Frame::Integer(self.list(*k)?.map_or(0, |l| l.len()) as i64),
            Op::Range(k, s, e) => match self.list(*k)? {
                None => array([]),
                Some(l) => match range(*s, *e, l.len()) {
                    None => array([]),
                    Some((a, b)) => array(l.range(a..=b).map(|e| bulk(e))),
                },
            },
            Op::Index(k, i) => match self.list(*k)?.and_then(|l| l.get(index(*i, l.len())?)) {
                Some(e) => bulk(e),
                None => Frame::Null,
            },
            Op::LSet(k, i, e) => {
                let Some(l) = self.list(*k)? else {
                    return Err(error("ERR no such key"));
                };
                let Some(i) = index(*i, l.len()) else {
                    return Err(error("ERR index out of range"));
                };
                self.write(*k, false, |l| l[i] = e.clone())?;
                Frame::Simple(b"OK".to_vec())
            }
            Op::Insert(k, after, pivot, e) => {
                let Some(l) = self.list(*k)? else {
                    return Ok(Frame::Integer(0));
                };
                let Some(p) = l.iter().position(|x| x == pivot) else {
                    return Ok(Frame::Integer(-1));
                };
                let at = p + usize::from(*after);
                let n = self.write(*k, false, |l| {
                    l.insert(at, e.clone());
                    l.len()
                })?;
                Frame::Integer(n.unwrap_or(0) as i64)
            }
            Op::Rem(k, count, e) => {
                if self.list(*k)?.is_none() {
                    return Ok(Frame::Integer(0));
                }
                let n = self.write(*k, false, |l| {
                    let limit = if *count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    let mut removed = 0;
                    if *count >= 0 {
                        let mut i = 0;
                        while i < l.len() && removed < limit {
                            if &l[i] == e {
                                l.remove(i);
                                removed += 1;
                            } else {
                                i += 1;
                            }
                        }
                    } else {
                        let mut i = l.len();
                        while i > 0 && removed < limit {
                            i -= 1;
                            if &l[i] == e {
                                l.remove(i);
                                removed += 1;
                            }
                        }
                    }
                    removed
                })?;
                Frame::Integer(n.unwrap_or(0) as i64)
            }
            Op::Trim(k, s, e) => {
                self.write(*k, false, |l| match range(*s, *e, l.len()) {
                    None => l.clear(),
                    Some((a, b)) => {
                        l.truncate(b + 1);
                        l.drain(..a);
                    }
                })?;
                Frame::Simple(b"OK".to_vec())
            }
            Op::Pos(k, e, rank, count, maxlen) => {
                let Some(l) = self.list(*k)? else {
                    return Ok(if count.is_some() {
                        array([])
                    } else {
                        Frame::Null
                    });
                };
                let len = l.len();
                let scan = if *maxlen == 0 {
                    len
                } else {
                    (*maxlen).min(len)
                };
                let mut found = Vec::new();
                let mut matches = 0i64;
                for step in 0..scan {
                    let i = if *rank > 0 { step } else { len - 1 - step };
                    if &l[i] == e {
                        matches += 1;
                        if matches >= rank.abs() {
                            found.push(i as i64);
                            let want = count.unwrap_or(1);
                            if want != 0 && found.len() >= want {
                                break;
                            }
                        }
                    }
                }
                match count {
                    Some(_) => array(found.into_iter().map(Frame::Integer)),
                    None => found.first().map_or(Frame::Null, |&i| Frame::Integer(i)),
                }
            }
            Op::Move(a, b, from_left, to_left) => {
                if self.list(*a)?.is_none() {
                    return Ok(Frame::Null);
                }
                self.list(*b)?;
                let e = self.pop_n(*a, *from_left, 1).remove(0);
                self.write(*b, true, |l| {
                    if *to_left {
                        l.push_front(e.clone())
                    } else {
                        l.push_back(e.clone())
                    }
                })?;
                bulk(&e)
            }
            Op::MPop(keys, left, count) => {
                for &k in keys {
                    if self.list(k)?.is_some() {
                        let items = self.pop_n(k, *left, *count);
                        return Ok(array([bulk(KEYS[k]), array(items.iter().map(|e| bulk(e)))]));
                    }
                }
                Frame::Null
            }
            Op::BPop(left, keys) => {
                for &k in keys {
                    if self.list(k)?.is_some() {
                        let e = self.pop_n(k, *left, 1).remove(0);
                        return Ok(array([bulk(KEYS[k]), bulk(&e)]));
                    }
                }
                Frame::Null
            }
            Op::Set(k, _) => {
                self.keys[*k] = Some(Val::Str);
                Frame::Simple(b"OK".to_vec())
            }
            Op::Del(k) => Frame::Integer(i64::from(self.keys[*k].take().is_some())),
        })
    }
}

fn lr(left: bool) -> String {
    if left { "LEFT" } else { "RIGHT" }.into()
}

fn argv(op: &Op) -> Vec<String> {
    let key = |k: &usize| KEYS[*k].to_string();
    let mut v: Vec<String> = Vec::new();
    match op {
        Op::Push(left, x, k, es) => {
            let name = format!(
                "{}PUSH{}",
                if *left { "L" } else { "R" },
                if *x { "X" } else { "" }
            );
            v.extend([name, key(k)]);
            v.extend(es.iter().cloned());
        }
        Op::Pop(left, k, count) => {
            v.extend([if *left { "LPOP" } else { "RPOP" }.into(), key(k)]);
            v.extend(count.map(|c| c.to_string()));
        }
        Op::Len(k) => v.extend(["LLEN".into(), key(k)]),
        Op::Range(k, s, e) => v.extend(["LRANGE".into(), key(k), s.to_string(), e.to_string()]),
        Op::Index(k, i) => v.extend(["LINDEX".into(), key(k), i.to_string()]),
        Op::LSet(k, i, e) => v.extend(["LSET".into(), key(k), i.to_string(), e.clone()]),
        Op::Insert(k, after, p, e) => v.extend([
            "LINSERT".into(),
            key(k),
            if *after { "AFTER" } else { "BEFORE" }.into(),
            p.clone(),
            e.clone(),
        ]),
        Op::Rem(k, c, e) => v.extend(["LREM".into(), key(k), c.to_string(), e.clone()]),
        Op::Trim(k, s, e) => v.extend(["LTRIM".into(), key(k), s.to_string(), e.to_string()]),
        Op::Pos(k, e, rank, count, maxlen) => {
            v.extend([
                "LPOS".into(),
                key(k),
                e.clone(),
                "RANK".into(),
                rank.to_string(),
            ]);
            if let Some(c) = count {
                v.extend(["COUNT".into(), c.to_string()]);
            }
            v.extend(["MAXLEN".into(), maxlen.to_string()]);
        }
        Op::Move(a, b, f, t) => v.extend(["LMOVE".into(), key(a), key(b), lr(*f), lr(*t)]),
        Op::MPop(keys, left, count) => {
            v.extend(["LMPOP".into(), keys.len().to_string()]);
            v.extend(keys.iter().map(key));
            v.extend([lr(*left), "COUNT".into(), count.to_string()]);
        }
        Op::BPop(left, keys) => {
            v.push(if *left { "BLPOP" } else { "BRPOP" }.into());
            v.extend(keys.iter().map(key));
            v.push("0".into());
        }
        Op::Set(k, x) => v.extend(["SET".into(), key(k), x.clone()]),
        Op::Del(k) => v.extend(["DEL".into(), key(k)]),
    }
    v
}

fn exec(ks: &mut Keyspace, op: &Op) -> Frame {
    let owned = argv(op);
    let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &refs, 0, &mut out);
    out.take().pop().expect("one reply")
}

fn element() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0..6u32).prop_map(|i| format!("e{i}")),
        2 => (0..100u32).prop_map(|i| i.to_string()),
        1 => (30..200usize).prop_map(|n| "x".repeat(n)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..3usize;
    let idx = -8i64..8;
    prop_oneof![
        6 => (any::<bool>(), any::<bool>(), k.clone(), prop::collection::vec(element(), 1..12))
            .prop_map(|(l, x, k, es)| Op::Push(l, x, k, es)),
        3 => (any::<bool>(), k.clone(), prop::option::of(0..5usize)).prop_map(|(l, k, c)| Op::Pop(l, k, c)),
        1 => k.clone().prop_map(Op::Len),
        2 => (k.clone(), idx.clone(), idx.clone()).prop_map(|(k, s, e)| Op::Range(k, s, e)),
        1 => (k.clone(), idx.clone()).prop_map(|(k, i)| Op::Index(k, i)),
        1 => (k.clone(), idx.clone(), element()).prop_map(|(k, i, e)| Op::LSet(k, i, e)),
        1 => (k.clone(), any::<bool>(), element(), element()).prop_map(|(k, a, p, e)| Op::Insert(k, a, p, e)),
        1 => (k.clone(), -3i64..3, element()).prop_map(|(k, c, e)| Op::Rem(k, c, e)),
        1 => (k.clone(), idx.clone(), idx.clone()).prop_map(|(k, s, e)| Op::Trim(k, s, e)),
        2 => (k.clone(), element(), prop_oneof![1i64..4, -3i64..0], prop::option::of(0..3usize), 0..6usize)
            .prop_map(|(k, e, r, c, m)| Op::Pos(k, e, r, c, m)),
        2 => (k.clone(), k.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, b, f, t)| Op::Move(a, b, f, t)),
        1 => (prop::collection::vec(k.clone(), 1..3), any::<bool>(), 1..4usize)
            .prop_map(|(ks, l, c)| Op::MPop(ks, l, c)),
        1 => (any::<bool>(), prop::collection::vec(k.clone(), 1..3)).prop_map(|(l, ks)| Op::BPop(l, ks)),
        1 => (k.clone(), element()).prop_map(|(k, x)| Op::Set(k, x)),
        1 => k.prop_map(Op::Del),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_lists_match_the_model(ops in prop::collection::vec(op(), 1..100)) {
        let mut ks = Keyspace::new(0x5eed);
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = exec(&mut ks, op);
            prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
        }
        for (k, name) in KEYS.iter().enumerate() {
            let op = Op::Range(k, 0, -1);
            let want = model.apply(&op);
            prop_assert_eq!(exec(&mut ks, &op), want, "final {}", name);
        }
        let live = model.keys.iter().filter(|v| v.is_some()).count();
        prop_assert_eq!(ks.len(), live);
    }
}
