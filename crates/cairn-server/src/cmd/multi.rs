//! MULTI, EXEC, DISCARD, WATCH, UNWATCH, and the queueing of commands
//! between MULTI and EXEC (docs/design/transactions.md).
//!
//! A transaction becomes one CAIRN.EXEC command (cairn_engine's
//! `cmd::exec`): in cluster mode one log entry of its keys' group, in
//! standalone mode one application under the locks of its keys' shards.
//! Either way it is atomic, and the WATCH check is made where the
//! commands apply, at the same moment.
//!
//! Redis' semantics: a command refused while queueing (unknown, wrong
//! arity, not allowed in a transaction, keys of another group, out of
//! memory) makes EXEC answer EXECABORT; errors of queued commands are
//! their replies inside EXEC's array; a changed WATCH'ed key makes EXEC
//! answer a null array; EXEC and DISCARD forget every WATCH.

use cairn_engine::cmd::exec::Exec;
use cairn_engine::cmd::Command;
use cairn_engine::slot::slot;

use super::{lookup, table, Ctx, Flow, DENYOOM};
use crate::cluster::deferred::{Deferred, Then};
use crate::session::{ConnState, Multi, Watched};
use crate::Shared;

/// Most commands one transaction may queue.
pub(crate) const QUEUED_MAX: usize = 100_000;
/// Most bytes of arguments one transaction may queue: it travels as one
/// log entry.
pub(crate) const QUEUED_BYTES_MAX: usize = 512 << 20;

pub(crate) const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

pub(crate) fn multi(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    if ctx.conn.multi.is_some() {
        ctx.out.error("ERR MULTI calls can not be nested");
    } else {
        ctx.conn.multi = Some(Multi::default());
        ctx.out.simple("OK");
    }
    Flow::Continue
}

pub(crate) fn discard(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    if ctx.conn.multi.take().is_none() {
        ctx.out.error("ERR DISCARD without MULTI");
    } else {
        ctx.conn.watched.clear();
        ctx.out.simple("OK");
    }
    Flow::Continue
}

pub(crate) fn unwatch(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    ctx.conn.watched.clear();
    ctx.out.simple("OK");
    Flow::Continue
}

/// Most keys one connection may watch.
pub(crate) const WATCHED_MAX: usize = 100_000;

pub(crate) fn watch(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    if ctx.conn.multi.is_some() {
        ctx.out.error("ERR WATCH inside MULTI is not allowed");
        return Flow::Continue;
    }
    let keys = &argv[1..];
    if ctx.conn.watched.len() + keys.len() > WATCHED_MAX {
        ctx.out.error(&format!(
            "ERR too many watched keys (at most {WATCHED_MAX})"
        ));
        return Flow::Continue;
    }
    let Some(cluster) = ctx.shared.cluster.get() else {
        let db = &ctx.shared.db;
        for k in keys {
            let (version, alive) = db.lock(db.index_of(k)).key_version(k, ctx.now_ms);
            ctx.conn.watched.push(Watched {
                key: k.to_vec(),
                version,
                alive,
                group: None,
            });
        }
        ctx.out.simple("OK");
        return Flow::Continue;
    };
    // Cluster mode: read the versions linearizably, from the group's
    // leader or after its read barrier (`Then::Watch` records them).
    let g = cluster.group_of_slot(u32::from(slot(keys[0])));
    if keys
        .iter()
        .any(|k| cluster.group_of_slot(u32::from(slot(k))) != g)
    {
        ctx.out.error(CROSSSLOT);
        return Flow::Continue;
    }
    let Some(idx) = lookup(b"cairn.versions") else {
        ctx.out.error("ERR cairn.versions missing");
        return Flow::Continue;
    };
    let mut args = Vec::with_capacity(argv.len());
    args.push(b"CAIRN.VERSIONS".to_vec());
    args.extend(keys.iter().map(|k| k.to_vec()));
    ctx.conn.deferred.push(Deferred {
        idx,
        argv: args,
        group: Some(g),
        write: false,
        denyoom: false,
        slot: slot(keys[0]),
        admin: None,
        list_wait: None,
        lock_wait: None,
        then: Then::Watch,
    });
    Flow::Defer
}

