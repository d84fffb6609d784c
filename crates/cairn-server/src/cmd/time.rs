//! TIME: [unix seconds, microseconds] as bulk strings.

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk_int(now.as_secs() as i64);
    ctx.out.bulk_int(now.subsec_micros() as i64);
    Flow::Continue
}
