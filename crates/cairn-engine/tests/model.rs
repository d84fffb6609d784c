//! Model-based property tests of the string and key commands.
//!
//! Random command sequences over six keys (some sharing a `{tag}`) run
//! against the engine, split over four [`Keyspace`] shards by
//! `slot(key) % 4` so multi-key commands cross shards, and against a small
//! reference model of Redis written from the Redis documentation and source.
//! A virtual clock advances 0..3000 ms between commands (sometimes exactly
//! onto, or 1 ms past, a key's deadline). Every reply is compared as a
//! [`Frame`]; at the end so is the whole visible keyspace.
//!
//! Reference semantics are Redis 7.2, plus Valkey 8.1's `SET ... IFEQ`.
//! Choices where Redis and Valkey differ, or the docs are silent, are marked
//! "CHOICE" below.
//!
//! Divergences found so far are pinned as fixed sequences at the end of this
//! file. While one is open, it can be masked in the random tests to look for
//! others (never in CI):
//! `MODEL_SKIP=dup,xxlt,errorder,expiretime,getexnow cargo test -p
//! cairn-engine --test model` (see `skip`). Unset, everything asserts Redis.
//!
//! A failure prints the shrunk sequence as the commands actually sent (with
//! their time offsets and the engine's replies), ready to paste into a
//! regression test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cairn_engine::cmd::{self, Command, Db};
use cairn_engine::{slot, FrameReply, Keyspace, Reply};
use cairn_proto::Frame;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------
// The engine under test: four shards, like a standalone node.
// ---------------------------------------------------------------------------

const SHARDS: usize = 4;

struct Node {
    shards: Vec<Keyspace>,
}

impl Node {
    fn new() -> Self {
        Node {
            shards: (0..SHARDS as u64)
                .map(|i| Keyspace::new(0x5eed + i))
                .collect(),
        }
    }

    /// Live keys of every shard (the KEYS * path: no lazy deletion).
    fn keys(&self, now: u64) -> BTreeSet<Vec<u8>> {
        let mut out = Vec::new();
        for ks in &self.shards {
            cmd::keys::keys_in(ks, b"*", now, &mut out);
        }
        out.into_iter().collect()
    }
}

impl Db for Node {
    fn shard(&mut self, key: &[u8]) -> &mut Keyspace {
        &mut self.shards[slot::slot(key) as usize % SHARDS]
    }
}

fn run<'a, C: Command<'a>>(argv: &'a [&'a [u8]], node: &mut Node, now: u64, out: &mut FrameReply) {
    match C::parse(argv) {
        Ok(c) => c.apply(node, now, out),
        Err(e) => out.error(e.msg()),
    }
}

/// Runs one command on the engine, as the server's command table would
/// (arity is already right: the generator only makes well-formed arities).
fn exec_engine(node: &mut Node, argv: &[Vec<u8>], now: u64) -> Frame {
    use cmd::*;
    let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let a = refs.as_slice();
    let o = &mut FrameReply::new();
    let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
    match name.as_str() {
        "GET" => run::<get::Get<'_>>(a, node, now, o),
        "SET" => run::<set::Set<'_>>(a, node, now, o),
        "GETSET" => run::<getset::GetSet<'_>>(a, node, now, o),
        "GETDEL" => run::<getdel::GetDel<'_>>(a, node, now, o),
        "GETEX" => run::<getex::GetEx<'_>>(a, node, now, o),
        "SETNX" => run::<setnx::SetNx<'_>>(a, node, now, o),
        "SETEX" => run::<setex::SetEx<'_, false>>(a, node, now, o),
        "PSETEX" => run::<setex::PSetEx<'_>>(a, node, now, o),
        "MSET" => run::<mset::MSet<'_, false>>(a, node, now, o),
        "MSETNX" => run::<mset::MSetNx<'_>>(a, node, now, o),
        "MGET" => run::<mget::MGet<'_>>(a, node, now, o),
        "DEL" => run::<del::Del<'_, true>>(a, node, now, o),
        "EXISTS" => run::<exists::Exists<'_>>(a, node, now, o),
        "INCR" => run::<incr::Incr<'_>>(a, node, now, o),
        "DECR" => run::<incr::Decr<'_>>(a, node, now, o),
        "INCRBY" => run::<incr::IncrBy<'_, 1, true>>(a, node, now, o),
        "DECRBY" => run::<incr::DecrBy<'_>>(a, node, now, o),
        "INCRBYFLOAT" => run::<incrbyfloat::IncrByFloat<'_>>(a, node, now, o),
        "APPEND" => run::<append::Append<'_>>(a, node, now, o),
        "STRLEN" => run::<strlen::StrLen<'_>>(a, node, now, o),
        "GETRANGE" => run::<getrange::GetRange<'_>>(a, node, now, o),
        "SETRANGE" => run::<setrange::SetRange<'_>>(a, node, now, o),
        "EXPIRE" => run::<expire::Expire<'_, 0>>(a, node, now, o),
        "PEXPIRE" => run::<expire::PExpire<'_>>(a, node, now, o),
        "EXPIREAT" => run::<expire::ExpireAt<'_>>(a, node, now, o),
        "PEXPIREAT" => run::<expire::PExpireAt<'_>>(a, node, now, o),
        "TTL" => run::<ttl::Ttl<'_, 0>>(a, node, now, o),
        "PTTL" => run::<ttl::PTtl<'_>>(a, node, now, o),
        "EXPIRETIME" => run::<ttl::ExpireTime<'_>>(a, node, now, o),
        "PEXPIRETIME" => run::<ttl::PExpireTime<'_>>(a, node, now, o),
        "PERSIST" => run::<persist::Persist<'_>>(a, node, now, o),
        "RENAME" => run::<rename::Rename<'_, false>>(a, node, now, o),
        "RENAMENX" => run::<rename::RenameNx<'_>>(a, node, now, o),
        "COPY" => run::<copy::Copy<'_>>(a, node, now, o),
        "TYPE" => run::<type_::Type<'_>>(a, node, now, o),
        other => panic!("test dispatch lacks {other}"),
    }
    let mut frames = o.take();
    assert_eq!(frames.len(), 1, "{name} wrote {} replies", frames.len());
    frames.pop().unwrap_or(Frame::Null)
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

const SYNTAX: &str = "ERR syntax error";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
/// proto-max-bulk-len default.
const BULK_MAX: i64 = 512 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    val: Vec<u8>,
    /// Absolute unix-ms deadline. Redis: expired when `now > deadline`.
    deadline: Option<i64>,
}

#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, Entry>,
}

/// What the model expects of one reply.
enum Expect {
    Exact(Frame),
    /// INCRBYFLOAT outside the "simple values" domain, where Redis computes
    /// in 80-bit long double and prints `%.17Lf`: the reply is not checked,
    /// and the model adopts the engine's resulting value.
    Adopt(Vec<u8>),
}

