//! BITFIELD key [GET type offset | SET type offset value | INCRBY type
//! offset increment | OVERFLOW WRAP|SAT|FAIL] ..., and BITFIELD_RO key
//! [GET type offset ...].
//!
//! Redis 7.0's `bitfieldGeneric`: every subcommand is checked before
//! anything runs (type `i1`..`i64` or `u1`..`u63`, offset `n` or `#n`
//! fields, integer values); OVERFLOW applies to the SET and INCRBY after
//! it; FAIL answers nil for that operation and writes nothing. Without
//! SET or INCRBY the command is a read (a missing key reads as zeros);
//! with them the string is grown to the furthest bit written, converted
//! to raw bytes, and created if missing (even when every write fails).
//!
//! cairn refuses (`ERR string exceeds maximum allowed size`) a write
//! that would grow the string past `proto-max-bulk-len`; Redis lets a
//! field that starts inside the limit end up to 8 bytes past it.

use super::setbit::{bit_offset, checked, Invalid, LIMIT_MIN};
use super::{is, CmdError, Command, Db, SYNTAX, TOO_BIG};
use crate::bits::{self, Overflow};
use crate::reply::Reply;

const BAD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const RO_ONLY: &str = "ERR BITFIELD_RO only supports the GET subcommand";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Clone, Copy, Debug)]
struct Op {
    kind: Kind,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// `RO`: BITFIELD_RO, which refuses SET and INCRBY.
pub struct BitField<'a, const RO: bool> {
    key: &'a [u8],
    args: &'a [&'a [u8]],
}

pub type BitFieldRo<'a> = BitField<'a, true>;

/// Redis' `getBitfieldTypeFromArgument`: `i` or `u` (lower case), then
/// the width (read up to a NUL byte).
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let arg = arg.split(|&c| c == 0).next().unwrap_or_default();
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(BAD_TYPE.into()),
    };
    match crate::num::parse_i64(&arg[1..]) {
        Some(n) if n >= 1 && n <= if signed { 64 } else { 63 } => Ok((signed, n as u32)),
        _ => Err(BAD_TYPE.into()),
    }
}

