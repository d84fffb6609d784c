//! KEYS pattern: shard by shard (a key renamed across shards during the
//! call may be missed; use SCAN in production anyway).

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let mut keys = Vec::new();
    let now = ctx.now_ms;
    ctx.shared
        .db
        .for_each(|_, ks| cairn_engine::cmd::keys::keys_in(ks, argv[1], now, &mut keys));
    ctx.out.array(keys.len());
    for k in &keys {
        ctx.out.bulk(k);
    }
    Flow::Continue
}