fn err(msg: &str) -> Frame {
    Frame::Error(msg.as_bytes().to_vec())
}

fn bulk(b: &[u8]) -> Frame {
    Frame::Bulk(b.to_vec())
}

fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Redis' `string2ll`: optional '-', digits, no leading zeros, no "-0",
/// no '+', no spaces, fits in i64.
fn parse_int(s: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(s).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.starts_with('0') && (digits.len() > 1 || text.starts_with('-')))
    {
        return None;
    }
    text.parse().ok()
}

/// INCRBYFLOAT's operand: `Err` when Redis' `string2ld` rejects it,
/// `Ok(Some)` in the "simple" domain (a multiple of 1/4 below 2^50, exact in
/// f64 and in long double, so any correct implementation agrees digit for
/// digit), `Ok(None)` for a valid number outside it.
fn parse_float(s: &[u8]) -> Result<Option<f64>, ()> {
    if s.is_empty() || s[0].is_ascii_whitespace() {
        return Err(());
    }
    let text = std::str::from_utf8(s).map_err(|_| ())?;
    let v: f64 = text.parse().map_err(|_| ())?;
    if v.is_nan() {
        return Err(());
    }
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if !plain || !v.is_finite() || v.abs() >= (1u64 << 50) as f64 || (v * 4.0).fract() != 0.0 {
        return Ok(None);
    }
    Ok(Some(v))
}

