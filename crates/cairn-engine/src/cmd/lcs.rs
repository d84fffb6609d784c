//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]
//!
//! Redis 7.0's longest common subsequence of two strings (a missing key
//! is an empty string): the subsequence itself, its length (LEN), or its
//! runs of consecutive matches, last first (IDX, filtered by MINMATCHLEN,
//! each with its length under WITHMATCHLEN). The keys are looked up and
//! type-checked before the options are read, as in Redis.
//!
//! Work is bounded: the table has (len1+1)*(len2+1) cells, one step of
//! work each. Redis refuses a table of 32-bit cells larger than
//! `proto-max-bulk-len`; cairn gives the same answer and also refuses
//! more than [`CELLS_MAX`] cells (the same limit at the default 512 MB,
//! about a quarter of a second of work). Memory is far below Redis':
//! two rows for LEN, plus one bit per cell (16 MB at most) for the
//! subsequence and IDX (docs/design/datatypes.md, "Bitmaps and LCS").

use super::{is, CmdError, Command, Db, SYNTAX};
use crate::bits;
use crate::reply::Reply;

/// Most table cells an LCS may take: Redis' own limit at the default
/// `proto-max-bulk-len` (512 MB of 4-byte cells).
pub const CELLS_MAX: u64 = 1 << 27;

const NOT_STRINGS: &str = "ERR The specified keys must contain string values";

pub struct Lcs<'a> {
    a: &'a [u8],
    b: &'a [u8],
    options: &'a [&'a [u8]],
}

#[derive(Default)]
struct Options {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: usize,
}

fn options(args: &[&[u8]]) -> Result<Options, CmdError> {
    let mut o = Options::default();
    let mut j = 0;
    while j < args.len() {
        let a = args[j];
        if is(a, "IDX") {
            o.idx = true;
        } else if is(a, "LEN") {
            o.len = true;
        } else if is(a, "WITHMATCHLEN") {
            o.with_match_len = true;
        } else if is(a, "MINMATCHLEN") && j + 1 < args.len() {
            let n = super::int_arg(args[j + 1])?;
            o.min_match_len = usize::try_from(n).unwrap_or(0);
            j += 1;
        } else {
            return Err(SYNTAX.into());
        }
        j += 1;
    }
    if o.idx && o.len {
        return Err("ERR If you want both the length and indexes, please just use IDX.".into());
    }
    Ok(o)
}

/// Refuses strings whose table would be too large (Redis' two checks,
/// then cairn's bound on work).
fn check_size(la: usize, lb: usize, string_len_max: usize) -> Result<(), CmdError> {
    let too_long = u32::MAX as usize - 1;
    if la >= too_long || lb >= too_long {
        return Err("ERR String too long for LCS".into());
    }
    let cells = (la as u128 + 1) * (lb as u128 + 1);
    if cells * 4 > string_len_max as u128 {
        return Err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
        );
    }
    if cells > u128::from(CELLS_MAX) {
        return Err(format!(
            "ERR LCS refused: (len1+1)*(len2+1) = {cells} table cells, more than cairn's limit of {CELLS_MAX}"
        )
        .into());
    }
    Ok(())
}

/// The length of the string at `key` for LCS (0 when missing); `None`
/// for another type. Counts as a read (statistics, access time).
fn string_len(db: &mut impl Db, key: &[u8], now_ms: u64) -> Option<usize> {
    match db.shard(key).get(key, now_ms) {
        None => Some(0),
        Some(v) if v.is_string() => Some(v.str_len()),
        Some(_) => None,
    }
}

fn bytes_of(db: &mut impl Db, key: &[u8], now_ms: u64) -> Vec<u8> {
    let ks = db.shard(key);
    ks.find(key, now_ms)
        .map(|pos| ks.value_at(pos).to_vec())
        .unwrap_or_default()
}

impl<'a> Command<'a> for Lcs<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        Ok(Lcs {
            a: super::arg(argv, 1)?,
            b: super::arg(argv, 2)?,
            options: &argv[3..],
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let la = string_len(db, self.a, now_ms);
        let lb = string_len(db, self.b, now_ms);
        let (Some(la), Some(lb)) = (la, lb) else {
            return out.error(NOT_STRINGS);
        };
        let o = match options(self.options) {
            Ok(o) => o,
            Err(e) => return out.error(e.msg()),
        };
        let limit = db.shard(self.a).string_len_max();
        if let Err(e) = check_size(la, lb, limit) {
            return out.error(e.msg());
        }
        // Copies of at most CELLS_MAX bytes together (checked above).
        let a = bytes_of(db, self.a, now_ms);
        let b = bytes_of(db, self.b, now_ms);
        if o.len {
            return out.int(bits::lcs_len(&a, &b) as i64);
        }
        let (lcs, ranges) = bits::lcs_path(&a, &b);
        if !o.idx {
            return out.bulk(&lcs);
        }
        let shown: Vec<_> = ranges
            .iter()
            .filter(|r| o.min_match_len == 0 || r.match_len() >= o.min_match_len)
            .collect();
        out.map(2);
        out.bulk(b"matches");
        out.array(shown.len());
        for r in shown {
            out.array(2 + usize::from(o.with_match_len));
            for (s, e) in [r.a, r.b] {
                out.array(2);
                out.int(s as i64);
                out.int(e as i64);
            }
            if o.with_match_len {
                out.int(r.match_len() as i64);
            }
        }
        out.bulk(b"len");
        out.int(lcs.len() as i64);
    }
}