/// Records the versions CAIRN.VERSIONS answered for a deferred WATCH.
pub(crate) fn record_watch(conn: &mut ConnState, d: &Deferred, reply: &[u8]) -> Result<(), String> {
    let bad = || "ERR malformed reply to WATCH from the cluster".to_string();
    let frame = match cairn_proto::Frame::decode(reply, usize::MAX) {
        Ok(Some((f, _))) => f,
        _ => return Err(bad()),
    };
    let items = match frame {
        cairn_proto::Frame::Array(items) => items,
        cairn_proto::Frame::Error(e) => return Err(String::from_utf8_lossy(&e).into_owned()),
        _ => return Err(bad()),
    };
    let keys = &d.argv[1..];
    if items.len() != keys.len() * 2 {
        return Err(bad());
    }
    for (k, pair) in keys.iter().zip(items.chunks(2)) {
        let (cairn_proto::Frame::Integer(v), cairn_proto::Frame::Integer(a)) = (&pair[0], &pair[1])
        else {
            return Err(bad());
        };
        conn.watched.push(Watched {
            key: k.clone(),
            version: *v as u64,
            alive: *a != 0,
            group: d.group,
        });
    }
    Ok(())
}

/// Queues a command of a transaction (dispatch calls this for every
/// command between MULTI and EXEC but EXEC, DISCARD, MULTI, WATCH, QUIT
/// and RESET; arity was checked).
pub(crate) fn queue(
    shared: &Shared,
    conn: &mut ConnState,
    idx: usize,
    argv: &[&[u8]],
    out: &mut cairn_proto::ReplyWriter<'_>,
    now_ms: u64,
) -> Flow {
    let spec = &table()[idx];
    let refused = |conn: &mut ConnState, out: &mut cairn_proto::ReplyWriter<'_>, e: &str| {
        if let Some(m) = conn.multi.as_mut() {
            m.dirty = true;
        }
        out.error(e);
        Flow::Continue
    };
    if let Err(e) = cairn_engine::replicated::check_in_tx(argv) {
        return refused(conn, out, &e);
    }
    let bytes: usize = argv.iter().map(|a| a.len() + 16).sum();
    let Some(m) = conn.multi.as_ref() else {
        return Flow::Continue;
    };
    if m.cmds.len() >= QUEUED_MAX || m.bytes + bytes > QUEUED_BYTES_MAX {
        return refused(
            conn,
            out,
            &format!("ERR transaction too large (at most {QUEUED_MAX} commands and 512 MB)"),
        );
    }
    let mut group = m.group;
    if let Some(cluster) = shared.cluster.get() {
        for i in spec.keys_of(argv) {
            let g = cluster.group_of_slot(u32::from(slot(argv[i])));
            match group {
                None => group = Some(g),
                Some(g0) if g0 != g => return refused(conn, out, CROSSSLOT),
                _ => {}
            }
        }
    }
    let denyoom = spec.flags & DENYOOM != 0;
    if denyoom && !memory_ok(shared, now_ms) {
        return refused(
            conn,
            out,
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
    }
    if let Some(m) = conn.multi.as_mut() {
        m.cmds.push(argv.iter().map(|a| a.to_vec()).collect());
        m.bytes += bytes;
        m.denyoom |= denyoom;
        m.group = group;
    }
    out.simple("QUEUED");
    Flow::Continue
}

/// The memory check of a command that may need memory, as dispatch makes
/// it: standalone evicts now; in cluster mode the group's leader evicts
/// before it proposes, so only `noeviction` refuses here.
fn memory_ok(shared: &Shared, now_ms: u64) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &shared.settings;
    let max = s.maxmemory.load(Relaxed) as usize;
    if max == 0 {
        return true;
    }
    if shared.cluster.get().is_some() {
        return shared.db.bytes_used() <= max
            || s.policy() != cairn_engine::evict::Policy::NoEviction;
    }
    shared
        .db
        .ensure_memory(max, s.policy(), s.samples.load(Relaxed) as usize, now_ms)
}