/// `%.17Lf` with trailing zeros (and dot) removed, for a simple value.
fn format_float(v: f64) -> String {
    if v == v.trunc() {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl Unit {
    fn parse(arg: &[u8]) -> Option<Unit> {
        [
            ("EX", Unit::Ex),
            ("PX", Unit::Px),
            ("EXAT", Unit::ExAt),
            ("PXAT", Unit::PxAt),
        ]
        .into_iter()
        .find(|(w, _)| is(arg, w))
        .map(|(_, u)| u)
    }
}

/// Redis' `getExpireMillisecondsOrReply`.
fn expire_ms(arg: &[u8], unit: Unit, now: i64, cmd: &str) -> Result<i64, Frame> {
    let n = parse_int(arg).ok_or_else(|| err(NOT_INTEGER))?;
    let invalid = || err(&format!("ERR invalid expire time in '{cmd}' command"));
    let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if seconds { n * 1000 } else { n };
    if matches!(unit, Unit::Ex | Unit::Px) {
        // Redis adds and then rejects a result <= 0 (signed overflow).
        return ms.checked_add(now).ok_or_else(invalid);
    }
    Ok(ms)
}

impl Model {
    /// The live entry of `key`; an expired one is dropped first.
    fn live(&mut self, key: &[u8], now: i64) -> Option<Entry> {
        match self.map.get(key) {
            Some(e) if e.deadline.is_some_and(|d| now > d) => {
                self.map.remove(key);
                None
            }
            other => other.cloned(),
        }
    }

    fn put(&mut self, key: &[u8], val: Vec<u8>, deadline: Option<i64>) {
        self.map.insert(key.to_vec(), Entry { val, deadline });
    }

    fn exec(&mut self, argv: &[Vec<u8>], now: i64) -> Expect {
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
        let arg = |i: usize| argv[i].as_slice();
        let f = match name.as_str() {
            "GET" => self.live(arg(1), now).map_or(Frame::Null, |e| bulk(&e.val)),
            "SET" => self.set(argv, now),
            "GETSET" => {
                let old = self.live(arg(1), now);
                self.put(arg(1), arg(2).to_vec(), None);
                old.map_or(Frame::Null, |e| bulk(&e.val))
            }
            "GETDEL" => match self.live(arg(1), now) {
                Some(e) => {
                    self.map.remove(arg(1));
                    bulk(&e.val)
                }
                None => Frame::Null,
            },
            "GETEX" => self.getex(argv, now),
            "SETNX" => {
                if self.live(arg(1), now).is_some() {
                    Frame::Integer(0)
                } else {
                    self.put(arg(1), arg(2).to_vec(), None);
                    Frame::Integer(1)
                }
            }
            "SETEX" | "PSETEX" => {
                let (unit, cmd) = if name == "SETEX" {
                    (Unit::Ex, "setex")
                } else {
                    (Unit::Px, "psetex")
                };
                match expire_ms(arg(2), unit, now, cmd) {
                    Ok(d) => {
                        self.put(arg(1), arg(3).to_vec(), Some(d));
                        ok()
                    }
                    Err(e) => e,
                }
            }
            "MSET" | "MSETNX" => {
                let nx = name == "MSETNX";
                let pairs = &argv[1..];
                if nx && pairs.chunks(2).any(|kv| self.live(&kv[0], now).is_some()) {
                    Frame::Integer(0)
                } else {
                    for kv in pairs.chunks(2) {
                        self.put(&kv[0], kv[1].clone(), None);
                    }
                    if nx {
                        Frame::Integer(1)
                    } else {
                        ok()
                    }
                }
            }
            "MGET" => Frame::Array(
                argv[1..]
                    .iter()
                    .map(|k| self.live(k, now).map_or(Frame::Null, |e| bulk(&e.val)))
                    .collect(),
            ),
            "DEL" => {
                let mut n = 0;
                for k in &argv[1..] {
                    if self.live(k, now).is_some() {
                        self.map.remove(k);
                        n += 1;
                    }
                }
                Frame::Integer(n)
            }
            "EXISTS" => Frame::Integer(
                argv[1..]
                    .iter()
                    .filter(|k| self.live(k, now).is_some())
                    .count() as i64,
            ),
            "INCR" | "DECR" | "INCRBY" | "DECRBY" => self.incr(&name, argv, now),
            "INCRBYFLOAT" => return self.incrbyfloat(argv, now),
            "APPEND" => {
                let (mut val, deadline) = match self.live(arg(1), now) {
                    Some(e) => (e.val, e.deadline),
                    None => (Vec::new(), None),
                };
                val.extend_from_slice(arg(2));
                let len = val.len() as i64;
                self.put(arg(1), val, deadline);
                Frame::Integer(len)
            }
            "STRLEN" => Frame::Integer(self.live(arg(1), now).map_or(0, |e| e.val.len() as i64)),
            "GETRANGE" => self.getrange(argv, now),
            "SETRANGE" => self.setrange(argv, now),
            "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => self.expire(&name, argv, now),
            "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" => match self.live(arg(1), now) {
                None => Frame::Integer(-2),
                Some(Entry { deadline: None, .. }) => Frame::Integer(-1),
                Some(Entry {
                    deadline: Some(d), ..
                }) => {
                    let abs = name.contains("EXPIRETIME");
                    let ms = name.starts_with('P');
                    let ttl = if abs { d } else { d - now }.max(0);
                    // Seconds are rounded, for TTL and EXPIRETIME alike
                    // (Redis' ttlGenericCommand: `(ttl+500)/1000`).
                    Frame::Integer(if ms {
                        ttl
                    } else if abs && skip("expiretime") {
                        ttl / 1000
                    } else {
                        (ttl + 500) / 1000
                    })
                }
            },
            "PERSIST" => match self.live(arg(1), now) {
                Some(e) if e.deadline.is_some() => {
                    self.put(arg(1), e.val, None);
                    Frame::Integer(1)
                }
                _ => Frame::Integer(0),
            },
            "RENAME" | "RENAMENX" => {
                let nx = name == "RENAMENX";
                let (from, to) = (arg(1), arg(2));
                match self.live(from, now) {
                    None => err("ERR no such key"),
                    Some(_) if from == to => {
                        if nx {
                            Frame::Integer(0)
                        } else {
                            ok()
                        }
                    }
                    Some(_) if nx && self.live(to, now).is_some() => Frame::Integer(0),
                    Some(e) => {
                        self.map.remove(from);
                        self.map.insert(to.to_vec(), e);
                        if nx {
                            Frame::Integer(1)
                        } else {
                            ok()
                        }
                    }
                }
            }
            "COPY" => self.copy(argv, now),
            "TYPE" => Frame::Simple(
                if self.live(arg(1), now).is_some() {
                    "string"
                } else {
                    "none"
                }
                .into(),
            ),
            other => panic!("model lacks {other}"),
        };
        Expect::Exact(f)
    }

    /// SET key value [NX | XX | IFEQ cmp] [GET] [EX | PX | EXAT | PXAT t | KEEPTTL]
    ///
    /// Parsing follows Redis 7.2's `parseExtendedStringArgumentsOrReply`:
    /// options may repeat (`NX NX`, `GET GET`, `KEEPTTL KEEPTTL`, `EX 1 EX 2`
    /// with the last value winning) as long as no conflicting option was
    /// seen; NX/XX conflict, and so do two different expiry forms or an
    /// expiry and KEEPTTL. CHOICE (Valkey 8.1 IFEQ): IFEQ conflicts with NX,
    /// XX and a second IFEQ (the generator never repeats IFEQ).
    fn set(&mut self, argv: &[Vec<u8>], now: i64) -> Frame {
        let (key, value) = (argv[1].as_slice(), argv[2].as_slice());
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        let mut ifeq: Option<&[u8]> = None;
        let mut exp: Option<(Unit, &[u8])> = None;
        let mut j = 3;
        while j < argv.len() {
            let a = argv[j].as_slice();
            let next = argv.get(j + 1).map(|v| v.as_slice());
            if is(a, "NX") && !xx && ifeq.is_none() {
                nx = true;
            } else if is(a, "XX") && !nx && ifeq.is_none() {
                xx = true;
            } else if is(a, "IFEQ") && !nx && !xx && ifeq.is_none() && next.is_some() {
                ifeq = next;
                j += 1;
            } else if is(a, "GET") {
                get = true;
            } else if is(a, "KEEPTTL") && exp.is_none() {
                keepttl = true;
            } else if let (Some(unit), Some(v)) = (Unit::parse(a), next) {
                if keepttl || exp.is_some_and(|(u, _)| u != unit) {
                    return err(SYNTAX);
                }
                exp = Some((unit, v));
                j += 1;
            } else {
                return err(SYNTAX);
            }
            j += 1;
        }
        let deadline = match exp {
            Some((unit, v)) => match expire_ms(v, unit, now, "set") {
                Ok(d) => Some(d),
                Err(e) => return e,
            },
            None => None,
        };
        let old = self.live(key, now);
        let allowed = match (nx, xx, ifeq) {
            (true, _, _) => old.is_none(),
            (_, true, _) => old.is_some(),
            (_, _, Some(cmp)) => old.as_ref().is_some_and(|e| e.val == cmp),
            _ => true,
        };
        if allowed {
            let keep = if keepttl {
                old.as_ref().and_then(|e| e.deadline)
            } else {
                None
            };
            // CHOICE: Redis 7.2 stores a deadline already in the past and the
            // key is simply expired (invisible); only a deadline of exactly
            // `now` is observable, and stays visible until now+1. (Valkey
            // 8.1+ deletes at once when deadline <= now.)
            self.put(key, value.to_vec(), deadline.or(keep));
        }
        match (get, allowed) {
            (true, _) => old.map_or(Frame::Null, |e| bulk(&e.val)),
            (false, true) => ok(),
            (false, false) => Frame::Null,
        }
    }

    /// GETEX key [EX | PX | EXAT | PXAT t | PERSIST]. Options may repeat as
    /// in SET (`PERSIST PERSIST`, `EX 1 EX 2`), but not mix.
    ///
    /// CHOICE: the expire value is validated before the key is looked up,
    /// as in Valkey (Redis 7.2 replies nil for a missing key first).
    fn getex(&mut self, argv: &[Vec<u8>], now: i64) -> Frame {
        let key = argv[1].as_slice();
        let mut persist = false;
        let mut exp: Option<(Unit, &[u8])> = None;
        let mut j = 2;
        while j < argv.len() {
            let a = argv[j].as_slice();
            let next = argv.get(j + 1).map(|v| v.as_slice());
            if is(a, "PERSIST") && exp.is_none() {
                persist = true;
            } else if let (Some(unit), Some(v)) = (Unit::parse(a), next) {
                if persist || exp.is_some_and(|(u, _)| u != unit) {
                    return err(SYNTAX);
                }
                exp = Some((unit, v));
                j += 1;
            } else {
                return err(SYNTAX);
            }
            j += 1;
        }
        let deadline = match exp {
            Some((unit, v)) => match expire_ms(v, unit, now, "getex") {
                Ok(d) => Some((unit, d)),
                Err(e) => return e,
            },
            None => None,
        };
        let Some(e) = self.live(key, now) else {
            return Frame::Null;
        };
        match deadline {
            // checkAlreadyExpired: an absolute deadline <= now deletes.
            Some((Unit::ExAt | Unit::PxAt, d)) if d < now || (d == now && !skip("getexnow")) => {
                self.map.remove(key);
            }
            Some((_, d)) => self.put(key, e.val.clone(), Some(d)),
            None if persist => self.put(key, e.val.clone(), None),
            None => {}
        }
        bulk(&e.val)
    }

    fn incr(&mut self, name: &str, argv: &[Vec<u8>], now: i64) -> Frame {
        let delta = match name {
            "INCR" => 1,
            "DECR" => -1,
            _ => {
                let Some(n) = parse_int(&argv[2]) else {
                    return err(NOT_INTEGER);
                };
                if name == "INCRBY" {
                    n
                } else if n == i64::MIN {
                    return err("ERR decrement would overflow");
                } else {
                    -n
                }
            }
        };
        let key = argv[1].as_slice();
        let (cur, deadline) = match self.live(key, now) {
            None => (0, None),
            Some(e) => match parse_int(&e.val) {
                Some(n) => (n, e.deadline),
                None => return err(NOT_INTEGER),
            },
        };
        let Some(next) = cur.checked_add(delta) else {
            return err(OVERFLOW);
        };
        self.put(key, next.to_string().into_bytes(), deadline);
        Frame::Integer(next)
    }

    fn incrbyfloat(&mut self, argv: &[Vec<u8>], now: i64) -> Expect {
        let key = argv[1].as_slice();
        let old = self.live(key, now);
        let cur = match &old {
            None => Ok(Some(0.0)),
            Some(e) => parse_float(&e.val),
        };
        let (Ok(cur), Ok(incr)) = (cur, parse_float(&argv[2])) else {
            return Expect::Exact(err(NOT_FLOAT));
        };
        let (Some(cur), Some(incr)) = (cur, incr) else {
            return Expect::Adopt(key.to_vec());
        };
        let text = format_float(cur + incr).into_bytes();
        self.put(key, text.clone(), old.and_then(|e| e.deadline));
        Expect::Exact(Frame::Bulk(text))
    }

    fn getrange(&mut self, argv: &[Vec<u8>], now: i64) -> Frame {
        let (Some(mut start), Some(mut end)) = (parse_int(&argv[2]), parse_int(&argv[3])) else {
            return err(NOT_INTEGER);
        };
        let Some(e) = self.live(&argv[1], now) else {
            return bulk(b"");
        };
        let len = e.val.len() as i64;
        // Redis 7.2 / Valkey 8.1 getrangeCommand, step by step.
        if start < 0 && end < 0 && start > end {
            return bulk(b"");
        }
        if start < 0 {
            start += len;
        }
        if end < 0 {
            end += len;
        }
        start = start.max(0);
        end = end.max(0);
        if end >= len {
            end = len - 1;
        }
        if start > end || len == 0 {
            return bulk(b"");
        }
        bulk(&e.val[start as usize..=end as usize])
    }

    fn setrange(&mut self, argv: &[Vec<u8>], now: i64) -> Frame {
        let key = argv[1].as_slice();
        let value = argv[3].as_slice();
        let Some(offset) = parse_int(&argv[2]) else {
            return err(NOT_INTEGER);
        };
        if offset < 0 {
            return err("ERR offset is out of range");
        }
        let old = self.live(key, now);
        if value.is_empty() {
            return Frame::Integer(old.map_or(0, |e| e.val.len() as i64));
        }
        if offset + value.len() as i64 > BULK_MAX {
            return err(TOO_BIG);
        }
        let (mut val, deadline) = old.map_or((Vec::new(), None), |e| (e.val, e.deadline));
        let end = offset as usize + value.len();
        if val.len() < end {
            val.resize(end, 0);
        }
        val[offset as usize..end].copy_from_slice(value);
        let len = val.len() as i64;
        self.put(key, val, deadline);
        Frame::Integer(len)
    }

    /// Redis 7.2 `expireGenericCommand`: options are checked before the
    /// time; NX excludes the others, GT excludes LT, but XX combines with GT
    /// or LT (both conditions must hold). A key without a deadline has an
    /// infinite one: GT never passes, LT always does.
    fn expire(&mut self, name: &str, argv: &[Vec<u8>], now: i64) -> Frame {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for a in &argv[3..] {
            if is(a, "NX") {
                nx = true;
            } else if is(a, "XX") {
                xx = true;
            } else if is(a, "GT") {
                gt = true;
            } else if is(a, "LT") {
                lt = true;
            } else {
                return err(&format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(a)
                ));
            }
        }
        if nx && (xx || gt || lt) {
            return err("ERR NX and XX, GT or LT options at the same time are not compatible");
        }
        if gt && lt {
            return err("ERR GT and LT options at the same time are not compatible");
        }
        let Some(mut when) = parse_int(&argv[2]) else {
            return err(NOT_INTEGER);
        };
        let invalid = || {
            err(&format!(
                "ERR invalid expire time in '{}' command",
                name.to_ascii_lowercase()
            ))
        };
        if name == "EXPIRE" || name == "EXPIREAT" {
            if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
                return invalid();
            }
            when *= 1000;
        }
        let base = if name.ends_with("AT") { 0 } else { now };
        if when > i64::MAX - base {
            return invalid();
        }
        when += base;
        let key = argv[1].as_slice();
        let Some(e) = self.live(key, now) else {
            return Frame::Integer(0);
        };
        let cur = e.deadline;
        if (nx && cur.is_some())
            || (xx && cur.is_none())
            || (gt && cur.is_none_or(|c| when <= c))
            || (lt && cur.is_some_and(|c| when >= c))
        {
            return Frame::Integer(0);
        }
        if when <= now {
            self.map.remove(key);
        } else {
            self.put(key, e.val, Some(when));
        }
        Frame::Integer(1)
    }

    /// COPY source destination [DB 0] [REPLACE]
    fn copy(&mut self, argv: &[Vec<u8>], now: i64) -> Frame {
        let mut replace = false;
        let mut j = 3;
        while j < argv.len() {
            if is(&argv[j], "REPLACE") {
                replace = true;
            } else if is(&argv[j], "DB") && j + 1 < argv.len() {
                match parse_int(&argv[j + 1]) {
                    None => return err(NOT_INTEGER),
                    Some(0) => {}
                    Some(_) => return err("ERR DB index is out of range"),
                }
                j += 1;
            } else {
                return err(SYNTAX);
            }
            j += 1;
        }
        let (from, to) = (argv[1].as_slice(), argv[2].as_slice());
        if from == to {
            return err("ERR source and destination objects are the same");
        }
        let Some(e) = self.live(from, now) else {
            return Frame::Integer(0);
        };
        if self.live(to, now).is_some() && !replace {
            return Frame::Integer(0);
        }
        self.map.insert(to.to_vec(), e);
        Frame::Integer(1)
    }

    /// Every live key with its value and deadline.
    fn visible(&mut self, now: i64) -> BTreeMap<Vec<u8>, Entry> {
        self.map.retain(|_, e| e.deadline.is_none_or(|d| now <= d));
        self.map.clone()
    }
}

