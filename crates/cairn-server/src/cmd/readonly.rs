//! READONLY / READWRITE / ASKING — Redis Cluster connection modes.
//!
//! READONLY lets this connection's reads be served by this node's copy of
//! a group even when another node leads it: fast, possibly stale (the
//! same trade-off as reading a Redis Cluster replica). READWRITE goes
//! back to linearizable reads. ASKING is accepted for client
//! compatibility; cairn never answers -ASK (slots move with their group).

use super::{Ctx, Flow};

const DISABLED: &str = "ERR This instance has cluster support disabled";

pub(crate) fn readonly(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    if ctx.shared.cluster.get().is_none() {
        ctx.out.error(DISABLED);
        return Flow::Continue;
    }
    ctx.conn.readonly = true;
    ctx.out.simple("OK");
    Flow::Continue
}

pub(crate) fn readwrite(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    if ctx.shared.cluster.get().is_none() {
        ctx.out.error(DISABLED);
        return Flow::Continue;
    }
    ctx.conn.readonly = false;
    ctx.out.simple("OK");
    Flow::Continue
}

pub(crate) fn asking(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    if ctx.shared.cluster.get().is_none() {
        ctx.out.error(DISABLED);
        return Flow::Continue;
    }
    ctx.out.simple("OK");
    Flow::Continue
}
