//! Model-based property test of the bitmap commands: random sequences of
//! SETBIT, BITFIELD, BITOP, SET, HSET and DEL on three keys run against
//! the engine and against a reference model that keeps each string as a
//! `Vec<u8>` and does its bit arithmetic one bit at a time (overflow in
//! 128-bit integers), compared reply by reply as [`Frame`]s; GETBIT,
//! BITCOUNT and BITPOS (random ranges, BYTE and BIT) probe the state
//! between writes, and every key is compared at the end.

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;
use proptest::prelude::*;

const KEYS: [&str; 3] = ["a", "b", "c"];
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Debug)]
enum FieldOp {
    Get(bool, u32, u64),
    Set(bool, u32, u64, i64),
    IncrBy(bool, u32, u64, i64),
    Overflow(Ow),
}

/// BITPOS's optional start, then optional end and unit.
type PosRange = Option<(i64, Option<(i64, Option<bool>)>)>;

#[derive(Clone, Debug)]
enum Step {
    SetBit(usize, u64, bool),
    GetBit(usize, u64),
    /// Range and unit (true: BIT).
    BitCount(usize, Option<(i64, i64, Option<bool>)>),
    /// Bit, then start, end, unit.
    BitPos(usize, bool, PosRange),
    /// 0 AND, 1 OR, 2 XOR, 3 NOT; destination, sources.
    BitOp(u8, usize, Vec<usize>),
    BitField(usize, Vec<FieldOp>, bool),
    Set(usize, Vec<u8>),
    HSet(usize),
    Del(usize),
    Get(usize),
}

#[derive(Clone, Debug)]
enum Val {
    Str(Vec<u8>),
    Hash,
}

#[derive(Default)]
struct Model {
    keys: [Option<Val>; 3],
}

