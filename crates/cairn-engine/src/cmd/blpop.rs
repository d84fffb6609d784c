//! BLPOP / BRPOP key [key ...] timeout, BLMOVE, BRPOPLPUSH and BLMPOP as
//! the keyspace sees them: parsing (the timeout with Redis' checks) and
//! one *attempt*, which is the non-blocking pop — a reply, or the null a
//! timeout would give when every list is empty.
//!
//! The waiting itself is the server's (crates/cairn-server/src/
//! listwait.rs): it retries the attempt when a list it waits on becomes
//! non-empty. Inside MULTI, and in the replicated log, only the attempt
//! ever runs, so a blocking pop there behaves as the non-blocking one
//! (as Redis does in MULTI), and every served pop is an ordinary write.

use super::lmove::{end_arg, LMove};
use super::lmpop::LMPop;
use super::zpop::{BZMPop, BZPopMax, BZPopMin};
use super::{CmdError, Command, Db};
use crate::keyspace::Blocked;
use crate::list::End;
use crate::reply::Reply;

pub const TIMEOUT_NOT_FLOAT: &str = "ERR timeout is not a float or out of range";
pub const TIMEOUT_NEGATIVE: &str = "ERR timeout is negative";
pub const TIMEOUT_RANGE: &str = "ERR timeout is out of range";

/// What the server needs to wait for a blocking command.
pub trait Blocking<'a> {
    /// The lists whose becoming non-empty may let the attempt succeed.
    fn wait_keys(&self) -> &[&'a [u8]];
    /// How long to wait; 0 = forever.
    fn timeout_ms(&self) -> u64;
    /// Whether it waits for sorted sets (BZPOPMIN, BZPOPMAX, BZMPOP)
    /// rather than lists.
    fn zset(&self) -> bool {
        false
    }
}

/// Redis' `getTimeoutFromObjectOrReply` in seconds: a float, rounded up
/// to whole milliseconds.
pub fn timeout_arg(arg: &[u8]) -> Result<u64, CmdError> {
    let Some(s) = crate::num::parse_f64(arg) else {
        return Err(TIMEOUT_NOT_FLOAT.into());
    };
    let ms = (s * 1000.0).ceil();
    if ms > i64::MAX as f64 {
        return Err(TIMEOUT_RANGE.into());
    }
    if ms < 0.0 {
        return Err(TIMEOUT_NEGATIVE.into());
    }
    Ok(ms as u64)
}

/// BLPOP (`LEFT`) and BRPOP: `[key, element]` from the first non-empty
/// list.
pub struct BPop<'a, const LEFT: bool> {
    keys: &'a [&'a [u8]],
    timeout_ms: u64,
}

pub type BLPop<'a> = BPop<'a, true>;
pub type BRPop<'a> = BPop<'a, false>;

impl<'a, const LEFT: bool> Command<'a> for BPop<'a, LEFT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        super::arg(argv, 2)?;
        let timeout_ms = timeout_arg(argv[argv.len() - 1])?;
        Ok(BPop {
            keys: &argv[1..argv.len() - 1],
            timeout_ms,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let end = if LEFT { End::Left } else { End::Right };
        let pop = LMPop {
            keys: self.keys,
            end,
            count: 1,
        };
        match pop.run(db, now_ms) {
            Err(e) => out.error(e),
            Ok(Some((key, items))) if !items.is_empty() => {
                out.array(2);
                out.bulk(key);
                out.bulk(&items[0]);
            }
            Ok(_) => out.null_array(),
        }
    }
}

impl<'a, const LEFT: bool> Blocking<'a> for BPop<'a, LEFT> {
    fn wait_keys(&self) -> &[&'a [u8]] {
        self.keys
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout, and
/// BRPOPLPUSH source destination timeout (`RPOPLPUSH` set).
pub struct BMove<'a, const RPOPLPUSH: bool> {
    keys: [&'a [u8]; 1],
    lmove: LMove<'a>,
    timeout_ms: u64,
}

pub type BLMove<'a> = BMove<'a, false>;
pub type BRPopLPush<'a> = BMove<'a, true>;

impl<'a, const RPOPLPUSH: bool> Command<'a> for BMove<'a, RPOPLPUSH> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let src = super::arg(argv, 1)?;
        let dst = super::arg(argv, 2)?;
        let (from, to, t) = if RPOPLPUSH {
            (End::Right, End::Left, super::arg(argv, 3)?)
        } else {
            let from = end_arg(super::arg(argv, 3)?)?;
            let to = end_arg(super::arg(argv, 4)?)?;
            (from, to, super::arg(argv, 5)?)
        };
        Ok(BMove {
            keys: [src],
            lmove: LMove { src, dst, from, to },
            timeout_ms: timeout_arg(t)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.lmove.apply(db, now_ms, out)
    }
}

impl<'a, const RPOPLPUSH: bool> Blocking<'a> for BMove<'a, RPOPLPUSH> {
    fn wait_keys(&self) -> &[&'a [u8]] {
        &self.keys
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
pub struct BLMPop<'a> {
    pop: LMPop<'a>,
    timeout_ms: u64,
}

impl<'a> Command<'a> for BLMPop<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let t = super::arg(argv, 1)?;
        let pop = LMPop::parse_at(argv, 2)?;
        Ok(BLMPop {
            pop,
            timeout_ms: timeout_arg(t)?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        self.pop.reply(db, now_ms, out)
    }
}

impl<'a> Blocking<'a> for BLMPop<'a> {
    fn wait_keys(&self) -> &[&'a [u8]] {
        self.pop.keys
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
}

/// The keys a blocking command waits on, its timeout in ms (0 =
/// forever), and what it waits for there (lists or sorted sets).
pub type Wait<'a> = (Vec<&'a [u8]>, u64, Blocked);

/// What a blocking command waits for; `None` for a command that does
/// not block.
pub fn wait_of<'a>(argv: &'a [&'a [u8]]) -> Option<Result<Wait<'a>, CmdError>> {
    fn of<'a, C: Command<'a> + Blocking<'a>>(argv: &'a [&'a [u8]]) -> Result<Wait<'a>, CmdError> {
        let c = C::parse(argv)?;
        let kind = if c.zset() {
            Blocked::ZSet
        } else {
            Blocked::List
        };
        Ok((c.wait_keys().to_vec(), c.timeout_ms(), kind))
    }
    let name = *argv.first()?;
    Some(if super::is(name, "blpop") {
        of::<BLPop>(argv)
    } else if super::is(name, "brpop") {
        of::<BRPop>(argv)
    } else if super::is(name, "blmove") {
        of::<BLMove>(argv)
    } else if super::is(name, "brpoplpush") {
        of::<BRPopLPush>(argv)
    } else if super::is(name, "blmpop") {
        of::<BLMPop>(argv)
    } else if super::is(name, "bzpopmin") {
        of::<BZPopMin>(argv)
    } else if super::is(name, "bzpopmax") {
        of::<BZPopMax>(argv)
    } else if super::is(name, "bzmpop") {
        of::<BZMPop>(argv)
    } else {
        return None;
    })
}
