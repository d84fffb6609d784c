//! One command's way in: lookup, arity, memory, then either the handler
//! here and now or (cluster mode) the route to its group. Sits above both
//! the command table (`cmd`) and cluster routing (`cluster`), so neither
//! depends on the other's caller.

use std::time::Instant;

use cairn_proto::ReplyWriter;

use crate::acl::{self, Denied, LogEntry};
use crate::cluster::{self, Route};
use crate::cmd::{self, Flow};
use crate::session::ConnState;
use crate::stats::bump;
use crate::Shared;

/// While cluster commands are gathered into a pipeline (they all run
/// concurrently, replies in order): adds this command if it goes to one
/// group's leader too and needs nothing first (no error to report, no
/// memory to make); otherwise changes nothing and asks for a barrier.
fn join_pipeline(shared: &Shared, conn: &mut ConnState, argv: &[&[u8]]) -> Flow {
    let Some(idx) = cmd::lookup(argv[0]) else {
        return Flow::Barrier;
    };
    let spec = &cmd::table()[idx];
    let argc = argv.len() as i32;
    if !cmd::arity_ok(spec.arity, argc) {
        return Flow::Barrier;
    }
    if acl::check(&shared.acl, &mut conn.auth, idx, argv).is_err() {
        return Flow::Barrier;
    }
    // Audited commands go through `dispatch`, which records them.
    if shared.audit.is_some() && acl::category::audited(idx) {
        return Flow::Barrier;
    }
    if spec.flags & cmd::DENYOOM != 0 {
        let max = shared
            .settings
            .maxmemory
            .load(std::sync::atomic::Ordering::Relaxed) as usize;
        if max > 0 && shared.db.bytes_used() > max {
            return Flow::Barrier;
        }
    }
    match cluster::route(shared, conn, idx, argv) {
        Route::Deferred(d) if d.admin.is_none() && d.group.is_some() => {
            bump(&conn.stats.commands[idx].calls, 1);
            conn.info
                .last_cmd
                .store(idx, std::sync::atomic::Ordering::Relaxed);
            conn.deferred.push(*d);
            Flow::Defer
        }
        _ => Flow::Barrier,
    }
}

