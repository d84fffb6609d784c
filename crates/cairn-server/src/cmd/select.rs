//! SELECT index: cairn has one database, 0 (as Redis Cluster).

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match cairn_engine::num::parse_i64(argv[1]) {
        None => ctx.out.error(cairn_engine::cmd::NOT_INTEGER),
        Some(0) => ctx.out.simple("OK"),
        Some(_) => ctx.out.error("ERR DB index is out of range"),
    }
    Flow::Continue
}
