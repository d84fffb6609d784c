//! RESET: back to a fresh connection's state (RESP2, no name, the
//! default user).

use cairn_proto::Protocol;

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    ctx.conn.proto = Protocol::Resp2;
    ctx.conn
        .info
        .resp
        .store(2, std::sync::atomic::Ordering::Relaxed);
    ctx.conn.info.name.lock().clear();
    ctx.conn.multi = None;
    ctx.conn.watched.clear();
    // As Redis: back to `default`, authenticated only if it needs no
    // password.
    ctx.conn.auth.epoch = ctx.shared.acl.epoch();
    ctx.conn.auth.user = ctx.shared.acl.initial();
    *ctx.conn.info.user.lock() = "default".into();
    ctx.out.proto = Protocol::Resp2;
    ctx.out.simple("RESET");
    Flow::Continue
}
