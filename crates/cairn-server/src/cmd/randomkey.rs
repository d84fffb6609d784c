//! RANDOMKEY: picks a shard weighted by its size, then a key in it.

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, _argv: &[&[u8]]) -> Flow {
    let db = &ctx.shared.db;
    let mut sizes = Vec::with_capacity(db.count());
    db.for_each(|_, ks| sizes.push(ks.len()));
    let total: usize = sizes.iter().sum();
    if total == 0 {
        ctx.out.null();
        return Flow::Continue;
    }
    let mut pick = (crate::unix_ms().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as usize % total;
    for (i, n) in sizes.iter().enumerate() {
        if pick < *n {
            if let Some(k) = db.lock(i).random_key(ctx.now_ms) {
                ctx.out.bulk(&k);
                return Flow::Continue;
            }
            break;
        }
        pick -= n;
    }
    // The chosen shard emptied meanwhile: take any key.
    for i in 0..db.count() {
        if let Some(k) = db.lock(i).random_key(ctx.now_ms) {
            ctx.out.bulk(&k);
            return Flow::Continue;
        }
    }
    ctx.out.null();
    Flow::Continue
}
