//! QUIT: replies OK, then closes the connection.

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    ctx.out.simple("OK");
    Flow::Close
}
