//! SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
//!
//! Cursor = shard index << 32 | position inside the shard. Each call
//! visits about COUNT positions per shard, moving to the next shard while
//! it has found fewer than COUNT keys.

use cairn_engine::cmd::scan::Scan;

use super::{Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let scan = match Scan::parse(argv) {
        Ok(s) => s,
        Err(e) => {
            ctx.out.error(e.msg());
            return Flow::Continue;
        }
    };
    let db = &ctx.shared.db;
    let mut shard = (scan.cursor >> 32) as usize;
    let mut local = scan.cursor & 0xffff_ffff;
    let mut keys = Vec::new();
    let mut next = 0u64;
    while shard < db.count() {
        local = scan.scan_shard(&db.lock(shard), local, ctx.now_ms, &mut keys);
        if local != 0 {
            next = ((shard as u64) << 32) | local;
            break;
        }
        shard += 1;
        if keys.len() >= scan.count && shard < db.count() {
            // "Shard N, from the top": never 0, since N >= 1.
            next = (shard as u64) << 32;
            break;
        }
    }
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(keys.len());
    for k in &keys {
        ctx.out.bulk(k);
    }
    Flow::Continue
}
