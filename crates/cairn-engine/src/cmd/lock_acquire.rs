//! LOCK.ACQUIRE name owner lease_ms [WAIT ms]
//!
//! The fencing token (integer) of a grant, the same token when `owner`
//! already holds the lock (its lease renewed: a retried request is safe),
//! or a null reply when another owner holds it. With WAIT (1 ms to 1 h;
//! 0 = do not wait), an owner that finds the lock held joins its FIFO
//! queue and the reply is `+QUEUED`, which the server turns into a wait
//! for the grant (it never reaches a client). docs/design/locks.md.

use super::{CmdError, Command, Db};
use crate::locks::{Acquired, LEASE_MAX_MS, OWNER_MAX};
use crate::reply::Reply;

pub struct LockAcquire<'a> {
    pub name: &'a [u8],
    pub owner: &'a [u8],
    pub lease_ms: u64,
    /// WAIT ms (0: do not wait).
    pub wait_ms: u64,
}

/// Longest WAIT: an hour.
pub const WAIT_MAX_MS: u64 = 3_600_000;
/// The reply of an acquire that queued its owner.
pub const QUEUED: &str = "QUEUED";

/// The owner argument: 1 to `OWNER_MAX` bytes.
pub(crate) fn owner_arg(a: &[u8]) -> Result<&[u8], CmdError> {
    if a.is_empty() || a.len() > OWNER_MAX {
        return Err(CmdError(
            format!("ERR owner must be 1 to {OWNER_MAX} bytes").into(),
        ));
    }
    Ok(a)
}

/// A lease in ms: 1 to `LEASE_MAX_MS`.
pub(crate) fn lease_arg(a: &[u8]) -> Result<u64, CmdError> {
    match crate::num::parse_i64(a) {
        Some(n) if n >= 1 && n as u64 <= LEASE_MAX_MS => Ok(n as u64),
        _ => Err(CmdError(
            format!("ERR lease must be an integer from 1 to {LEASE_MAX_MS} ms").into(),
        )),
    }
}

/// A fencing token: a non-negative integer.
pub(crate) fn token_arg(a: &[u8]) -> Result<u64, CmdError> {
    match crate::num::parse_i64(a) {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err(CmdError::from("ERR token must be a non-negative integer")),
    }
}

impl<'a> Command<'a> for LockAcquire<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        if argv.len() != 4 && argv.len() != 6 {
            if argv.len() < 4 {
                return Err(super::wrong_arity("lock.acquire"));
            }
            return Err(super::SYNTAX.into());
        }
        let mut wait_ms = 0;
        if argv.len() == 6 {
            if !super::is(argv[4], "WAIT") {
                return Err(super::SYNTAX.into());
            }
            wait_ms = match crate::num::parse_i64(argv[5]) {
                Some(n) if n >= 0 && n as u64 <= WAIT_MAX_MS => n as u64,
                _ => {
                    return Err(CmdError(
                        format!("ERR WAIT must be an integer from 0 to {WAIT_MAX_MS} ms").into(),
                    ))
                }
            };
        }
        Ok(LockAcquire {
            name: argv[1],
            owner: owner_arg(argv[2])?,
            lease_ms: lease_arg(argv[3])?,
            wait_ms,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        let wait = self.wait_ms > 0;
        match locks.acquire(self.name, self.owner, self.lease_ms, wait, now) {
            Ok(Acquired::Granted(t) | Acquired::Renewed(t)) => out.int(t as i64),
            Ok(Acquired::Busy) => out.null(),
            Ok(Acquired::Queued) => out.simple(QUEUED),
            Err(e) => out.error(e),
        }
    }
}
