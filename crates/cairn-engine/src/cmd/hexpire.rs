//! HEXPIRE, HPEXPIRE, HEXPIREAT, HPEXPIREAT key time [NX | XX | GT | LT]
//! FIELDS numfields field [field ...] — Redis 7.4's hash field expiry.
//!
//! One reply per field: -2 no such field (or no such key), 0 the
//! condition was not met, 1 the deadline was set, 2 the field was deleted
//! (a deadline at or before now). A field without a deadline counts as an
//! infinite one for GT and LT. Nothing is written when no field changes.

use super::{is, CmdError, Command, Db};
use crate::reply::Reply;

/// Latest deadline a field may have (Unix ms): Redis' `EB_EXPIRE_TIME_MAX`.
pub(crate) const FIELD_DEADLINE_MAX: i64 = (1 << 48) - 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cond {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// `UNIT`: 0 HEXPIRE, 1 HPEXPIRE, 2 HEXPIREAT, 3 HPEXPIREAT.
pub struct HExpire<'a, const UNIT: u8> {
    key: &'a [u8],
    time: i64,
    cond: Cond,
    fields: &'a [&'a [u8]],
}

pub type HPExpire<'a> = HExpire<'a, 1>;
pub type HExpireAt<'a> = HExpire<'a, 2>;
pub type HPExpireAt<'a> = HExpire<'a, 3>;

/// `FIELDS numfields field ...` from `argv[at]` on: the fields, or Redis'
/// errors.
pub(crate) fn fields_arg<'a>(argv: &'a [&'a [u8]], at: usize) -> Result<&'a [&'a [u8]], CmdError> {
    if !argv.get(at).is_some_and(|a| is(a, "FIELDS")) {
        return Err("ERR Mandatory argument FIELDS is missing or not at the right position".into());
    }
    let n = argv
        .get(at + 1)
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| CmdError::from("ERR Parameter `numFields` should be greater than 0"))?;
    let fields = &argv[(at + 2).min(argv.len())..];
    if fields.len() as i64 != n {
        return Err("ERR The `numfields` parameter must match the number of arguments".into());
    }
    Ok(fields)
}

impl<const UNIT: u8> HExpire<'_, UNIT> {
    fn name() -> &'static str {
        ["hexpire", "hpexpire", "hexpireat", "hpexpireat"][UNIT as usize % 4]
    }

    /// The absolute deadline (Unix ms, possibly past), or Redis' error.
    fn deadline(&self, now_ms: u64) -> Result<u64, CmdError> {
        let invalid = || {
            CmdError::from(format!(
                "ERR invalid expire time in '{}' command",
                Self::name()
            ))
        };
        let ms = match UNIT {
            0 | 2 => self.time.checked_mul(1000).ok_or_else(invalid)?,
            _ => self.time,
        };
        let at = if UNIT < 2 {
            ms.checked_add(now_ms as i64).ok_or_else(invalid)?
        } else {
            ms
        };
        if ms > FIELD_DEADLINE_MAX || at > FIELD_DEADLINE_MAX {
            return Err(invalid());
        }
        Ok(at as u64)
    }
}

