//! SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]: cairn keeps no
//! persistent state in standalone mode, so every form simply stops the
//! server gracefully (no reply; the connection closes, as in Redis).

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    if argv
        .iter()
        .skip(1)
        .any(|a| a.eq_ignore_ascii_case(b"ABORT"))
    {
        ctx.out.error("ERR No shutdown in progress.");
        return Flow::Continue;
    }
    tracing::warn!(client = ctx.conn.info.id, "SHUTDOWN requested by client");
    let _ = ctx.shared.shutdown.send(true);
    Flow::Close
}
