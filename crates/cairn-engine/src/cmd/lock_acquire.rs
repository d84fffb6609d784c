//! LOCK.ACQUIRE name owner lease_ms [WAIT ms]
//! SEM.ACQUIRE name owner permits limit lease_ms [WAIT ms]
//!
//! SEM.ACQUIRE takes `permits` of a semaphore of `limit` permits (1 to
//! 1,000,000; every acquire of a name must give the same limit, and
//! LOCK.ACQUIRE is SEM.ACQUIRE of 1 permit of 1). Waiters are served in
//! FIFO order: one asking for more permits than are free blocks those
//! behind it. The rest below holds for both.
//!
//! The fencing token (integer) of a grant, the same token when `owner`
//! already holds the lock (its lease renewed: a retried request is safe),
//! or a null reply when another owner holds it. With WAIT (1 ms to 1 h;
//! 0 = do not wait), an owner that finds the lock held joins its FIFO
//! queue and the reply is `+QUEUED <stamp>` (the command's place in the
//! log: the grant it waits for will carry a larger token), which the
//! server turns into a wait for the grant (it never reaches a client). docs/design/locks.md.

use super::{CmdError, Command, Db};
use crate::locks::{Acquired, LEASE_MAX_MS, LIMIT_MAX, OWNER_MAX};
use crate::reply::Reply;

pub struct LockAcquire<'a, const SEM: bool> {
    pub name: &'a [u8],
    pub owner: &'a [u8],
    pub permits: u32,
    pub limit: u32,
    pub lease_ms: u64,
    /// WAIT ms (0: do not wait).
    pub wait_ms: u64,
}

pub type SemAcquire<'a> = LockAcquire<'a, true>;

/// A permit count: 1 to `LIMIT_MAX`.
fn permits_arg(a: &[u8], what: &str) -> Result<u32, CmdError> {
    match crate::num::parse_i64(a) {
        Some(n) if n >= 1 && n <= i64::from(LIMIT_MAX) => Ok(n as u32),
        _ => Err(CmdError(
            format!("ERR {what} must be an integer from 1 to {LIMIT_MAX}").into(),
        )),
    }
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

impl<'a, const SEM: bool> Command<'a> for LockAcquire<'a, SEM> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        // Arguments before the optional WAIT ms.
        let base = if SEM { 6 } else { 4 };
        let name = if SEM { "sem.acquire" } else { "lock.acquire" };
        if argv.len() != base && argv.len() != base + 2 {
            if argv.len() < base {
                return Err(super::wrong_arity(name));
            }
            return Err(super::SYNTAX.into());
        }
        let mut wait_ms = 0;
        if argv.len() == base + 2 {
            if !super::is(argv[base], "WAIT") {
                return Err(super::SYNTAX.into());
            }
            wait_ms = match crate::num::parse_i64(argv[base + 1]) {
                Some(n) if n >= 0 && n as u64 <= WAIT_MAX_MS => n as u64,
                _ => {
                    return Err(CmdError(
                        format!("ERR WAIT must be an integer from 0 to {WAIT_MAX_MS} ms").into(),
                    ))
                }
            };
        }
        let (permits, limit) = if SEM {
            let p = permits_arg(argv[3], "permits")?;
            let l = permits_arg(argv[4], "limit")?;
            if p > l {
                return Err(crate::locks::PERMITS_OVER_LIMIT.into());
            }
            (p, l)
        } else {
            (1, 1)
        };
        Ok(LockAcquire {
            name: argv[1],
            owner: owner_arg(argv[2])?,
            permits,
            limit,
            lease_ms: lease_arg(argv[base - 1])?,
            wait_ms,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        let now = locks.at(now_ms);
        let wait = self.wait_ms > 0;
        let r = locks.acquire_permits(
            self.name,
            self.owner,
            self.permits,
            self.limit,
            self.lease_ms,
            wait,
            now,
        );
        match r {
            Ok(Acquired::Granted(t) | Acquired::Renewed(t)) => out.int(t as i64),
            Ok(Acquired::Busy) => out.null(),
            Ok(Acquired::Queued) => out.simple(&format!("{QUEUED} {}", locks.stamp())),
            Err(e) => out.error(e),
        }
    }
}
