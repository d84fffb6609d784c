//! LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]: the
//! positions of matching elements (Redis 6.0.6 semantics: RANK skips
//! matches, negative from the tail; COUNT 0 means all; MAXLEN 0 means
//! the whole list).

use super::lpop::positive;
use super::{CmdError, Command, Db};
use crate::reply::Reply;

const RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, \
                         2 from the second ... or use negative to start from the end of the list";
const RANK_RANGE: &str =
    "ERR value is out of range, must be between -9223372036854775807 and 9223372036854775807";

pub struct LPos<'a> {
    key: &'a [u8],
    element: &'a [u8],
    rank: i64,
    count: Option<usize>,
    maxlen: usize,
}

impl<'a> Command<'a> for LPos<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let element = super::arg(argv, 2)?;
        let (mut rank, mut count, mut maxlen) = (1, None, 0);
        let mut i = 3;
        while i < argv.len() {
            let (opt, value) = (argv[i], argv.get(i + 1));
            match value {
                Some(v) if super::is(opt, "rank") => {
                    rank = super::int_arg(v)?;
                    if rank == i64::MIN {
                        return Err(RANK_RANGE.into());
                    }
                    if rank == 0 {
                        return Err(RANK_ZERO.into());
                    }
                }
                Some(v) if super::is(opt, "count") => {
                    count = Some(positive(v, "ERR COUNT can't be negative")?);
                }
                Some(v) if super::is(opt, "maxlen") => {
                    maxlen = positive(v, "ERR MAXLEN can't be negative")?;
                }
                _ => return Err(super::SYNTAX.into()),
            }
            i += 2;
        }
        Ok(LPos {
            key,
            element,
            rank,
            count,
            maxlen,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let l = match db.shard(self.key).get_list(self.key, now_ms) {
            Err(e) => return out.error(e),
            Ok(None) if self.count.is_some() => return out.array(0),
            Ok(None) => return out.null(),
            Ok(Some(l)) => l,
        };
        let len = l.len();
        let scan_len = if self.maxlen == 0 {
            len
        } else {
            self.maxlen.min(len)
        };
        let skip = usize::try_from(self.rank.unsigned_abs() - 1).unwrap_or(usize::MAX);
        let want = match self.count {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => 1,
        };
        let matching = |(i, e): (usize, &[u8])| (e == self.element).then_some(i);
        let found: Vec<usize> = if self.rank > 0 {
            l.iter()
                .take(scan_len)
                .enumerate()
                .filter_map(matching)
                .skip(skip)
                .take(want)
                .collect()
        } else {
            l.iter()
                .rev()
                .take(scan_len)
                .enumerate()
                .filter_map(matching)
                .skip(skip)
                .take(want)
                .map(|i| len - 1 - i)
                .collect()
        };
        match self.count {
            Some(_) => {
                out.array(found.len());
                for i in found {
                    out.int(i as i64);
                }
            }
            None => match found.first() {
                Some(&i) => out.int(i as i64),
                None => out.null(),
            },
        }
    }
}
