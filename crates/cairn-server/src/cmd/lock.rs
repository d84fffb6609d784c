//! LOCK.ACQUIRE on a standalone server, where waiting needs the
//! connection: an owner that finds the lock held and asked to WAIT joins
//! the lock's queue, and the connection waits for its grant
//! (`lockwait.rs`). In cluster mode the command is proposed to its group
//! and the same wait follows its `+QUEUED` reply (`cluster/exec.rs`).

use cairn_engine::cmd::lock_acquire::LockAcquire;
use cairn_engine::cmd::Command;
use cairn_engine::locks::Acquired;

use super::{Ctx, Flow};
use crate::cluster::deferred::{Deferred, LockWait, Then};

/// LOCK.ACQUIRE (`SEM` false) and SEM.ACQUIRE.
pub(super) fn acquire<const SEM: bool>(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let cmd = match LockAcquire::<SEM>::parse(argv) {
        Ok(c) => c,
        Err(e) => {
            ctx.out.error(e.msg());
            return Flow::Continue;
        }
    };
    let shared = ctx.shared;
    let i = shared.db.index_of(cmd.name);
    let r = {
        let mut ks = shared.db.lock(i);
        let now = ks.locks.at(ctx.now_ms);
        let r = ks.locks.acquire_permits(
            cmd.name,
            cmd.owner,
            cmd.permits,
            cmd.limit,
            cmd.lease_ms,
            cmd.wait_ms > 0,
            now,
        );
        // Acquiring may end an expired lease and hand the lock on.
        let grants = ks.locks.take_grants();
        shared.lock_waits.notify(i, grants);
        r
    };
    match r {
        Ok(Acquired::Granted(t) | Acquired::Renewed(t)) => ctx.out.int(t as i64),
        Ok(Acquired::Busy) => ctx.out.null(),
        Ok(Acquired::Queued) => {
            ctx.conn.deferred.push(Deferred {
                idx: super::lookup(argv[0]).unwrap_or(0),
                argv: Vec::new(),
                group: None,
                write: true,
                denyoom: false,
                slot: 0,
                admin: None,
                list_wait: None,
                lock_wait: Some(LockWait {
                    shard: i,
                    name: cmd.name.to_vec(),
                    owner: cmd.owner.to_vec(),
                    wait_ms: cmd.wait_ms,
                }),
                then: Then::Reply,
            });
            return Flow::Defer;
        }
        Err(e) => ctx.out.error(e),
    }
    Flow::Continue
}
