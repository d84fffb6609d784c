//! SETRANGE key offset value

use super::{CmdError, Command, Db, TOO_BIG};
use crate::reply::Reply;
use crate::value::Value;

pub struct SetRange<'a> {
    key: &'a [u8],
    offset: i64,
    value: &'a [u8],
}

impl<'a> Command<'a> for SetRange<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(SetRange {
            key: super::arg(argv, 1)?,
            offset: super::int_arg(super::arg(argv, 2)?)?,
            value: super::arg(argv, 3)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        if self.offset < 0 {
            return out.error("ERR offset is out of range");
        }
        let ks = db.shard(self.key);
        let offset = self.offset as usize;
        let pos = ks.find(self.key, now_ms);
        if pos.is_some_and(|p| !ks.value_at(p).is_string()) {
            return out.error(super::WRONGTYPE);
        }
        let cur_len = pos.map_or(0, |p| ks.value_at(p).str_len());
        if self.value.is_empty() {
            return out.int(cur_len as i64);
        }
        if offset.saturating_add(self.value.len()) > ks.string_len_max() {
            return out.error(TOO_BIG);
        }
        let pos = match pos {
            Some(p) => p,
            None => {
                ks.insert(self.key, Value::from_bytes(b""), Some(None), now_ms);
                match ks.find(self.key, now_ms) {
                    Some(p) => p,
                    None => return out.error("ERR internal: key vanished"),
                }
            }
        };
        let len = ks.update_at(pos, now_ms, |v| {
            let buf = v.make_growable();
            let end = offset + self.value.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[offset..end].copy_from_slice(self.value);
            buf.len()
        });
        out.int(len as i64)
    }
}
