//! GETRANGE key start end (inclusive, negative offsets from the end)

use super::{CmdError, Command, Db};
use crate::reply::Reply;

pub struct GetRange<'a> {
    key: &'a [u8],
    start: i64,
    end: i64,
}

impl<'a> Command<'a> for GetRange<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(GetRange {
            key: super::arg(argv, 1)?,
            start: super::int_arg(super::arg(argv, 2)?)?,
            end: super::int_arg(super::arg(argv, 3)?)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let v = match db.shard(self.key).get_string(self.key, now_ms) {
            Ok(Some(v)) => v,
            Ok(None) => return out.bulk(b""),
            Err(e) => return out.error(e),
        };
        v.with_bytes(|b| match clamp_range(self.start, self.end, b.len()) {
            Some((s, e)) => out.bulk(&b[s..=e]),
            None => out.bulk(b""),
        })
    }
}

/// Redis' GETRANGE index rules; `None` for an empty result.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if s > e {
        return None;
    }
    Some((s as usize, e as usize))
}

#[cfg(test)]
mod tests {
    use super::clamp_range;

    #[test]
    fn ranges_follow_redis() {
        // "This is a string"
        assert_eq!(clamp_range(0, 3, 16), Some((0, 3)));
        assert_eq!(clamp_range(-3, -1, 16), Some((13, 15)));
        assert_eq!(clamp_range(0, -1, 16), Some((0, 15)));
        assert_eq!(clamp_range(10, 100, 16), Some((10, 15)));
        assert_eq!(clamp_range(5, 3, 16), None);
        assert_eq!(clamp_range(-1, -5, 16), None);
    }
}
