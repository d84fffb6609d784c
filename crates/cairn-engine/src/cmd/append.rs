//! APPEND key value

use super::{CmdError, Command, Db, TOO_BIG};
use crate::reply::Reply;
use crate::value::Value;

pub struct Append<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

impl<'a> Command<'a> for Append<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Append {
            key: super::arg(argv, 1)?,
            value: super::arg(argv, 2)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let ks = db.shard(self.key);
        let limit = ks.string_len_max();
        match ks.find(self.key, now_ms) {
            None => {
                ks.insert(self.key, Value::from_bytes(self.value), Some(None), now_ms);
                out.int(self.value.len() as i64)
            }
            Some(pos) => {
                if !ks.value_at(pos).is_string() {
                    return out.error(super::WRONGTYPE);
                }
                if ks.value_at(pos).str_len() + self.value.len() > limit {
                    return out.error(TOO_BIG);
                }
                let len = ks.update_at(pos, now_ms, |v| {
                    let buf = v.make_growable();
                    buf.extend_from_slice(self.value);
                    buf.len()
                });
                out.int(len as i64)
            }
        }
    }
}
