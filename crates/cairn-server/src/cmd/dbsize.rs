//! DBSIZE

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    let mut n = 0;
    ctx.shared.db.for_each(|_, ks| n += ks.len());
    ctx.out.int(n as i64);
    Flow::Continue
}