/// The operations of `args` (what follows the key), checked in Redis'
/// order against the string length limit `limit`.
fn parse_ops(args: &[&[u8]], limit: usize) -> Result<Vec<Op>, Invalid> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 0;
    while j < args.len() {
        let more = args.len() - j - 1;
        let sub = args[j];
        let kind = if is(sub, "GET") && more >= 2 {
            Kind::Get
        } else if is(sub, "SET") && more >= 3 {
            Kind::Set(0)
        } else if is(sub, "INCRBY") && more >= 3 {
            Kind::IncrBy(0)
        } else if is(sub, "OVERFLOW") && more >= 1 {
            let w = args[j + 1];
            overflow = if is(w, "WRAP") {
                Overflow::Wrap
            } else if is(w, "SAT") {
                Overflow::Sat
            } else if is(w, "FAIL") {
                Overflow::Fail
            } else {
                return Err("ERR Invalid OVERFLOW type specified".into());
            };
            j += 2;
            continue;
        } else {
            return Err(SYNTAX.into());
        };
        let (signed, bits) = field_type(args[j + 1])?;
        let offset = bit_offset(args[j + 2], Some(bits), limit)?;
        let kind = match kind {
            Kind::Get => Kind::Get,
            Kind::Set(_) => Kind::Set(super::int_arg(args[j + 3])?),
            Kind::IncrBy(_) => Kind::IncrBy(super::int_arg(args[j + 3])?),
        };
        ops.push(Op {
            kind,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if kind == Kind::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// Whether BITFIELD `argv` has no SET or INCRBY, so it only reads and
/// may be served as a read (Redis' `bitfieldGetKeys`, which gives such a
/// call read-only key flags; a malformed call counts as a write).
pub fn only_reads(argv: &[&[u8]]) -> bool {
    let args = argv.get(2..).unwrap_or_default();
    let mut j = 0;
    while j < args.len() {
        let more = args.len() - j - 1;
        if is(args[j], "GET") && more >= 2 {
            j += 3;
        } else if is(args[j], "OVERFLOW") && more >= 1 {
            j += 2;
        } else {
            return false;
        }
    }
    true
}

/// Runs a SET or INCRBY on `buf` (grown to hold it): the reply (`None`
/// when OVERFLOW FAIL refused it) and whether a bit changed.
fn write(buf: &mut [u8], op: &Op) -> (Option<i64>, bool) {
    let (bits, offset, ow) = (op.bits, op.offset, op.overflow);
    if op.signed {
        let old = bits::get_signed(buf, offset, bits);
        let (overflow, new, reply) = match op.kind {
            Kind::IncrBy(by) => {
                let o = bits::signed_overflow(old, by, bits, ow);
                let new = o.unwrap_or(old.wrapping_add(by));
                (o.is_some(), new, new)
            }
            Kind::Set(v) => {
                let o = bits::signed_overflow(v, 0, bits, ow);
                (o.is_some(), o.unwrap_or(v), old)
            }
            Kind::Get => return (Some(old), false),
        };
        if overflow && ow == Overflow::Fail {
            return (None, false);
        }
        bits::set_field(buf, offset, bits, new as u64);
        (Some(reply), new != old)
    } else {
        let old = bits::get_unsigned(buf, offset, bits);
        let (overflow, new, reply) = match op.kind {
            Kind::IncrBy(by) => {
                let o = bits::unsigned_overflow(old, by, bits, ow);
                let new = o.unwrap_or(old.wrapping_add(by as u64));
                (o.is_some(), new, new)
            }
            Kind::Set(v) => {
                let o = bits::unsigned_overflow(v as u64, 0, bits, ow);
                (o.is_some(), o.unwrap_or(v as u64), old)
            }
            Kind::Get => return (Some(old as i64), false),
        };
        if overflow && ow == Overflow::Fail {
            return (None, false);
        }
        bits::set_field(buf, offset, bits, new);
        // Fields are at most 63 bits wide: the value fits an i64.
        (Some(reply as i64), new != old)
    }
}

/// A GET of `b` (zeros past its end).
fn read(b: &[u8], op: &Op) -> i64 {
    if op.signed {
        bits::get_signed(b, op.offset, op.bits)
    } else {
        bits::get_unsigned(b, op.offset, op.bits) as i64
    }
}

impl<'a, const RO: bool> Command<'a> for BitField<'a, RO> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(BitField {
            key: super::arg(argv, 1)?,
            args: &argv[2..],
        })
    }

    fn check(&self, _now_ms: u64) -> Result<(), CmdError> {
        let ops = parse_ops(self.args, LIMIT_MIN);
        if RO && matches!(&ops, Ok(ops) if ops.iter().any(|o| o.kind != Kind::Get)) {
            return Err(RO_ONLY.into());
        }
        checked(ops)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let limit = ks.string_len_max();
        let ops = match parse_ops(self.args, limit) {
            Ok(ops) => ops,
            Err(e) => return out.error(e.err.msg()),
        };
        // The furthest bit a SET or INCRBY writes.
        let Some(last) = ops
            .iter()
            .filter(|o| o.kind != Kind::Get)
            .map(|o| o.offset + u64::from(o.bits) - 1)
            .max()
        else {
            // Only reads.
            let reply = |b: &[u8], out: &mut _| {
                Reply::array(out, ops.len());
                for op in &ops {
                    Reply::int(out, read(b, op));
                }
            };
            return match ks.get_string(self.key, now_ms) {
                Ok(Some(v)) => v.with_bytes(|b| reply(b, out)),
                Ok(None) => reply(&[], out),
                Err(e) => out.error(e),
            };
        };
        if RO {
            return out.error(RO_ONLY);
        }
        let len = match ks.find(self.key, now_ms) {
            Some(pos) if !ks.value_at(pos).is_string() => return out.error(super::WRONGTYPE),
            found => found.map_or(0, |pos| ks.value_at(pos).str_len()),
        };
        // Offsets are in the limit, so `need` is at most 8 bytes past it.
        let need = usize::try_from((last >> 3) + 1).unwrap_or(usize::MAX);
        if need > len && need > limit {
            return out.error(TOO_BIG);
        }
        let r = ks.write_bits(self.key, now_ms, need, |buf| {
            out.array(ops.len());
            let mut changed = false;
            for op in &ops {
                if op.kind == Kind::Get {
                    out.int(read(buf, op));
                    continue;
                }
                let (reply, c) = write(buf, op);
                changed |= c;
                match reply {
                    Some(n) => out.int(n),
                    None => out.null(),
                }
            }
            ((), changed)
        });
        if let Err(e) = r {
            out.error(e);
        }
    }
}
