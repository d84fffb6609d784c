//! AUTH [username] password
//!
//! Authenticates the connection as a user of the ACL (crate::acl). A
//! failure is logged to ACL LOG; after `AUTH_FAILURES_MAX` failures on
//! one connection it is closed (a bound Redis does not have).

use super::{Ctx, Flow};
use crate::acl::{LogEntry, AUTH_FAILURES_MAX, WRONGPASS};

pub(crate) const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

/// Logs in as `user` with `pass`; on failure writes WRONGPASS and says
/// what the connection does next (close after too many failures).
/// `argv0` names the command in ACL LOG as the client typed it, as Redis.
pub(crate) fn login(ctx: &mut Ctx<'_>, argv0: &[u8], user: &[u8], pass: &[u8]) -> Result<(), Flow> {
    let acl = &ctx.shared.acl;
    let epoch = acl.epoch();
    let audit = |outcome: &'static str| {
        if let Some(a) = &ctx.shared.audit {
            a.record(crate::audit::Event {
                kind: "auth",
                user: String::from_utf8_lossy(user).into_owned(),
                client: ctx.conn.info.addr.to_string(),
                command: String::from_utf8_lossy(argv0).to_ascii_lowercase(),
                outcome,
                keys: Vec::new(),
            });
        }
    };
    if let Some(u) = acl.authenticate(user, pass) {
        let max = ctx.shared.config.maxclients_per_user;
        let name = String::from_utf8_lossy(&u.name).into_owned();
        if max > 0 && ctx.shared.clients.count_user(&name, ctx.conn.info.id) >= max {
            audit("limit");
            ctx.out.error(&format!(
                "ERR max number of clients for user '{name}' reached ({max})"
            ));
            return Err(Flow::Continue);
        }
        audit("ok");
        *ctx.conn.info.user.lock() = String::from_utf8_lossy(&u.name).into_owned();
        ctx.conn.auth.user = Some(u);
        ctx.conn.auth.epoch = epoch;
        return Ok(());
    }
    audit("failed");
    acl.log.lock().add(LogEntry {
        count: 1,
        reason: "auth",
        context: if ctx.conn.multi.is_some() {
            "multi"
        } else {
            "toplevel"
        },
        object: String::from_utf8_lossy(argv0).into_owned(),
        username: String::from_utf8_lossy(user).into_owned(),
        updated_ms: crate::unix_ms(),
        client_info: ctx.conn.info.describe(ctx.spec.name),
    });
    ctx.out.error(WRONGPASS);
    ctx.conn.auth.failures += 1;
    if ctx.conn.auth.failures >= AUTH_FAILURES_MAX {
        tracing::warn!(
            client = ctx.conn.info.id,
            "closing client after {AUTH_FAILURES_MAX} failed authentications"
        );
        return Err(Flow::Close);
    }
    Err(Flow::Continue)
}

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let (user, pass): (&[u8], &[u8]) = match argv {
        [_, pass] => {
            if ctx.shared.acl.get(b"default").is_some_and(|u| u.nopass) {
                ctx.out.error(NO_PASSWORD);
                return Flow::Continue;
            }
            (b"default", pass)
        }
        [_, user, pass] => (user, pass),
        _ => {
            ctx.out.error(cairn_engine::cmd::SYNTAX);
            return Flow::Continue;
        }
    };
    match login(ctx, argv[0], user, pass) {
        Ok(()) => {
            ctx.out.simple("OK");
            Flow::Continue
        }
        Err(flow) => flow,
    }
}