fn error(s: &str) -> Frame {
    Frame::Error(s.as_bytes().to_vec())
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn bit(s: &[u8], i: u64) -> bool {
    let byte = (i / 8) as usize;
    byte < s.len() && (s[byte] >> (7 - i % 8)) & 1 == 1
}

fn put_bit(s: &mut Vec<u8>, i: u64, on: bool) {
    let byte = (i / 8) as usize;
    if s.len() <= byte {
        s.resize(byte + 1, 0);
    }
    let mask = 1u8 << (7 - i % 8);
    if on {
        s[byte] |= mask;
    } else {
        s[byte] &= !mask;
    }
}

/// A field as an unsigned number of `bits` bits.
fn field(s: &[u8], signed: bool, bits: u32, off: u64) -> i128 {
    let mut v: i128 = 0;
    for k in 0..u64::from(bits) {
        v = v * 2 + i128::from(bit(s, off + k));
    }
    if signed && v >= 1i128 << (bits - 1) {
        v - (1i128 << bits)
    } else {
        v
    }
}

fn put_field(s: &mut Vec<u8>, bits: u32, off: u64, v: i128) {
    let m = v.rem_euclid(1i128 << bits);
    for k in 0..bits {
        put_bit(s, off + u64::from(k), (m >> (bits - 1 - k)) & 1 == 1);
    }
}

/// A range's first and last bit, by Redis' rules, over `len` bytes.
fn bit_range(len: usize, start: i64, end: i64, in_bits: bool) -> Option<(u64, u64)> {
    let total = len as i64 * if in_bits { 8 } else { 1 };
    let fix = |x: i64| if x < 0 { (total + x).max(0) } else { x };
    let (s, e) = (fix(start), fix(end).min(total - 1));
    if s > e {
        return None;
    }
    Some(if in_bits {
        (s as u64, e as u64)
    } else {
        (s as u64 * 8, e as u64 * 8 + 7)
    })
}

fn unit(u: Option<bool>) -> Vec<String> {
    match u {
        None => vec![],
        Some(true) => vec!["BIT".into()],
        Some(false) => vec!["BYTE".into()],
    }
}

impl Model {
    fn string(&self, k: usize) -> Result<Option<&Vec<u8>>, Frame> {
        match &self.keys[k] {
            None => Ok(None),
            Some(Val::Str(s)) => Ok(Some(s)),
            Some(Val::Hash) => Err(error(WRONGTYPE)),
        }
    }

    fn bitfield(&mut self, k: usize, ops: &[FieldOp], ro: bool) -> Result<Frame, Frame> {
        let writes = ops
            .iter()
            .any(|o| matches!(o, FieldOp::Set(..) | FieldOp::IncrBy(..)));
        if writes && ro {
            return Err(error("ERR BITFIELD_RO only supports the GET subcommand"));
        }
        let mut s = self.string(k)?.cloned().unwrap_or_default();
        let mut ow = Ow::Wrap;
        let mut out = Vec::new();
        for op in ops {
            match *op {
                FieldOp::Overflow(o) => ow = o,
                FieldOp::Get(signed, bits, off) => {
                    out.push(int(field(&s, signed, bits, off) as i64))
                }
                FieldOp::Set(signed, bits, off, v) | FieldOp::IncrBy(signed, bits, off, v) => {
                    let old = field(&s, signed, bits, off);
                    let incr = matches!(op, FieldOp::IncrBy(..));
                    let (min, max) = if signed {
                        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                    } else {
                        (0, (1i128 << bits) - 1)
                    };
                    // Unsigned SET reads its value as unsigned (so -1 is
                    // huge), as Redis does.
                    let target = match (incr, signed) {
                        (true, _) => old + i128::from(v),
                        (false, true) => i128::from(v),
                        (false, false) => i128::from(v as u64),
                    };
                    let new = if target > max || target < min {
                        match ow {
                            Ow::Fail => {
                                out.push(Frame::Null);
                                continue;
                            }
                            Ow::Sat => {
                                if target > max {
                                    max
                                } else {
                                    min
                                }
                            }
                            Ow::Wrap => {
                                let m = target.rem_euclid(1i128 << bits);
                                if signed && m > max {
                                    m - (1i128 << bits)
                                } else {
                                    m
                                }
                            }
                        }
                    } else {
                        target
                    };
                    out.push(int(if incr { new } else { old } as i64));
                    put_field(&mut s, bits, off, new);
                }
            }
        }
        if writes {
            // The string grows to the furthest bit written, even when no
            // write happened (OVERFLOW FAIL).
            let last = ops
                .iter()
                .filter_map(|o| match *o {
                    FieldOp::Set(_, b, off, _) | FieldOp::IncrBy(_, b, off, _) => {
                        Some(off + u64::from(b) - 1)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if s.len() < (last / 8 + 1) as usize {
                s.resize((last / 8 + 1) as usize, 0);
            }
            self.keys[k] = Some(Val::Str(s));
        }
        Ok(Frame::Array(out))
    }

    fn apply(&mut self, op: &Step) -> Frame {
        let r = match op {
            Step::SetBit(k, off, on) => self.string(*k).map(|s| s.cloned()).map(|s| {
                let mut s = s.unwrap_or_default();
                let old = bit(&s, *off);
                put_bit(&mut s, *off, *on);
                self.keys[*k] = Some(Val::Str(s));
                int(old as i64)
            }),
            Step::GetBit(k, off) => self
                .string(*k)
                .map(|s| int(s.is_some_and(|s| bit(s, *off)) as i64)),
            Step::BitCount(k, range) => self.string(*k).map(|s| {
                let Some(s) = s else { return int(0) };
                let (first, last) = match *range {
                    None => (0, (s.len() as u64 * 8).wrapping_sub(1)),
                    // Two negative positions in the wrong order: empty
                    // (clamping alone would make them 0..0).
                    Some((st, en, _)) if st < 0 && en < 0 && st > en => return int(0),
                    Some((st, en, u)) => match bit_range(s.len(), st, en, u == Some(true)) {
                        Some(r) => r,
                        None => return int(0),
                    },
                };
                if s.is_empty() {
                    return int(0);
                }
                int((first..=last).filter(|&i| bit(s, i)).count() as i64)
            }),
            Step::BitPos(k, b, range) => self.string(*k).map(|s| {
                let Some(s) = s else {
                    return int(if *b { -1 } else { 0 });
                };
                let (st, en, in_bits, given) = match *range {
                    None => (0, s.len() as i64 - 1, false, false),
                    Some((st, None)) => (st, s.len() as i64 - 1, false, false),
                    Some((st, Some((en, u)))) => (st, en, u == Some(true), true),
                };
                let Some((first, last)) = bit_range(s.len(), st, en, in_bits) else {
                    return int(-1);
                };
                match (first..=last).find(|&i| bit(s, i) == *b) {
                    Some(p) => int(p as i64),
                    None if *b || given => int(-1),
                    None => int(s.len() as i64 * 8),
                }
            }),
            Step::BitOp(o, dest, srcs) => {
                let mut strs = Vec::new();
                for k in srcs {
                    match self.string(*k) {
                        Err(e) => return e,
                        Ok(s) => strs.push(s.cloned().unwrap_or_default()),
                    }
                }
                let len = strs.iter().map(Vec::len).max().unwrap_or(0);
                let at = |s: &Vec<u8>, i: usize| s.get(i).copied().unwrap_or(0);
                let out: Vec<u8> = (0..len)
                    .map(|i| {
                        let mut it = strs.iter().map(|s| at(s, i));
                        let first = it.next().unwrap_or(0);
                        match o {
                            0 => it.fold(first, |x, y| x & y),
                            1 => it.fold(first, |x, y| x | y),
                            2 => it.fold(first, |x, y| x ^ y),
                            _ => !first,
                        }
                    })
                    .collect();
                self.keys[*dest] = (!out.is_empty()).then_some(Val::Str(out));
                Ok(int(len as i64))
            }
            Step::BitField(k, ops, ro) => self.bitfield(*k, ops, *ro),
            Step::Set(k, v) => {
                self.keys[*k] = Some(Val::Str(v.clone()));
                Ok(Frame::Simple(b"OK".to_vec()))
            }
            Step::HSet(k) => match &self.keys[*k] {
                Some(Val::Str(_)) => Err(error(WRONGTYPE)),
                Some(Val::Hash) => Ok(int(0)),
                None => {
                    self.keys[*k] = Some(Val::Hash);
                    Ok(int(1))
                }
            },
            Step::Del(k) => Ok(int(self.keys[*k].take().is_some() as i64)),
            Step::Get(k) => self.string(*k).map(|s| match s {
                Some(s) => Frame::Bulk(s.clone()),
                None => Frame::Null,
            }),
        };
        r.unwrap_or_else(|e| e)
    }
}

fn field_args(signed: bool, bits: u32, off: u64) -> [String; 2] {
    [
        format!("{}{bits}", if signed { "i" } else { "u" }),
        // Some offsets in fields (#n) when they divide evenly.
        if off.is_multiple_of(u64::from(bits)) && off.is_multiple_of(3) {
            format!("#{}", off / u64::from(bits))
        } else {
            off.to_string()
        },
    ]
}

fn argv(op: &Step) -> Vec<Vec<u8>> {
    if let Step::Set(key, val) = op {
        return vec![b"SET".to_vec(), KEYS[*key].as_bytes().to_vec(), val.clone()];
    }
    words(op).into_iter().map(String::into_bytes).collect()
}

fn words(op: &Step) -> Vec<String> {
    let k = |i: &usize| KEYS[*i].to_string();
    let s = |x: &str| x.to_string();
    match op {
        Step::SetBit(key, off, on) => vec![
            s("SETBIT"),
            k(key),
            off.to_string(),
            s(if *on { "1" } else { "0" }),
        ],
        Step::GetBit(key, off) => vec![s("GETBIT"), k(key), off.to_string()],
        Step::BitCount(key, range) => {
            let mut v = vec![s("BITCOUNT"), k(key)];
            if let Some((a, b, u)) = range {
                v.extend([a.to_string(), b.to_string()]);
                v.extend(unit(*u));
            }
            v
        }
        Step::BitPos(key, b, range) => {
            let mut v = vec![s("BITPOS"), k(key), s(if *b { "1" } else { "0" })];
            if let Some((st, rest)) = range {
                v.push(st.to_string());
                if let Some((en, u)) = rest {
                    v.push(en.to_string());
                    v.extend(unit(*u));
                }
            }
            v
        }
        Step::BitOp(o, dest, srcs) => {
            let mut v = vec![
                s("BITOP"),
                s(["AND", "OR", "XOR", "NOT"][*o as usize]),
                k(dest),
            ];
            v.extend(srcs.iter().map(k));
            v
        }
        Step::BitField(key, ops, ro) => {
            let mut v = vec![s(if *ro { "BITFIELD_RO" } else { "BITFIELD" }), k(key)];
            for o in ops {
                match *o {
                    FieldOp::Get(sg, b, off) => {
                        v.push(s("GET"));
                        v.extend(field_args(sg, b, off));
                    }
                    FieldOp::Set(sg, b, off, x) | FieldOp::IncrBy(sg, b, off, x) => {
                        v.push(s(if matches!(o, FieldOp::Set(..)) {
                            "SET"
                        } else {
                            "INCRBY"
                        }));
                        v.extend(field_args(sg, b, off));
                        v.push(x.to_string());
                    }
                    FieldOp::Overflow(w) => {
                        v.push(s("OVERFLOW"));
                        v.push(s(match w {
                            Ow::Wrap => "WRAP",
                            Ow::Sat => "SAT",
                            Ow::Fail => "FAIL",
                        }));
                    }
                }
            }
            v
        }
        Step::Set(..) => unreachable!("argv writes SET's bytes"),
        Step::HSet(key) => vec![s("HSET"), k(key), s("f"), s("v")],
        Step::Del(key) => vec![s("DEL"), k(key)],
        Step::Get(key) => vec![s("GET"), k(key)],
    }
}

fn exec(ks: &mut Keyspace, op: &Step) -> Frame {
    let owned = argv(op);
    let refs: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &refs, 0, &mut out);
    out.take().pop().unwrap_or(Frame::Null)
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![0..24u64, 0..200u64]
}

fn position() -> impl Strategy<Value = i64> {
    prop_oneof![-30..30i64, -300..300i64, Just(i64::MIN), Just(i64::MAX)]
}

fn unit_arg() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(None), Just(Some(false)), Just(Some(true))]
}

/// A field type and a value for it: near the edges of its range, or
/// anywhere (signed SET values stay within +-2^62, where Redis' own
/// overflow arithmetic agrees with plain arithmetic).
fn field_op() -> impl Strategy<Value = FieldOp> {
    let ty = prop_oneof![(Just(true), 1..=64u32), (Just(false), 1..=63u32)];
    (ty, offset(), 0..4u8, any::<i64>(), -3..3i64, 0..3u8).prop_map(
        |((signed, bits), off, kind, wide, near, edge)| {
            let (min, max) = if signed {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            let pick = match edge {
                0 => max + i128::from(near),
                1 => min + i128::from(near),
                _ => i128::from(wide),
            };
            let mut v = pick.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            match kind {
                0 => FieldOp::Get(signed, bits, off),
                1 => {
                    if signed {
                        v = v.clamp(-(1 << 62), 1 << 62);
                    }
                    FieldOp::Set(signed, bits, off, v)
                }
                2 => FieldOp::IncrBy(signed, bits, off, if edge == 2 { v } else { near * 7 }),
                _ => {
                    FieldOp::Overflow([Ow::Wrap, Ow::Sat, Ow::Fail][(near.rem_euclid(3)) as usize])
                }
            }
        },
    )
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"12".to_vec()),
        Just(b"-7".to_vec()),
        Just(b"9223372036854775807".to_vec()),
        Just(Vec::new()),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), b'a'..=b'z'], 0..12),
    ]
}

