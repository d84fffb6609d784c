//! MSET key value [key value ...], MSETNX key value [key value ...]
//!
//! Atomic: the caller holds every involved shard for the whole command.

use super::{CmdError, Command, Db};
use crate::reply::Reply;
use crate::value::Value;

/// `NX` false: MSET; true: MSETNX.
pub struct MSet<'a, const NX: bool> {
    pairs: &'a [&'a [u8]],
}

pub type MSetNx<'a> = MSet<'a, true>;

impl<'a, const NX: bool> Command<'a> for MSet<'a, NX> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() < 3 || argv.len().is_multiple_of(2) {
            return Err(super::wrong_arity(if NX { "msetnx" } else { "mset" }));
        }
        Ok(MSet { pairs: &argv[1..] })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if NX
            && self
                .pairs
                .chunks(2)
                .any(|kv| db.shard(kv[0]).contains(kv[0], now_ms))
        {
            return out.int(0);
        }
        for kv in self.pairs.chunks(2) {
            db.shard(kv[0])
                .insert(kv[0], Value::from_bytes(kv[1]), Some(None), now_ms);
        }
        if NX {
            out.int(1)
        } else {
            out.ok()
        }
    }
}