// ---------------------------------------------------------------------------
// Generated operations. Times are relative and rendered at execution time,
// so shrinking keeps them meaningful.
// ---------------------------------------------------------------------------

const KEYS: [&str; 6] = ["a", "b", "c", "{t}1", "{t}2", "{u}1"];

const VALUES: [&str; 21] = [
    "",
    "0",
    "1",
    "-1",
    "7",
    "42",
    "007",
    "-0",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "1.5",
    "-2.25",
    "3.0",
    "1e3",
    "abc",
    "hello world",
    " 5",
    "12345678901234567890",
    "a value that is longer than twenty-two bytes",
    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
];

const INT_ARGS: [&str; 11] = [
    "1",
    "-1",
    "5",
    "100",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
    "abc",
    "1.5",
    "",
    "010",
];

const FLOAT_ARGS: [&str; 10] = [
    "0.25", "-1.5", "3", "10.5", "-0.75", "1e2", "abc", "", "2.0", "0",
];

const RANGE_ARGS: [&str; 11] = [
    "0",
    "1",
    "3",
    "10",
    "100",
    "-1",
    "-5",
    "-100",
    "9223372036854775807",
    "-9223372036854775808",
    "abc",
];

const OFFSET_ARGS: [&str; 8] = ["0", "1", "2", "5", "30", "-1", "536870912", "abc"];

