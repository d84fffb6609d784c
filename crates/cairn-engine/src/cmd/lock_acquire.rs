//! LOCK.ACQUIRE name owner lease_ms
//!
//! The fencing token (integer) of a grant, the same token when `owner`
//! already holds the lock (its lease renewed: a retried request is safe),
//! or a null reply when another owner holds it. docs/design/locks.md.

use super::{CmdError, Command, Db};
use crate::locks::{Acquired, LEASE_MAX_MS, OWNER_MAX};
use crate::reply::Reply;

pub struct LockAcquire<'a> {
    name: &'a [u8],
    owner: &'a [u8],
    lease_ms: u64,
}

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
        if argv.len() != 4 {
            return Err(super::wrong_arity("lock.acquire"));
        }
        Ok(LockAcquire {
            name: argv[1],
            owner: owner_arg(argv[2])?,
            lease_ms: lease_arg(argv[3])?,
        })
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        let locks = &mut db.shard(self.name).locks;
        locks.set_wall_ms(now_ms);
        let now = locks.now_us();
        match locks.acquire(self.name, self.owner, self.lease_ms, now) {
            Ok(Acquired::Granted(t) | Acquired::Renewed(t)) => out.int(t as i64),
            Ok(Acquired::Busy) => out.null(),
            Err(e) => out.error(e),
        }
    }
}
