//! EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX | XX | GT | LT]
//!
//! A key without a deadline counts as an infinite one for GT and LT. A
//! deadline in the past deletes the key (and still replies 1).

use super::{is, CmdError, Command, Db};
use crate::reply::Reply;

/// Conditions as Redis checks them: NX needs no deadline, XX needs one;
/// GT/LT compare with the current deadline (none counts as infinite).
#[derive(Clone, Copy, Default)]
struct Cond {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

/// `UNIT`: 0 EXPIRE, 1 PEXPIRE, 2 EXPIREAT, 3 PEXPIREAT.
pub struct Expire<'a, const UNIT: u8> {
    key: &'a [u8],
    time: i64,
    cond: Cond,
}

pub type PExpire<'a> = Expire<'a, 1>;
pub type ExpireAt<'a> = Expire<'a, 2>;
pub type PExpireAt<'a> = Expire<'a, 3>;

impl<const UNIT: u8> Expire<'_, UNIT> {
    /// The absolute deadline (unix ms, possibly past), or Redis' error
    /// when the time overflows.
    fn deadline(&self, now_ms: u64) -> Result<i64, CmdError> {
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
        if UNIT < 2 {
            ms.checked_add(now_ms as i64).ok_or_else(invalid)
        } else {
            Ok(ms)
        }
    }

    fn name() -> &'static str {
        ["expire", "pexpire", "expireat", "pexpireat"][UNIT as usize % 4]
    }
}

impl<'a, const UNIT: u8> Command<'a> for Expire<'a, UNIT> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let key = super::arg(argv, 1)?;
        let time = super::arg(argv, 2)?;
        // Redis validates the options before the number.
        let mut c = Cond::default();
        for a in &argv[3..] {
            if is(a, "NX") {
                c.nx = true
            } else if is(a, "XX") {
                c.xx = true
            } else if is(a, "GT") {
                c.gt = true
            } else if is(a, "LT") {
                c.lt = true
            } else {
                return Err(CmdError(
                    format!("ERR Unsupported option {}", String::from_utf8_lossy(a)).into(),
                ));
            }
        }
        if c.nx && (c.xx || c.gt || c.lt) {
            return Err(
                "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
            );
        }
        if c.gt && c.lt {
            return Err("ERR GT and LT options at the same time are not compatible".into());
        }
        Ok(Expire {
            key,
            time: super::int_arg(time)?,
            cond: c,
        })
    }

    fn check(&self, now_ms: u64) -> Result<(), CmdError> {
        self.deadline(now_ms).map(|_| ())
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let deadline = match self.deadline(now_ms) {
            Ok(d) => d,
            Err(e) => return out.error(e.msg()),
        };
        let ks = db.shard(self.key);
        let Some(current) = ks.deadline(self.key, now_ms) else {
            return out.int(0);
        };
        let c = self.cond;
        let refused = (c.nx && current.is_some())
            || (c.xx && current.is_none())
            || (c.gt && current.is_none_or(|cur| deadline <= cur as i64))
            || (c.lt && current.is_some_and(|cur| deadline >= cur as i64));
        if refused {
            return out.int(0);
        }
        if deadline <= now_ms as i64 {
            ks.remove(self.key, now_ms);
        } else {
            ks.set_deadline(self.key, Some(deadline as u64), now_ms);
        }
        out.int(1)
    }
}