/// Malformed or extreme time arguments.
const BAD_TIMES: [&str; 6] = [
    "0",
    "-1",
    "abc",
    "9223372036854775",
    "9223372036854775808",
    "-9223372036854775808",
];

#[derive(Clone, Debug)]
enum Time {
    /// EX/EXPIRE: seconds; PX/PEXPIRE: ms; EXAT/PXAT/EXPIREAT/PEXPIREAT: an
    /// offset in ms from now, rendered as an absolute time.
    Rel(i64),
    Raw(&'static str),
}

#[derive(Clone, Debug)]
enum Tok {
    Nx,
    Xx,
    IfEq(usize),
    Get,
    KeepTtl,
    Persist,
    Exp(Unit, Time),
    Junk,
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize, usize, Vec<Tok>),
    Get(usize),
    GetSet(usize, usize),
    GetDel(usize),
    GetEx(usize, Vec<Tok>),
    SetNx(usize, usize),
    SetEx(bool, usize, Time, usize),
    MSet(bool, Vec<(usize, usize)>),
    MGet(Vec<usize>),
    Del(Vec<usize>),
    Exists(Vec<usize>),
    Incr(usize),
    Decr(usize),
    IncrBy(usize, usize),
    DecrBy(usize, usize),
    IncrByFloat(usize, usize),
    Append(usize, usize),
    StrLen(usize),
    GetRange(usize, usize, usize),
    SetRange(usize, usize, usize),
    /// 0 EXPIRE, 1 PEXPIRE, 2 EXPIREAT, 3 PEXPIREAT.
    Expire(u8, usize, Time, Vec<&'static str>),
    /// 0 TTL, 1 PTTL, 2 EXPIRETIME, 3 PEXPIRETIME.
    Ttl(u8, usize),
    Persist(usize),
    Rename(bool, usize, usize),
    Copy(usize, usize, bool, bool),
    Type(usize),
}

#[derive(Clone, Debug)]
enum Advance {
    Ms(u64),
    /// To exactly the deadline of a key (plus 0 or 1 ms), when it has one
    /// in the future; else no advance.
    ToDeadline(usize, u64),
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn val() -> impl Strategy<Value = usize> {
    0..VALUES.len()
}

fn keys() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(key(), 1..5)
}

fn exp() -> impl Strategy<Value = (Unit, Time)> {
    let near = prop_oneof![Just(0i64), Just(-1), Just(1), -3000i64..9000];
    prop_oneof![
        3 => (1i64..6).prop_map(|s| (Unit::Ex, Time::Rel(s))),
        3 => (1i64..6000).prop_map(|ms| (Unit::Px, Time::Rel(ms))),
        2 => near.clone().prop_map(|o| (Unit::ExAt, Time::Rel(o))),
        3 => near.prop_map(|o| (Unit::PxAt, Time::Rel(o))),
        1 => (
            prop::sample::select(vec![Unit::Ex, Unit::Px, Unit::ExAt, Unit::PxAt]),
            prop::sample::select(BAD_TIMES.to_vec()),
        )
            .prop_map(|(u, t)| (u, Time::Raw(t))),
    ]
}

fn set_tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        3 => Just(Tok::Nx),
        3 => Just(Tok::Xx),
        3 => val().prop_map(Tok::IfEq),
        3 => Just(Tok::Get),
        2 => Just(Tok::KeepTtl),
        8 => exp().prop_map(|(u, t)| Tok::Exp(u, t)),
        1 => Just(Tok::Junk),
    ]
}

fn getex_tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        3 => Just(Tok::Persist),
        8 => exp().prop_map(|(u, t)| Tok::Exp(u, t)),
        1 => Just(Tok::KeepTtl),
        1 => Just(Tok::Junk),
    ]
}

fn expire_time(unit: u8) -> BoxedStrategy<Time> {
    let rel = match unit {
        0 => (-2i64..7).boxed(),
        1 => (-2000i64..7000).boxed(),
        _ => prop_oneof![Just(0i64), Just(-1), Just(1), -3000i64..9000].boxed(),
    };
    prop_oneof![
        8 => rel.prop_map(Time::Rel),
        1 => prop::sample::select(BAD_TIMES.to_vec()).prop_map(Time::Raw),
    ]
    .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    let pick = |v: &'static [&'static str]| 0..v.len();
    prop_oneof![
        12 => (key(), val(), prop::collection::vec(set_tok(), 0..4))
            .prop_map(|(k, v, t)| Op::Set(k, v, t)),
        6 => key().prop_map(Op::Get),
        2 => (key(), val()).prop_map(|(k, v)| Op::GetSet(k, v)),
        2 => key().prop_map(Op::GetDel),
        4 => (key(), prop::collection::vec(getex_tok(), 0..3))
            .prop_map(|(k, t)| Op::GetEx(k, t)),
        2 => (key(), val()).prop_map(|(k, v)| Op::SetNx(k, v)),
        3 => (any::<bool>(), key(), prop::bool::weighted(0.2), val()).prop_flat_map(|(ms, k, bad, v)| {
            let t = match (bad, ms) {
                (true, _) => prop::sample::select(BAD_TIMES.to_vec()).prop_map(Time::Raw).boxed(),
                (false, false) => (1i64..6).prop_map(Time::Rel).boxed(),
                (false, true) => (1i64..6000).prop_map(Time::Rel).boxed(),
            };
            t.prop_map(move |t| Op::SetEx(ms, k, t, v))
        }),
        3 => (any::<bool>(), prop::collection::vec((key(), val()), 1..4))
            .prop_map(|(nx, kv)| Op::MSet(nx, kv)),
        2 => keys().prop_map(Op::MGet),
        3 => keys().prop_map(Op::Del),
        2 => keys().prop_map(Op::Exists),
        2 => key().prop_map(Op::Incr),
        1 => key().prop_map(Op::Decr),
        2 => (key(), pick(&INT_ARGS)).prop_map(|(k, n)| Op::IncrBy(k, n)),
        2 => (key(), pick(&INT_ARGS)).prop_map(|(k, n)| Op::DecrBy(k, n)),
        3 => (key(), pick(&FLOAT_ARGS)).prop_map(|(k, n)| Op::IncrByFloat(k, n)),
        3 => (key(), val()).prop_map(|(k, v)| Op::Append(k, v)),
        2 => key().prop_map(Op::StrLen),
        2 => (key(), pick(&RANGE_ARGS), pick(&RANGE_ARGS))
            .prop_map(|(k, s, e)| Op::GetRange(k, s, e)),
        2 => (key(), pick(&OFFSET_ARGS), val()).prop_map(|(k, o, v)| Op::SetRange(k, o, v)),
        10 => (0u8..4, key()).prop_flat_map(|(u, k)| {
            let flags = prop::collection::vec(
                prop::sample::select(vec!["NX", "XX", "GT", "LT", "gt", "xx", "FOO"]),
                0..3,
            );
            (expire_time(u), flags).prop_map(move |(t, f)| Op::Expire(u, k, t, f))
        }),
        6 => (0u8..4, key()).prop_map(|(m, k)| Op::Ttl(m, k)),
        2 => key().prop_map(Op::Persist),
        3 => (any::<bool>(), key(), key()).prop_map(|(nx, a, b)| Op::Rename(nx, a, b)),
        3 => (key(), key(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(a, b, r, db)| Op::Copy(a, b, r, db)),
        2 => key().prop_map(Op::Type),
    ]
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        2 => Just(Advance::Ms(0)),
        12 => (0u64..3000).prop_map(Advance::Ms),
        2 => (key(), 0u64..2).prop_map(|(k, p)| Advance::ToDeadline(k, p)),
    ]
}

