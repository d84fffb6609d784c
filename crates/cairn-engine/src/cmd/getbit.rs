//! GETBIT key offset

use super::{CmdError, Command, Db};
use crate::bits;
use crate::reply::Reply;

pub struct GetBit<'a> {
    key: &'a [u8],
    offset: &'a [u8],
}

impl<'a> Command<'a> for GetBit<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(GetBit {
            key: super::arg(argv, 1)?,
            offset: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let offset = match super::setbit::bit_offset(self.offset, None, ks.string_len_max()) {
            Ok(o) => o,
            Err(e) => return out.error(e.err.msg()),
        };
        match ks.get_string(self.key, now_ms) {
            Ok(None) => out.int(0),
            Ok(Some(v)) => v.with_bytes(|b| out.int(i64::from(bits::get_bit(b, offset)))),
            Err(e) => out.error(e),
        }
    }
}