fn op() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (key(), offset(), any::<bool>()).prop_map(|(k, o, b)| Step::SetBit(k, o, b)),
        3 => (key(), offset()).prop_map(|(k, o)| Step::GetBit(k, o)),
        3 => (key(), proptest::option::of((position(), position(), unit_arg())))
            .prop_map(|(k, r)| Step::BitCount(k, r)),
        3 => (
            key(),
            any::<bool>(),
            proptest::option::of((position(), proptest::option::of((position(), unit_arg()))))
        )
            .prop_map(|(k, b, r)| Step::BitPos(k, b, r)),
        2 => (0..4u8, key(), proptest::collection::vec(key(), 1..4)).prop_map(|(o, d, mut s)| {
            if o == 3 {
                s.truncate(1);
            }
            Step::BitOp(o, d, s)
        }),
        4 => (key(), proptest::collection::vec(field_op(), 0..6), prop::bool::weighted(0.2))
            .prop_map(|(k, ops, ro)| Step::BitField(k, ops, ro)),
        2 => (key(), value()).prop_map(|(k, v)| Step::Set(k, v)),
        1 => key().prop_map(Step::HSet),
        1 => key().prop_map(Step::Del),
        1 => key().prop_map(Step::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn engine_bitmaps_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut ks = Keyspace::new(0xb175);
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let want = model.apply(op);
            let got = exec(&mut ks, op);
            prop_assert_eq!(&got, &want, "step {}: {:?}", i, op);
        }
        for (k, name) in KEYS.iter().enumerate() {
            let want = model.apply(&Step::Get(k));
            prop_assert_eq!(exec(&mut ks, &Step::Get(k)), want, "final {}", name);
        }
        let live = model.keys.iter().filter(|v| v.is_some()).count();
        prop_assert_eq!(ks.len(), live);
    }
}

/// The model must be able to fail: a wrong BITCOUNT answer is caught.
#[test]
fn the_model_sees_a_wrong_answer() {
    let mut ks = Keyspace::new(1);
    let mut model = Model::default();
    let set = Step::SetBit(0, 9, true);
    assert_eq!(exec(&mut ks, &set), model.apply(&set));
    let count = Step::BitCount(0, Some((0, 0, None)));
    assert_eq!(exec(&mut ks, &count), model.apply(&count));
    model.keys[0] = Some(Val::Str(vec![0, 0x41]));
    assert_ne!(
        exec(&mut ks, &Step::BitCount(0, None)),
        model.apply(&Step::BitCount(0, None))
    );
}