impl<'a, const UNIT: u8> Command<'a> for HExpire<'a, UNIT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let time = super::arg(argv, 2)?;
        let time = std::str::from_utf8(time)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| CmdError::from("ERR value is not an integer or out of range"))?;
        if time < 0 {
            return Err("ERR invalid expire time, must be >= 0".into());
        }
        let (cond, at) = match argv.get(3) {
            Some(a) if is(a, "NX") => (Cond::Nx, 4),
            Some(a) if is(a, "XX") => (Cond::Xx, 4),
            Some(a) if is(a, "GT") => (Cond::Gt, 4),
            Some(a) if is(a, "LT") => (Cond::Lt, 4),
            _ => (Cond::Always, 3),
        };
        Ok(HExpire {
            key,
            time,
            cond,
            fields: fields_arg(argv, at)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let at = match self.deadline(now_ms) {
            Ok(at) => at,
            Err(e) => return out.error(&e.0),
        };
        let ks = db.shard(self.key);
        // What each field gets, decided on the hash as readers see it.
        let codes: Vec<i64> = match ks.get_hash(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) => vec![-2; self.fields.len()],
            Ok(Some(h)) => self
                .fields
                .iter()
                .map(|f| {
                    if h.get(f).is_none() {
                        return -2;
                    }
                    let cur = h.expiry(f);
                    let ok = match self.cond {
                        Cond::Always => true,
                        Cond::Nx => cur.is_none(),
                        Cond::Xx => cur.is_some(),
                        Cond::Gt => cur.is_some_and(|c| at > c),
                        Cond::Lt => cur.is_none_or(|c| at < c),
                    };
                    match (ok, at <= now_ms) {
                        (false, _) => 0,
                        (true, false) => 1,
                        (true, true) => 2,
                    }
                })
                .collect(),
        };
        if codes.iter().any(|&c| c > 0) {
            let fields = self.fields;
            let _ = ks.write_hash(self.key, now_ms, false, |h, _| {
                for (f, &c) in fields.iter().zip(&codes) {
                    match c {
                        1 => {
                            h.set_expiry(f, at);
                        }
                        2 => {
                            h.remove(f);
                        }
                        _ => {}
                    }
                }
            });
        }
        out.array(codes.len());
        for c in codes {
            out.int(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::hset::HSet;
    use crate::Keyspace;
    use cairn_proto::{Protocol, ReplyWriter};

    fn run<'a, C: Command<'a>>(ks: &mut Keyspace, argv: &'a [&'a [u8]], now: u64) -> String {
        let mut buf = Vec::new();
        let mut out = ReplyWriter::new(&mut buf, Protocol::Resp2);
        match C::parse(argv) {
            Ok(c) => c.apply(ks, now, &mut out),
            Err(e) => Reply::error(&mut out, &e.0),
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[test]
    fn conditions_codes_and_deletion() {
        let mut ks = Keyspace::new(1);
        let hset: Vec<&[u8]> = vec![b"HSET", b"h", b"a", b"1", b"b", b"2", b"c", b"3"];
        run::<HSet<false>>(&mut ks, &hset, 1000);
        let a: Vec<&[u8]> = vec![b"HEXPIRE", b"h", b"10", b"FIELDS", b"3", b"a", b"b", b"zz"];
        assert_eq!(
            run::<HExpire<0>>(&mut ks, &a, 1000),
            "*3\r\n:1\r\n:1\r\n:-2\r\n"
        );
        assert_eq!(
            ks.get_hash(b"h", 1000).unwrap().unwrap().expiry(b"a"),
            Some(11_000)
        );
        // NX: a has one already; c does not.
        let a: Vec<&[u8]> = vec![
            b"HPEXPIRE",
            b"h",
            b"500",
            b"NX",
            b"FIELDS",
            b"2",
            b"a",
            b"c",
        ];
        assert_eq!(run::<HPExpire>(&mut ks, &a, 1000), "*2\r\n:0\r\n:1\r\n");
        // GT against 11000 (a) and 1500 (c); LT too.
        let a: Vec<&[u8]> = vec![
            b"HPEXPIREAT",
            b"h",
            b"5000",
            b"GT",
            b"FIELDS",
            b"2",
            b"a",
            b"c",
        ];
        assert_eq!(run::<HPExpireAt>(&mut ks, &a, 1000), "*2\r\n:0\r\n:1\r\n");
        let a: Vec<&[u8]> = vec![b"HPEXPIREAT", b"h", b"5000", b"LT", b"FIELDS", b"1", b"a"];
        assert_eq!(run::<HPExpireAt>(&mut ks, &a, 1000), "*1\r\n:1\r\n");
        // A deadline at or before now deletes (2); the key goes with its
        // last field.
        let a: Vec<&[u8]> = vec![b"HEXPIRE", b"h", b"0", b"FIELDS", b"1", b"b"];
        assert_eq!(run::<HExpire<0>>(&mut ks, &a, 1000), "*1\r\n:2\r\n");
        // At 5000 a and c expire: readers no longer see the hash.
        assert!(ks.get_hash(b"h", 5000).unwrap().is_none());
        assert!(ks.get_hash(b"h", 4999).unwrap().is_some());
        // No such key: -2 per field, nothing created.
        let a: Vec<&[u8]> = vec![b"HEXPIRE", b"nokey", b"10", b"FIELDS", b"2", b"a", b"b"];
        assert_eq!(run::<HExpire<0>>(&mut ks, &a, 1000), "*2\r\n:-2\r\n:-2\r\n");
        assert!(ks.get_hash(b"nokey", 1000).unwrap().is_none());
    }

    #[test]
    fn bad_arguments_get_redis_errors() {
        let mut ks = Keyspace::new(1);
        for (argv, want) in [
            (
                &[&b"HEXPIRE"[..], b"h", b"x", b"FIELDS", b"1", b"a"][..],
                "ERR value is not an integer or out of range",
            ),
            (
                &[b"HEXPIRE", b"h", b"-1", b"FIELDS", b"1", b"a"],
                "ERR invalid expire time, must be >= 0",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"FIELD", b"1", b"a"],
                "ERR Mandatory argument FIELDS is missing or not at the right position",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"NX", b"XX", b"FIELDS", b"1", b"a"],
                "ERR Mandatory argument FIELDS is missing or not at the right position",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"FIELDS", b"0", b"a"],
                "ERR Parameter `numFields` should be greater than 0",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"FIELDS", b"x", b"a"],
                "ERR Parameter `numFields` should be greater than 0",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"FIELDS", b"2", b"a"],
                "ERR The `numfields` parameter must match the number of arguments",
            ),
            (
                &[b"HEXPIRE", b"h", b"10", b"FIELDS", b"1", b"a", b"b"],
                "ERR The `numfields` parameter must match the number of arguments",
            ),
            (
                &[
                    b"HEXPIRE",
                    b"h",
                    b"9223372036854775807",
                    b"FIELDS",
                    b"1",
                    b"a",
                ],
                "ERR invalid expire time in 'hexpire' command",
            ),
        ] {
            let got = run::<HExpire<0>>(&mut ks, argv, 1000);
            assert_eq!(got, format!("-{want}\r\n"), "{argv:?}");
        }
        let argv: Vec<&[u8]> = vec![
            b"HPEXPIREAT",
            b"h",
            b"281474976710656",
            b"FIELDS",
            b"1",
            b"a",
        ];
        assert_eq!(
            run::<HPExpireAt>(&mut ks, &argv, 1000),
            "-ERR invalid expire time in 'hpexpireat' command\r\n"
        );
    }
}
