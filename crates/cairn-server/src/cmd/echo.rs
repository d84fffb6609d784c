//! ECHO message

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    ctx.out.bulk(argv[1]);
    Flow::Continue
}
