//! FLUSHDB / FLUSHALL [ASYNC | SYNC]: atomic across shards (all locked).

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match argv {
        [_] => {}
        [_, m] if m.eq_ignore_ascii_case(b"ASYNC") || m.eq_ignore_ascii_case(b"SYNC") => {}
        _ => {
            ctx.out.error(cairn_engine::cmd::SYNTAX);
            return Flow::Continue;
        }
    }
    let db = &ctx.shared.db;
    let mut guards = db.lock_all();
    for (i, g) in guards.iter_mut().enumerate() {
        g.clear();
        db.refresh(i, g);
    }
    drop(guards);
    ctx.out.simple("OK");
    Flow::Continue
}
