//! BITPOS key bit [start [end [BYTE | BIT]]]
//!
//! As Redis 7.0: the bit is checked first; a missing key is an endless
//! run of zeros (0 for a clear bit, -1 for a set one) answered before
//! the range is read. Looking for a clear bit without an `end`, a string
//! of ones answers the first bit past it (the zeros that follow);
//! with an `end`, -1.

use super::{int_arg, CmdError, Command, Db, SYNTAX};
use crate::bits;
use crate::reply::Reply;

pub struct BitPos<'a> {
    key: &'a [u8],
    bit: bool,
    range: &'a [&'a [u8]],
}

/// The first `bit` of `b` in the range `args` (empty: the whole string).
fn find(b: &[u8], bit: bool, args: &[&[u8]]) -> Result<i64, CmdError> {
    let strlen = b.len() as i64;
    let (start, end, in_bits, end_given) = match args {
        [] => (0, strlen - 1, false, false),
        [s, rest @ ..] if rest.len() <= 2 => {
            let start = int_arg(s)?;
            let in_bits = super::bitcount::unit_is_bit(rest.get(1))?;
            match rest.first() {
                Some(e) => (start, int_arg(e)?, in_bits, true),
                // (A unit comes after an end.)
                None => (start, strlen - 1, false, false),
            }
        }
        _ => return Err(SYNTAX.into()),
    };
    let len = if in_bits { strlen * 8 } else { strlen };
    let Some((s, e)) = bits::clamp_range(start, end, len) else {
        return Ok(-1);
    };
    let (first, last) = if in_bits { (s, e) } else { (s * 8, e * 8 + 7) };
    Ok(match bits::find_bit(b, bit, first, last) {
        Some(p) => p as i64,
        None if bit || end_given => -1,
        // The zeros past the end of the string (the range ends there).
        None => (((last >> 3) + 1) * 8) as i64,
    })
}

impl<'a> Command<'a> for BitPos<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let bit = match int_arg(super::arg(argv, 2)?)? {
            0 => false,
            1 => true,
            _ => return Err("ERR The bit argument must be 1 or 0.".into()),
        };
        Ok(BitPos {
            key,
            bit,
            range: &argv[3..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_string(self.key, now_ms) {
            Ok(None) => out.int(if self.bit { -1 } else { 0 }),
            Ok(Some(v)) => v.with_bytes(|b| match find(b, self.bit, self.range) {
                Ok(n) => out.int(n),
                Err(e) => out.error(e.msg()),
            }),
            Err(e) => out.error(e),
        }
    }
}
