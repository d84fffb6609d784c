//! PING [message]

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match argv {
        [_] => ctx.out.simple("PONG"),
        [_, msg] => ctx.out.bulk(msg),
        _ => ctx.out.error(&cairn_engine::cmd::wrong_arity("ping").0),
    }
    Flow::Continue
}
