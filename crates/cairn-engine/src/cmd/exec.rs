//! CAIRN.EXEC key nwatch [wkey version alive]... [argc arg...]...
//!
//! A MULTI/EXEC transaction as one command, so that it applies as one
//! log entry (cluster) or under one set of shard locks (standalone):
//! atomic, and decided identically on every replica.
//!
//! - `key` routes the transaction (any of its keys; all share a group);
//! - the watches are what WATCH recorded: a key, its write version and
//!   whether it was alive. If any watched key's version changed, or a key
//!   alive then is gone now (expired), nothing applies and the reply is a
//!   null array, as Redis' EXEC after a WATCH'ed change;
//! - every `LOCK.FENCE lock token` of the transaction is its
//!   precondition: if one does not hold, nothing applies and the reply is
//!   `-FENCED`;
//! - otherwise each command applies in order and the reply is the array
//!   of their replies (an error in one does not stop the others: Redis'
//!   semantics).
//!
//! Built by the server from a connection's queued commands; the
//! docs/design/transactions.md note has the reasons.

use super::lock_fence::LockFence;
use super::set::fence_holds;
use super::{int_arg, CmdError, Command, Db};
use crate::reply::Reply;

pub const FENCED_TX: &str = "FENCED the lock is not held with this token (transaction not applied)";

pub struct Exec<'a> {
    pub watches: Vec<(&'a [u8], u64, bool)>,
    pub cmds: Vec<&'a [&'a [u8]]>,
}

fn count(a: &[u8]) -> Result<usize, CmdError> {
    let n = int_arg(a)?;
    usize::try_from(n).map_err(|_| CmdError::from("ERR malformed transaction"))
}

impl<'a> Command<'a> for Exec<'a> {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError> {
        let bad = || CmdError::from("ERR malformed transaction");
        if argv.len() < 3 {
            return Err(super::wrong_arity("cairn.exec"));
        }
        let nwatch = count(argv[2])?;
        if nwatch > (argv.len() - 3) / 3 {
            return Err(bad());
        }
        let mut watches = Vec::with_capacity(nwatch);
        let mut i = 3;
        for _ in 0..nwatch {
            let version = crate::num::parse_i64(argv[i + 1])
                .filter(|&v| v >= 0)
                .ok_or_else(bad)? as u64;
            let alive = match argv[i + 2] {
                b"0" => false,
                b"1" => true,
                _ => return Err(bad()),
            };
            watches.push((argv[i], version, alive));
            i += 3;
        }
        let mut cmds = Vec::new();
        while i < argv.len() {
            let argc = count(argv[i])?;
            if argc == 0 || argc > argv.len() - i - 1 {
                return Err(bad());
            }
            cmds.push(&argv[i + 1..i + 1 + argc]);
            i += 1 + argc;
        }
        Ok(Exec { watches, cmds })
    }

    fn check(&self, _now_ms: u64) -> Result<(), CmdError> {
        for c in &self.cmds {
            crate::replicated::check_in_tx(c).map_err(CmdError::from)?;
        }
        Ok(())
    }

    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply) {
        for &(key, version, alive) in &self.watches {
            let (v, now_alive) = db.shard(key).key_version(key, now_ms);
            if v != version || (alive && !now_alive) {
                return out.null_array();
            }
        }
        for c in &self.cmds {
            if !c[0].eq_ignore_ascii_case(b"lock.fence") {
                continue;
            }
            // A malformed fence is answered in its place below.
            if let Ok(f) = LockFence::parse(c) {
                if !fence_holds(db, f.name, f.token, now_ms) {
                    return out.error(FENCED_TX);
                }
            }
        }
        out.array(self.cmds.len());
        for c in &self.cmds {
            crate::replicated::apply_in_tx(db, c, now_ms, out);
        }
    }
}
