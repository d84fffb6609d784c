//! HTTL, HPTTL, HEXPIRETIME, HPEXPIRETIME key FIELDS numfields field
//! [field ...] — a field's remaining time or deadline: -2 no such field
//! (or key), -1 no deadline. HTTL rounds up to whole seconds, as Redis.

use super::hexpire::fields_arg;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

/// `WHAT`: 0 HTTL, 1 HPTTL, 2 HEXPIRETIME, 3 HPEXPIRETIME.
pub struct HTtl<'a, const WHAT: u8> {
    key: &'a [u8],
    fields: &'a [&'a [u8]],
}

pub type HPTtl<'a> = HTtl<'a, 1>;
pub type HExpireTime<'a> = HTtl<'a, 2>;
pub type HPExpireTime<'a> = HTtl<'a, 3>;

impl<'a, const WHAT: u8> Command<'a> for HTtl<'a, WHAT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HTtl {
            key: super::arg(argv, 1)?,
            fields: fields_arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let h = match db.shard(self.key).get_hash(self.key, now_ms) {
            Ok(h) => h,
            Err(e) => return out.error(e),
        };
        let h = h.as_deref();
        out.array(self.fields.len());
        for f in self.fields {
            let n = match h.filter(|h| h.get(f).is_some()) {
                None => -2,
                Some(h) => match h.expiry(f) {
                    None => -1,
                    Some(at) => {
                        let left = at.saturating_sub(now_ms);
                        (match WHAT {
                            0 => left.div_ceil(1000),
                            1 => left,
                            2 => at / 1000,
                            _ => at,
                        }) as i64
                    }
                },
            };
            out.int(n);
        }
    }
}
