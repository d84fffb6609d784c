//! SETBIT key offset value, and the bit offset argument the bitmap
//! commands share.

use super::{CmdError, Command, Db};
use crate::bits;
use crate::reply::Reply;

pub(crate) const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_BIT: &str = "ERR bit is not an integer or out of range";

/// The smallest string length limit a server accepts (`proto-max-bulk-
/// len`, at least 1 KiB). Before proposing a write, a node checks bit
/// offsets against it: an offset it refuses might be allowed by the
/// limit in force where the command applies, so that one error is left
/// to apply (see [`Invalid::limit_dependent`]).
pub(crate) const LIMIT_MIN: usize = 1024;

/// Why a bit command's arguments are refused.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub err: CmdError,
    /// An offset past the string length limit: another limit might
    /// allow it.
    pub limit_dependent: bool,
}

impl From<CmdError> for Invalid {
    fn from(err: CmdError) -> Self {
        Invalid {
            err,
            limit_dependent: false,
        }
    }
}

impl From<&'static str> for Invalid {
    fn from(s: &'static str) -> Self {
        CmdError::from(s).into()
    }
}

/// What `check` answers for arguments validated against [`LIMIT_MIN`].
pub(crate) fn checked<T>(r: Result<T, Invalid>) -> Result<(), CmdError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.limit_dependent => Ok(()),
        Err(e) => Err(e.err),
    }
}

/// Redis' `getBitOffsetFromArgument`: a non-negative integer whose
/// byte is inside the string length limit `limit`. With `field_bits` (BITFIELD), `#n`
/// means `n` times the field's width. (Redis lets `#n * width` wrap
/// around; cairn refuses it.)
pub(crate) fn bit_offset(
    arg: &[u8],
    field_bits: Option<u32>,
    limit: usize,
) -> Result<u64, Invalid> {
    let (scale, digits) = match (field_bits, arg.split_first()) {
        (Some(bits), Some((b'#', rest))) => (Some(bits), rest),
        _ => (None, arg),
    };
    let bad = || Invalid::from(BAD_OFFSET);
    let mut n = crate::num::parse_i64(digits).ok_or_else(bad)?;
    if let Some(bits) = scale {
        n = n.checked_mul(i64::from(bits)).ok_or_else(bad)?;
    }
    if n < 0 {
        return Err(bad());
    }
    let n = n as u64;
    if (n >> 3) >= limit as u64 {
        return Err(Invalid {
            err: BAD_OFFSET.into(),
            limit_dependent: true,
        });
    }
    Ok(n)
}

pub struct SetBit<'a> {
    key: &'a [u8],
    offset: &'a [u8],
    value: &'a [u8],
}

impl SetBit<'_> {
    /// The offset and the bit, in Redis' order of checks.
    fn validate(&self, limit: usize) -> Result<(u64, bool), Invalid> {
        let offset = bit_offset(self.offset, None, limit)?;
        match crate::num::parse_i64(self.value) {
            Some(0) => Ok((offset, false)),
            Some(1) => Ok((offset, true)),
            _ => Err(BAD_BIT.into()),
        }
    }
}

impl<'a> Command<'a> for SetBit<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SetBit {
            key: super::arg(argv, 1)?,
            offset: super::arg(argv, 2)?,
            value: super::arg(argv, 3)?,
        })
    }

    fn check(&self, _now_ms: u64) -> Result<(), CmdError> {
        checked(self.validate(LIMIT_MIN))
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let (offset, on) = match self.validate(ks.string_len_max()) {
            Ok(v) => v,
            Err(e) => return out.error(e.err.msg()),
        };
        // In the limit (checked above), so it fits in memory's range.
        let len = (offset >> 3) as usize + 1;
        let r = ks.write_bits(self.key, now_ms, len, |buf| {
            let old = bits::set_bit(buf, offset, on);
            (old, old != on)
        });
        match r {
            Ok(old) => out.int(i64::from(old)),
            Err(e) => out.error(e),
        }
    }
}