fn render_time(unit_abs: bool, seconds: bool, t: &Time, now: u64) -> Vec<u8> {
    match t {
        Time::Raw(s) if skip("errorder") && parse_int(s.as_bytes()).is_none() => b"0".to_vec(),
        Time::Raw(s) => s.as_bytes().to_vec(),
        Time::Rel(v) if !unit_abs => v.to_string().into_bytes(),
        Time::Rel(off) => {
            let at = now as i64 + off;
            if seconds {
                at.div_euclid(1000).to_string().into_bytes()
            } else {
                at.to_string().into_bytes()
            }
        }
    }
}

fn render_exp(argv: &mut Vec<Vec<u8>>, unit: Unit, t: &Time, now: u64) {
    let (word, abs, secs) = match unit {
        Unit::Ex => ("EX", false, true),
        Unit::Px => ("PX", false, false),
        Unit::ExAt => ("EXAT", true, true),
        Unit::PxAt => ("PXAT", true, false),
    };
    argv.push(word.into());
    argv.push(render_time(abs, secs, t, now));
}

/// Whether the open divergence `bug` is masked (see the module docs):
/// "dup" repeated SET/GETEX options, "xxlt" EXPIRE XX with GT/LT,
/// "errorder" non-numeric times next to bad options, "expiretime"
/// EXPIRETIME rounding, "getexnow" GETEX EXAT/PXAT equal to now.
fn skip(bug: &str) -> bool {
    std::env::var("MODEL_SKIP").is_ok_and(|v| v.split(',').any(|b| b == bug))
}

fn render(op: &Op, now: u64) -> Vec<Vec<u8>> {
    let dedup = |t: &[Tok]| -> Vec<Tok> {
        if !skip("dup") {
            return t.to_vec();
        }
        let mut seen = Vec::new();
        t.iter()
            .filter(|x| {
                let d = std::mem::discriminant(*x);
                if seen.contains(&d) {
                    false
                } else {
                    seen.push(d);
                    true
                }
            })
            .cloned()
            .collect()
    };
    let k = |i: usize| KEYS[i].as_bytes().to_vec();
    let v = |i: usize| VALUES[i].as_bytes().to_vec();
    let w = |s: &str| s.as_bytes().to_vec();
    let toks = |argv: &mut Vec<Vec<u8>>, toks: &[Tok]| {
        let mut ifeq_seen = false;
        for t in toks {
            match t {
                Tok::Nx => argv.push(w("NX")),
                Tok::Xx => argv.push(w("xx")),
                Tok::IfEq(i) if !ifeq_seen => {
                    ifeq_seen = true;
                    argv.push(w("IFEQ"));
                    argv.push(v(*i));
                }
                Tok::IfEq(_) => {}
                Tok::Get => argv.push(w("GET")),
                Tok::KeepTtl => argv.push(w("KEEPTTL")),
                Tok::Persist => argv.push(w("PERSIST")),
                Tok::Exp(u, t) => render_exp(argv, *u, t, now),
                Tok::Junk => argv.push(w("BOGUS")),
            }
        }
    };
    let many = |name: &str, ks: &[usize]| {
        let mut argv = vec![w(name)];
        argv.extend(ks.iter().map(|&i| k(i)));
        argv
    };
    match op {
        Op::Set(key, val, t) => {
            let mut argv = vec![w("SET"), k(*key), v(*val)];
            toks(&mut argv, &dedup(t));
            argv
        }
        Op::Get(key) => vec![w("GET"), k(*key)],
        Op::GetSet(key, val) => vec![w("GETSET"), k(*key), v(*val)],
        Op::GetDel(key) => vec![w("GETDEL"), k(*key)],
        Op::GetEx(key, t) => {
            let mut argv = vec![w("GETEX"), k(*key)];
            toks(&mut argv, &dedup(t));
            argv
        }
        Op::SetNx(key, val) => vec![w("SETNX"), k(*key), v(*val)],
        Op::SetEx(ms, key, t, val) => vec![
            w(if *ms { "PSETEX" } else { "SETEX" }),
            k(*key),
            render_time(false, !ms, t, now),
            v(*val),
        ],
        Op::MSet(nx, kv) => {
            let mut argv = vec![w(if *nx { "MSETNX" } else { "MSET" })];
            for &(key, val) in kv {
                argv.push(k(key));
                argv.push(v(val));
            }
            argv
        }
        Op::MGet(ks) => many("MGET", ks),
        Op::Del(ks) => many("DEL", ks),
        Op::Exists(ks) => many("EXISTS", ks),
        Op::Incr(key) => vec![w("INCR"), k(*key)],
        Op::Decr(key) => vec![w("DECR"), k(*key)],
        Op::IncrBy(key, n) => vec![w("INCRBY"), k(*key), w(INT_ARGS[*n])],
        Op::DecrBy(key, n) => vec![w("DECRBY"), k(*key), w(INT_ARGS[*n])],
        Op::IncrByFloat(key, n) => vec![w("INCRBYFLOAT"), k(*key), w(FLOAT_ARGS[*n])],
        Op::Append(key, val) => vec![w("APPEND"), k(*key), v(*val)],
        Op::StrLen(key) => vec![w("STRLEN"), k(*key)],
        Op::GetRange(key, s, e) => {
            vec![w("GETRANGE"), k(*key), w(RANGE_ARGS[*s]), w(RANGE_ARGS[*e])]
        }
        Op::SetRange(key, o, val) => vec![w("SETRANGE"), k(*key), w(OFFSET_ARGS[*o]), v(*val)],
        Op::Expire(unit, key, t, flags) => {
            let name = ["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"][*unit as usize];
            let mut argv = vec![
                w(name),
                k(*key),
                render_time(*unit >= 2, *unit % 2 == 0, t, now),
            ];
            let ltgt = flags.iter().any(|f| matches!(*f, "GT" | "LT" | "gt"));
            argv.extend(
                flags
                    .iter()
                    .filter(|f| !(skip("xxlt") && ltgt && matches!(**f, "XX" | "xx")))
                    .map(|f| w(f)),
            );
            argv
        }
        Op::Ttl(mode, key) => {
            let name = ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"][*mode as usize];
            vec![w(name), k(*key)]
        }
        Op::Persist(key) => vec![w("PERSIST"), k(*key)],
        Op::Rename(nx, a, b) => vec![w(if *nx { "RENAMENX" } else { "RENAME" }), k(*a), k(*b)],
        Op::Copy(a, b, replace, db) => {
            let mut argv = vec![w("COPY"), k(*a), k(*b)];
            if *db {
                argv.push(w("DB"));
                argv.push(w("0"));
            }
            if *replace {
                argv.push(w("REPLACE"));
            }
            argv
        }
        Op::Type(key) => vec![w("TYPE"), k(*key)],
    }
}

