//! SINTERCARD numkeys key [key ...] [LIMIT limit]
//!
//! The size of the intersection, counting stops at `limit` (0: no
//! limit). Errors in Redis' words, all decided at parse time.

use super::sunion::read_sets;
use super::{is, CmdError, Command, Db, SYNTAX};
use crate::reply::Reply;

pub struct SInterCard<'a> {
    keys: &'a [&'a [u8]],
    limit: usize,
}

/// How many keys a `numkeys`-led command names (SINTERCARD), checked
/// against the arguments that follow it, in Redis' words.
fn numkeys(argv: &[&[u8]]) -> Result<usize, CmdError> {
    let n = super::arg(argv, 1)?;
    let n = match crate::num::parse_i64(n) {
        Some(n) if n > 0 => n as u64,
        _ => return Err("ERR numkeys should be greater than 0".into()),
    };
    if n > argv.len().saturating_sub(2) as u64 {
        return Err("ERR Number of keys can't be greater than number of args".into());
    }
    Ok(n as usize)
}

impl<'a> Command<'a> for SInterCard<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let n = numkeys(argv)?;
        let mut limit = 0;
        let mut i = 2 + n;
        while i < argv.len() {
            match argv.get(i + 1) {
                Some(v) if is(argv[i], "LIMIT") => match crate::num::parse_i64(v) {
                    Some(l) if l >= 0 => limit = l as usize,
                    _ => return Err("ERR LIMIT can't be negative".into()),
                },
                _ => return Err(SYNTAX.into()),
            }
            i += 2;
        }
        Ok(SInterCard {
            keys: &argv[2..2 + n],
            limit,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        match read_sets(db, self.keys, now_ms) {
            Ok(sets) => out.int(super::sinter::intersection(&sets, self.limit).len() as i64),
            Err(e) => out.error(e),
        }
    }
}
