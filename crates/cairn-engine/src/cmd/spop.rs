//! SPOP key [count]
//!
//! A write, so its draws must be the same on every replica: they come
//! from [`crate::Keyspace::write_seed`] (the entry's log position in a
//! cluster), never from the node's sampling generator, which reads and
//! eviction advance on one node only (docs/design/datatypes.md).

use super::hrandfield::distinct;
use super::{CmdError, Command, Db, SYNTAX};
use crate::keyspace::xorshift_star;
use crate::reply::Reply;

/// Redis' wording for a count that is negative or not a number.
pub(crate) const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

pub struct SPop<'a> {
    key: &'a [u8],
    /// `None`: one member, a bulk string (or null).
    count: Option<u64>,
}

impl<'a> Command<'a> for SPop<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        if argv.len() > 3 {
            return Err(SYNTAX.into());
        }
        let count = match argv.get(2) {
            None => None,
            Some(c) => match crate::num::parse_i64(c) {
                Some(n) if n >= 0 => Some(n as u64),
                _ => return Err(NOT_POSITIVE.into()),
            },
        };
        Ok(SPop { key, count })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let mut rng = ks.write_seed(self.key) | 1;
        let seed = ks.field_seed();
        let s = match ks.get_set(self.key, now_ms) {
            Ok(s) => s,
            Err(e) => return out.error(e),
        };
        let Some(s) = s else {
            return match self.count {
                None => out.null(),
                Some(_) => out.set(0),
            };
        };
        let len = s.len();
        let popped: Vec<Vec<u8>> = match self.count {
            Some(0) => return out.set(0),
            None => {
                let i = (xorshift_star(&mut rng) % len as u64) as usize;
                s.nth(i).map(|m| m.to_vec()).into_iter().collect()
            }
            // The whole set, rebuilt as Redis does (a union of one).
            Some(c) if c >= len as u64 => super::sunion::union([s], seed)
                .iter()
                .map(|m| m.to_vec())
                .collect(),
            Some(c) => {
                let picks = distinct(len, c as usize, &mut rng);
                super::srandmember::members_at(s, &picks)
                    .iter()
                    .map(|m| m.to_vec())
                    .collect()
            }
        };
        let r = ks.write_set(self.key, now_ms, None, |s, _| {
            for m in &popped {
                s.remove(m);
            }
        });
        if let Err(e) = r {
            return out.error(e);
        }
        if self.count.is_none() {
            return match popped.first() {
                Some(m) => out.bulk(m),
                None => out.null(),
            };
        }
        out.set(popped.len());
        for m in &popped {
            out.bulk(m);
        }
    }
}