/// Executes one command, writing its reply to `wbuf`.
pub(crate) fn dispatch(
    shared: &Shared,
    conn: &mut ConnState,
    argv: &[&[u8]],
    wbuf: &mut Vec<u8>,
    now_ms: u64,
) -> Flow {
    let proto = conn.proto;
    if !conn.deferred.is_empty() {
        return join_pipeline(shared, conn, argv);
    }
    let Some(idx) = cmd::lookup(argv[0]) else {
        if let Some(m) = conn.multi.as_mut() {
            m.dirty = true;
        }
        ReplyWriter::new(wbuf, proto).error(&cmd::unknown_command_error(argv));
        return Flow::Continue;
    };
    let spec = &cmd::table()[idx];
    let stat = &conn.stats.commands[idx];
    let argc = argv.len() as i32;
    if !cmd::arity_ok(spec.arity, argc) {
        bump(&stat.rejected, 1);
        if let Some(m) = conn.multi.as_mut() {
            m.dirty = true;
        }
        ReplyWriter::new(wbuf, proto).error(&cairn_engine::cmd::wrong_arity(spec.name).0);
        return Flow::Continue;
    }
    // Access control: before the command runs, queues or is routed, so
    // neither MULTI nor a forward to another node skips it.
    if let Err(d) = acl::check(&shared.acl, &mut conn.auth, idx, argv) {
        bump(&stat.rejected, 1);
        return refuse(shared, conn, idx, argv, d, wbuf);
    }
    if let Some(a) = &shared.audit {
        if acl::category::audited(idx) {
            a.record(audit_event(conn, "command", spec, argv, ""));
        }
    }
    if conn.multi.is_some()
        && !matches!(
            spec.name,
            "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
        )
    {
        bump(&stat.calls, 1);
        let mut w = ReplyWriter::new(wbuf, proto);
        return cmd::multi::queue(shared, conn, idx, argv, &mut w, now_ms);
    }
    let clustered = shared.cluster.get().is_some();
    if clustered && spec.flags & cmd::DENYOOM != 0 {
        // Under an evicting policy the group's leader makes room by
        // proposing CAIRN.EVICT before the write (cluster.rs,
        // `make_room`); replicas never evict on their own.
        let max = shared
            .settings
            .maxmemory
            .load(std::sync::atomic::Ordering::Relaxed) as usize;
        if max > 0
            && shared.db.bytes_used() > max
            && shared.settings.policy() == cairn_engine::evict::Policy::NoEviction
        {
            bump(&stat.rejected, 1);
            ReplyWriter::new(wbuf, proto)
                .error("OOM command not allowed when used memory > 'maxmemory'.");
            return Flow::Continue;
        }
    }
    if clustered {
        match cluster::route(shared, conn, idx, argv) {
            Route::Local => {}
            Route::Error(e) => {
                bump(&stat.rejected, 1);
                ReplyWriter::new(wbuf, proto).error(&e);
                return Flow::Continue;
            }
            Route::Deferred(d) => {
                bump(&stat.calls, 1);
                conn.info
                    .last_cmd
                    .store(idx, std::sync::atomic::Ordering::Relaxed);
                conn.deferred.push(*d);
                return Flow::Defer;
            }
        }
    } else if spec.flags & cmd::DENYOOM != 0 {
        let s = &shared.settings;
        let max = s.maxmemory.load(std::sync::atomic::Ordering::Relaxed) as usize;
        if max > 0
            && !shared.db.ensure_memory(
                max,
                s.policy(),
                s.samples.load(std::sync::atomic::Ordering::Relaxed) as usize,
                now_ms,
            )
        {
            bump(&stat.rejected, 1);
            ReplyWriter::new(wbuf, proto)
                .error("OOM command not allowed when used memory > 'maxmemory'.");
            return Flow::Continue;
        }
    }
    conn.info
        .last_cmd
        .store(idx, std::sync::atomic::Ordering::Relaxed);
    let reply_at = wbuf.len();
    let started = Instant::now();
    let flow = cmd::run_handler(shared, conn, idx, argv, wbuf, now_ms);
    let done = Instant::now();
    let us = done.duration_since(started).as_micros() as u64;
    let stat = &conn.stats.commands[idx];
    bump(&stat.calls, 1);
    bump(&stat.usec, us);
    if wbuf.get(reply_at) == Some(&b'-') {
        bump(&stat.failed, 1);
    }
    conn.info.last_active_ms.store(
        done.duration_since(conn.info.created).as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    cmd::slow_path_logs(shared, conn, argv, us);
    flow
}

/// An audit record of `argv` by this connection: names only (the
/// command, its keys), never values.
fn audit_event(
    conn: &ConnState,
    kind: &'static str,
    spec: &cmd::Spec,
    argv: &[&[u8]],
    outcome: &'static str,
) -> crate::audit::Event {
    crate::audit::Event {
        kind,
        user: conn.auth.name(),
        client: conn.info.addr.to_string(),
        command: acl::full_name(spec, argv),
        outcome,
        keys: spec
            .keys_of(argv)
            .filter_map(|i| argv.get(i))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
    }
}

/// Answers a command the ACL refused (Redis' wording), logging it to
/// ACL LOG. A refused EXEC discards the transaction, as in Redis.
fn refuse(
    shared: &Shared,
    conn: &mut ConnState,
    idx: usize,
    argv: &[&[u8]],
    d: Denied,
    wbuf: &mut Vec<u8>,
) -> Flow {
    let spec = &cmd::table()[idx];
    let (reason, object, msg) = match d {
        Denied::UserGone => return Flow::Close,
        Denied::NoAuth => ("", String::new(), acl::NOAUTH.to_string()),
        Denied::Command => {
            let name = acl::full_name(spec, argv);
            let msg = format!("NOPERM this user has no permissions to run the '{name}' command");
            ("command", name, msg)
        }
        Denied::Key(pos) => (
            "key",
            String::from_utf8_lossy(argv[pos]).into_owned(),
            "NOPERM this user has no permissions to access one of the keys used as arguments"
                .to_string(),
        ),
    };
    if let Some(a) = &shared.audit {
        let why = match d {
            Denied::NoAuth => "noauth",
            Denied::Command => "command",
            Denied::Key(_) => "key",
            Denied::UserGone => "user-gone",
        };
        a.record(audit_event(conn, "denied", spec, argv, why));
    }
    if !reason.is_empty() {
        let entry = LogEntry {
            count: 1,
            reason,
            context: if conn.multi.is_some() {
                "multi"
            } else {
                "toplevel"
            },
            object,
            username: conn.auth.name(),
            updated_ms: crate::unix_ms(),
            client_info: conn.info.describe(&acl::full_name(spec, argv)),
        };
        shared.acl.log.lock().add(entry);
    }
    let mut w = ReplyWriter::new(wbuf, conn.proto);
    if spec.name == "exec" {
        conn.multi = None;
        conn.watched.clear();
        w.error(&format!(
            "EXECABORT Transaction discarded because of: {msg}"
        ));
    } else {
        if let Some(m) = conn.multi.as_mut() {
            m.dirty = true;
        }
        w.error(&msg);
    }
    Flow::Continue
}
