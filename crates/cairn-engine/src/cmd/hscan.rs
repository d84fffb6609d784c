//! HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]
//!
//! A listpack comes back whole in one call (cursor 0), as in Redis; a
//! table is walked by position (see [`crate::hash::Hash::scan`]). As in
//! Redis, the options are checked only once the key is found to hold a
//! hash: a missing key answers an empty scan whatever follows.

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::glob::glob_match;
use crate::reply::Reply;

pub struct HScan<'a>(ScanArgs<'a>);

/// `KEY cursor [options...]` of HSCAN, SSCAN and ZSCAN: the options are
/// only read once the key holds the right type (as Redis).
pub(crate) struct ScanArgs<'a> {
    pub key: &'a [u8],
    pub cursor: u64,
    pub options: &'a [&'a [u8]],
}

impl<'a> ScanArgs<'a> {
    pub fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(ScanArgs {
            key: super::arg(argv, 1)?,
            cursor: cursor(super::arg(argv, 2)?)?,
            options: &argv[3..],
        })
    }
}

/// The reply of a scan of a missing key: cursor 0, nothing.
pub(crate) fn empty_scan(out: &mut impl Reply) {
    out.array(2);
    out.bulk(b"0");
    out.array(0);
}

pub(crate) struct Options<'a> {
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    pub values: bool,
}

/// The options after the cursor; `novalues`: whether NOVALUES is one
/// (HSCAN; SSCAN has no values to leave out).
pub(crate) fn options<'a>(args: &[&'a [u8]], novalues: bool) -> Result<Options<'a>, CmdError> {
    let mut o = Options {
        pattern: None,
        count: 10,
        values: true,
    };
    let mut i = 0;
    while i < args.len() {
        if novalues && is(args[i], "NOVALUES") {
            o.values = false;
            i += 1;
            continue;
        }
        let Some(v) = args.get(i + 1).copied() else {
            return Err(SYNTAX.into());
        };
        if is(args[i], "MATCH") {
            o.pattern = Some(v);
        } else if is(args[i], "COUNT") {
            let n = super::int_arg(v)?;
            if n < 1 {
                return Err(SYNTAX.into());
            }
            o.count = n as usize;
        } else {
            return Err(SYNTAX.into());
        }
        i += 2;
    }
    Ok(o)
}

/// A scan cursor: an unsigned decimal.
pub(crate) fn cursor(arg: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(CmdError::from("ERR invalid cursor"))
}

impl<'a> Command<'a> for HScan<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        ScanArgs::parse(argv).map(HScan)
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let a = &self.0;
        let h = match db.shard(a.key).get_hash(a.key, now_ms) {
            Ok(Some(h)) => h,
            Ok(None) => return empty_scan(out),
            Err(e) => return out.error(e),
        };
        let o = match options(a.options, true) {
            Ok(o) => o,
            Err(e) => return super::reply_err(out, e),
        };
        let mut found: Vec<(&[u8], &[u8])> = Vec::new();
        let next = h.scan(a.cursor, o.count, |f, v| {
            if o.pattern.is_none_or(|p| glob_match(p, f)) {
                found.push((f, v));
            }
        });
        out.array(2);
        out.bulk(itoa::Buffer::new().format(next).as_bytes());
        out.array(found.len() * if o.values { 2 } else { 1 });
        for (f, v) in found {
            out.bulk(f);
            if o.values {
                out.bulk(v);
            }
        }
    }
}