// ---------------------------------------------------------------------------
// Runners.
// ---------------------------------------------------------------------------

const T0: u64 = 1_700_000_000_000;

fn show_argv(argv: &[Vec<u8>]) -> String {
    argv.iter()
        .map(|a| {
            let s = String::from_utf8_lossy(a);
            if s.is_empty() || s.contains(' ') {
                format!("{s:?}")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn show(f: &Frame) -> String {
    match f {
        Frame::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
        Frame::Error(s) => format!("-{}", String::from_utf8_lossy(s)),
        Frame::Integer(n) => format!("(integer) {n}"),
        Frame::Bulk(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Frame::Null => "(nil)".into(),
        Frame::Array(v) => format!("[{}]", v.iter().map(show).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    }
}

fn resolve(adv: &Advance, now: u64, deadline_of: impl Fn(&[u8]) -> Option<i64>) -> u64 {
    match adv {
        Advance::Ms(ms) => *ms,
        Advance::ToDeadline(k, plus) => match deadline_of(KEYS[*k].as_bytes()) {
            // Only near deadlines: the clock stays a realistic unix time.
            Some(d) if d >= now as i64 && d - (now as i64) < 3_600_000 => d as u64 - now + plus,
            _ => 0,
        },
    }
}

/// Runs `steps` on the engine and the model, comparing every reply and the
/// final visible content.
fn check_against_model(steps: &[(Advance, Op)]) -> Result<(), TestCaseError> {
    let mut node = Node::new();
    let mut model = Model::default();
    let mut now = T0;
    let mut log = String::new();
    let fail = |log: &str, what: String| {
        TestCaseError::fail(format!(
            "{what}\n--- commands (ms since start, command, engine reply) ---\n{log}"
        ))
    };
    for (adv, op) in steps {
        now += resolve(adv, now, |k| model.map.get(k).and_then(|e| e.deadline));
        let argv = render(op, now);
        let expected = model.exec(&argv, now as i64);
        let got = exec_engine(&mut node, &argv, now);
        let _ = writeln!(
            log,
            "{:>7}  {}  -> {}",
            now - T0,
            show_argv(&argv),
            show(&got)
        );
        match expected {
            Expect::Exact(want) => {
                if got != want {
                    return Err(fail(
                        &log,
                        format!(
                            "reply mismatch for `{}`: engine {}, Redis {}",
                            show_argv(&argv),
                            show(&got),
                            show(&want)
                        ),
                    ));
                }
            }
            Expect::Adopt(key) => {
                // Take over the engine's state of this key (reads only).
                let get = exec_engine(&mut node, &[b"GET".to_vec(), key.clone()], now);
                let pexp = exec_engine(&mut node, &[b"PEXPIRETIME".to_vec(), key.clone()], now);
                match (get, pexp) {
                    (Frame::Bulk(v), Frame::Integer(d)) => {
                        model.put(&key, v, (d >= 0).then_some(d))
                    }
                    (Frame::Null, _) => {
                        model.map.remove(&key);
                    }
                    other => return Err(fail(&log, format!("adopting {key:?}: {other:?}"))),
                }
            }
        }
    }

    // The whole visible keyspace: the set of live keys (KEYS *, which does
    // not expire lazily), then each key's value and deadline.
    let want = model.visible(now as i64);
    let live = node.keys(now);
    let want_keys: BTreeSet<Vec<u8>> = want.keys().cloned().collect();
    if live != want_keys {
        return Err(fail(
            &log,
            format!(
                "live keys differ at the end: engine {:?}, Redis {:?}",
                live.iter()
                    .map(|k| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>(),
                want_keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    for key in KEYS {
        let k = key.as_bytes().to_vec();
        let get = exec_engine(&mut node, &[b"GET".to_vec(), k.clone()], now);
        let pexp = exec_engine(&mut node, &[b"PEXPIRETIME".to_vec(), k.clone()], now);
        let (want_get, want_pexp) = match want.get(&k) {
            Some(e) => (bulk(&e.val), Frame::Integer(e.deadline.unwrap_or(-1))),
            None => (Frame::Null, Frame::Integer(-2)),
        };
        if get != want_get || pexp != want_pexp {
            return Err(fail(
                &log,
                format!(
                    "final state of {key}: engine {} / PEXPIRETIME {}, Redis {} / {}",
                    show(&get),
                    show(&pexp),
                    show(&want_get),
                    show(&want_pexp)
                ),
            ));
        }
    }
    Ok(())
}

/// Engine only: after each command, learn every key's deadline (with
/// PEXPIRETIME, at the same instant); once the clock has passed a deadline,
/// no read may show that key, whichever read meets the expired entry first.
fn check_expired_invisible(steps: &[(Advance, Op)]) -> Result<(), TestCaseError> {
    let mut node = Node::new();
    let mut now = T0;
    let mut deadlines: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut log = String::new();
    let reads: [(&str, &[&str], Frame); 10] = [
        ("GET", &[], Frame::Null),
        ("MGET", &[], Frame::Array(vec![Frame::Null])),
        ("EXISTS", &[], Frame::Integer(0)),
        ("STRLEN", &[], Frame::Integer(0)),
        ("GETRANGE", &["0", "-1"], bulk(b"")),
        ("TTL", &[], Frame::Integer(-2)),
        ("PTTL", &[], Frame::Integer(-2)),
        ("EXPIRETIME", &[], Frame::Integer(-2)),
        ("PEXPIRETIME", &[], Frame::Integer(-2)),
        ("TYPE", &[], Frame::Simple(b"none".to_vec())),
    ];
    for (step, (adv, op)) in steps.iter().enumerate() {
        now += resolve(adv, now, |k| deadlines.get(k).copied());
        let expired: Vec<Vec<u8>> = deadlines
            .iter()
            .filter(|(_, &d)| now as i64 > d)
            .map(|(k, _)| k.clone())
            .collect();
        if !expired.is_empty() {
            let live = node.keys(now);
            for k in &expired {
                prop_assert!(
                    !live.contains(k),
                    "KEYS shows expired {:?} at +{}\n{log}",
                    String::from_utf8_lossy(k),
                    now - T0
                );
            }
            for (i, k) in expired.iter().enumerate() {
                // Rotate which read meets the expired entry first.
                for r in 0..reads.len() {
                    let (name, extra, want) = &reads[(step + i + r) % reads.len()];
                    let mut argv = vec![name.as_bytes().to_vec(), k.clone()];
                    argv.extend(extra.iter().map(|a| a.as_bytes().to_vec()));
                    let got = exec_engine(&mut node, &argv, now);
                    prop_assert_eq!(
                        &got,
                        want,
                        "`{}` at +{} shows a key whose deadline passed\n{}",
                        show_argv(&argv),
                        now - T0,
                        log
                    );
                }
            }
            for ks in &mut node.shards {
                if let Some(k) = ks.random_key(now) {
                    prop_assert!(
                        !expired.contains(&k),
                        "RANDOMKEY returned expired {:?}",
                        String::from_utf8_lossy(&k)
                    );
                }
            }
        }
        let argv = render(op, now);
        let got = exec_engine(&mut node, &argv, now);
        let _ = writeln!(
            log,
            "{:>7}  {}  -> {}",
            now - T0,
            show_argv(&argv),
            show(&got)
        );
        deadlines.clear();
        for key in KEYS {
            let argv = [b"PEXPIRETIME".to_vec(), key.as_bytes().to_vec()];
            if let Frame::Integer(d) = exec_engine(&mut node, &argv, now) {
                if d >= 0 {
                    deadlines.insert(argv[1].clone(), d);
                }
            }
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // 256 sequences of up to 200 commands: a few seconds in a debug
        // build. PROPTEST_CASES=N searches harder.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        // Failures print the shrunk command list; no regression files are
        // written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn steps() -> impl Strategy<Value = Vec<(Advance, Op)>> {
    prop::collection::vec((advance(), op()), 1..200)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn engine_matches_redis_model(steps in steps()) {
        check_against_model(&steps)?;
    }

    #[test]
    fn expired_keys_are_never_observable(steps in steps()) {
        check_expired_invisible(&steps)?;
    }
}

#[test]
fn test_keys_cover_all_shards_and_share_tags() {
    let shard = |k: &str| slot::slot(k.as_bytes()) as usize % SHARDS;
    let used: BTreeSet<usize> = KEYS.iter().map(|k| shard(k)).collect();
    assert_eq!(used.len(), SHARDS, "keys should exercise every shard");
    assert_eq!(slot::slot(b"{t}1"), slot::slot(b"{t}2"));
}

// ---------------------------------------------------------------------------
// Divergences the property test found, as fixed sequences. Each runs on the
// engine and the model and expects the same replies; the expected Redis
// reply is noted beside the command that differs.
// ---------------------------------------------------------------------------

/// Runs `(ms since start, argv)` commands on both and asserts equal replies.
fn assert_same(cmds: &[(u64, &[&str])]) {
    let mut node = Node::new();
    let mut model = Model::default();
    let mut log = String::new();
    for (at, argv) in cmds {
        let now = T0 + at;
        let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        let Expect::Exact(want) = model.exec(&argv, now as i64) else {
            panic!("not a fixed-reply command")
        };
        let got = exec_engine(&mut node, &argv, now);
        let _ = writeln!(log, "{at:>5}  {}  -> {}", show_argv(&argv), show(&got));
        assert_eq!(
            got,
            want,
            "`{}`: engine {}, Redis {}\n{log}",
            show_argv(&argv),
            show(&got),
            show(&want)
        );
    }
}

#[test]
fn expire_xx_with_gt_or_lt_needs_an_existing_deadline() {
    assert_same(&[
        (0, &["SET", "a", "v"]),
        (0, &["EXPIRE", "a", "100", "XX", "LT"]), // Redis: 0 (no deadline, XX fails)
        (0, &["TTL", "a"]),                       // Redis: -1
        (0, &["PEXPIRE", "a", "0", "XX", "LT"]),  // Redis: 0, and the key stays
        (0, &["GET", "a"]),
    ]);
}

#[test]
fn set_and_getex_accept_repeated_options() {
    assert_same(&[
        (0, &["SET", "a", "v", "NX", "NX"]), // Redis: OK
        (0, &["SET", "a", "w", "XX", "XX"]), // Redis: OK
        (0, &["SET", "a", "x", "KEEPTTL", "KEEPTTL"]),
        (0, &["SET", "a", "y", "EX", "10", "EX", "20"]), // Redis: OK, last wins
        (0, &["TTL", "a"]),                              // Redis: 20
        (0, &["GETEX", "a", "PERSIST", "PERSIST"]),      // Redis: "y"
        (0, &["GETEX", "a", "PX", "10", "PX", "5000"]),  // Redis: "y"
        (0, &["PTTL", "a"]),                             // Redis: 5000
    ]);
}

#[test]
fn expiretime_rounds_to_the_nearest_second() {
    assert_same(&[
        (0, &["SET", "a", "v", "PXAT", "1700000001600"]),
        (0, &["EXPIRETIME", "a"]), // Redis: 1700000002 ((ms + 500) / 1000)
    ]);
}

#[test]
fn getex_with_an_absolute_deadline_of_now_deletes_the_key() {
    assert_same(&[
        (0, &["SET", "a", "v"]),
        (0, &["GETEX", "a", "PXAT", "1700000000000"]), // = now; Redis: "v", then deleted
        (0, &["EXISTS", "a"]),                         // Redis: 0
    ]);
}

#[test]
fn option_errors_come_before_number_errors() {
    assert_same(&[
        (0, &["SET", "a", "v"]),
        // Redis: ERR Unsupported option FOO
        (0, &["EXPIRE", "a", "abc", "FOO"]),
        // Redis: ERR NX and XX, GT or LT options at the same time are not compatible
        (0, &["EXPIRE", "a", "abc", "NX", "XX"]),
        // Redis: ERR syntax error (all options are parsed before the time)
        (0, &["SET", "a", "v", "EX", "abc", "BOGUS"]),
    ]);
}
