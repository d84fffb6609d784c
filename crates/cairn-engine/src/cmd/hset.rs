//! HSET key field value [field value ...], and HMSET (the same, answering
//! OK instead of the count of new fields).
//!
//! More pairs than a listpack holds make a table at once, as Redis'
//! `hashTypeTryConversion` does (duplicates included).

use super::{CmdError, Command, Db};
use crate::hash::LISTPACK_ENTRIES_MAX;
use crate::reply::Reply;

/// Why a field could not be added: the hash holds `FIELDS_MAX` already.
pub(crate) const HASH_FULL: &str = "ERR hash has too many fields";

/// `MSET`: HMSET's OK reply instead of HSET's count.
pub struct HSet<'a, const MSET: bool> {
    key: &'a [u8],
    pairs: &'a [&'a [u8]],
}

pub type HMSet<'a> = HSet<'a, true>;

impl<'a, const MSET: bool> Command<'a> for HSet<'a, MSET> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        if argv.len() < 4 || !argv.len().is_multiple_of(2) {
            return Err(super::wrong_arity(if MSET { "hmset" } else { "hset" }));
        }
        Ok(HSet {
            key,
            pairs: &argv[2..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let pairs = self.pairs;
        let r = db
            .shard(self.key)
            .write_hash(self.key, now_ms, true, |h, seed| {
                if pairs.len() / 2 > LISTPACK_ENTRIES_MAX {
                    h.convert(seed, pairs.len() / 2);
                }
                let mut added = 0;
                for p in pairs.chunks_exact(2) {
                    match h.set(p[0], p[1], seed) {
                        Ok(new) => added += i64::from(new),
                        Err(_) => return Err(HASH_FULL),
                    }
                    // A new value drops the field's deadline (Redis 7.4).
                    h.persist(p[0]);
                }
                Ok(added)
            });
        match r.and_then(|r| r.unwrap_or(Ok(0))) {
            Ok(_) if MSET => out.ok(),
            Ok(n) => out.int(n),
            Err(e) => out.error(e),
        }
    }
}
