//! BITCOUNT key [start end [BYTE | BIT]]
//!
//! As Redis 7.0: a missing key answers 0 before the range is read (so
//! even a malformed one), and a range of two negative positions in the
//! wrong order answers 0 before the unit is read.

use super::{int_arg, is, CmdError, Command, Db, SYNTAX};
use crate::bits;
use crate::reply::Reply;

pub struct BitCount<'a> {
    key: &'a [u8],
    range: &'a [&'a [u8]],
}

/// Whether a BYTE | BIT argument says BIT.
pub(crate) fn unit_is_bit(arg: Option<&&[u8]>) -> Result<bool, CmdError> {
    match arg {
        None => Ok(false),
        Some(u) if is(u, "BIT") => Ok(true),
        Some(u) if is(u, "BYTE") => Ok(false),
        Some(_) => Err(SYNTAX.into()),
    }
}

/// The set bits of `b` in the range `args` (empty: the whole string).
fn count(b: &[u8], args: &[&[u8]]) -> Result<i64, CmdError> {
    let (s, e, unit) = match args {
        [] => return Ok(bits::count_bits(b, 0, u64::MAX) as i64),
        [s, e] => (s, e, None),
        [s, e, u] => (s, e, Some(u)),
        _ => return Err(SYNTAX.into()),
    };
    let (start, end) = (int_arg(s)?, int_arg(e)?);
    if start < 0 && end < 0 && start > end {
        return Ok(0);
    }
    let bit = unit_is_bit(unit)?;
    let len = b.len() as i64 * if bit { 8 } else { 1 };
    let Some((s, e)) = bits::clamp_range(start, end, len) else {
        return Ok(0);
    };
    let (first, last) = if bit { (s, e) } else { (s * 8, e * 8 + 7) };
    Ok(bits::count_bits(b, first, last) as i64)
}

impl<'a> Command<'a> for BitCount<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(BitCount {
            key: super::arg(argv, 1)?,
            range: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match db.shard(self.key).get_string(self.key, now_ms) {
            Ok(None) => out.int(0),
            Ok(Some(v)) => v.with_bytes(|b| match count(b, self.range) {
                Ok(n) => out.int(n),
                Err(e) => out.error(e.msg()),
            }),
            Err(e) => out.error(e),
        }
    }
}