/// Every key a CAIRN.EXEC touches: the watched keys and each command's
/// keys (by the command table), for routing and locking. Errors on a
/// malformed transaction or a command the table does not know.
pub(crate) fn exec_keys<'a>(argv: &'a [&'a [u8]]) -> Result<Vec<&'a [u8]>, String> {
    let tx = Exec::parse(argv).map_err(|e| e.msg().to_string())?;
    let mut keys: Vec<&[u8]> = tx.watches.iter().map(|w| w.0).collect();
    for c in &tx.cmds {
        let Some(i) = lookup(c[0]) else {
            return Err(format!(
                "ERR '{}' is not allowed in a transaction",
                String::from_utf8_lossy(c[0]).to_ascii_lowercase()
            ));
        };
        keys.extend(table()[i].keys_of(c).map(|k| c[k]));
    }
    Ok(keys)
}

pub(crate) fn exec(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    let Some(multi) = ctx.conn.multi.take() else {
        ctx.out.error("ERR EXEC without MULTI");
        return Flow::Continue;
    };
    let watched = std::mem::take(&mut ctx.conn.watched);
    if multi.dirty {
        ctx.out.error(EXECABORT);
        return Flow::Continue;
    }
    if let Err(e) = acl_still_allows(ctx, &multi.cmds) {
        ctx.out.error(&e);
        return Flow::Continue;
    }
    // CAIRN.EXEC route nwatch [key version alive]... [argc arg...]...
    let first_key = |c: &Vec<Vec<u8>>| {
        let spec = &table()[lookup(&c[0])?];
        let argv: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
        let k = spec.keys_of(&argv).next()?;
        Some(c[k].clone())
    };
    let route = watched
        .first()
        .map(|w| w.key.clone())
        .or_else(|| multi.cmds.iter().find_map(first_key));
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 + watched.len() * 3 + multi.cmds.len() * 4);
    args.push(b"CAIRN.EXEC".to_vec());
    args.push(route.clone().unwrap_or_default());
    args.push(watched.len().to_string().into_bytes());
    for w in &watched {
        args.push(w.key.clone());
        args.push(w.version.to_string().into_bytes());
        args.push(if w.alive {
            b"1".to_vec()
        } else {
            b"0".to_vec()
        });
    }
    for c in multi.cmds {
        args.push(c.len().to_string().into_bytes());
        args.extend(c);
    }
    match (ctx.shared.cluster.get(), route) {
        (Some(cluster), Some(route)) => {
            let g = cluster.group_of_slot(u32::from(slot(&route)));
            let other =
                watched.iter().any(|w| w.group != Some(g)) || multi.group.is_some_and(|m| m != g);
            if other {
                ctx.out.error(CROSSSLOT);
                return Flow::Continue;
            }
            let Some(idx) = lookup(b"cairn.exec") else {
                ctx.out.error("ERR cairn.exec missing");
                return Flow::Continue;
            };
            ctx.conn.deferred.push(Deferred {
                idx,
                argv: args,
                group: Some(g),
                write: true,
                denyoom: multi.denyoom,
                slot: slot(&route),
                admin: None,
                list_wait: None,
                lock_wait: None,
                then: Then::Exec,
            });
            Flow::Defer
        }
        // Standalone, or no key at all: apply here, under the locks of
        // the keys' shards.
        _ => {
            let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            exec_here(ctx, &argv);
            Flow::Continue
        }
    }
}

/// Redis checks queued commands again at EXEC, in case the user's rules
/// changed since they were queued. Redis answers the refusal in that
/// command's slot of EXEC's reply and runs the others; cairn's
/// transaction is one command, so the whole transaction is refused with
/// Redis' error (docs/design/acl.md).
fn acl_still_allows(ctx: &Ctx<'_>, cmds: &[Vec<Vec<u8>>]) -> Result<(), String> {
    let Some(user) = ctx.conn.auth.user.as_ref().filter(|u| !u.unrestricted) else {
        return Ok(());
    };
    for c in cmds {
        let argv: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
        let Some(idx) = lookup(argv[0]) else {
            continue;
        };
        let reason = match crate::acl::user_may(user, idx, &argv) {
            Ok(()) => continue,
            Err(crate::acl::Denied::Key(_)) => "no permission to touch the specified keys",
            Err(_) => "no permission to execute the command or subcommand",
        };
        return Err(format!("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}"));
    }
    Ok(())
}

/// CAIRN.EXEC sent as it is (standalone; in cluster mode it is routed
/// to its group's log): applied under the locks of all its keys' shards.
pub(crate) fn exec_raw(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    exec_here(ctx, argv);
    Flow::Continue
}

fn exec_here(ctx: &mut Ctx<'_>, argv: &[&[u8]]) {
    let keys = match exec_keys(argv) {
        Ok(k) => k,
        Err(e) => return ctx.out.error(&e),
    };
    let tx = match Exec::parse(argv) {
        Ok(t) => t,
        Err(e) => return ctx.out.error(e.msg()),
    };
    let db = &ctx.shared.db;
    let mut guard = db.lock_keys(keys.into_iter());
    tx.apply(&mut guard, ctx.now_ms, &mut ctx.out);
    // A release inside the transaction that handed a lock on: wake the
    // waiter.
    for (i, grants) in guard.take_grants() {
        ctx.shared.lock_waits.notify(i, grants);
    }
    // A push inside the transaction: wake a blocked pop.
    guard.each_locked(|i, ks| crate::listwait::wake_ready(ctx.shared, i, ks));
}
