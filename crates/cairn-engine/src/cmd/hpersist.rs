//! HPERSIST key FIELDS numfields field [field ...] — removes field
//! deadlines: -2 no such field (or key), -1 it had none, 1 removed.

use super::hexpire::fields_arg;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct HPersist<'a> {
    key: &'a [u8],
    fields: &'a [&'a [u8]],
}

impl<'a> Command<'a> for HPersist<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(HPersist {
            key: super::arg(argv, 1)?,
            fields: fields_arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let codes: Vec<i64> = match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => vec![-2; self.fields.len()],
            Ok(Some(h)) => self
                .fields
                .iter()
                .map(|f| match (h.get(f), h.expiry(f)) {
                    (None, _) => -2,
                    (Some(_), None) => -1,
                    (Some(_), Some(_)) => 1,
                })
                .collect(),
        };
        if codes.contains(&1) {
            let fields = self.fields;
            let _ = ks.write_hash(self.key, now_ms, false, |h, _| {
                for f in fields {
                    h.persist(f);
                }
            });
        }
        out.array(codes.len());
        for c in codes {
            out.int(c);
        }
    }
}
