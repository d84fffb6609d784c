//! MEMORY USAGE key [SAMPLES n] | STATS | DOCTOR | PURGE | MALLOC-STATS | HELP

use std::sync::atomic::Ordering::Relaxed;

use cairn_engine::cmd::object::Object;

use super::{help, info, sub, unknown_subcommand, Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match sub(argv).as_str() {
        "USAGE" if argv.len() >= 3 => match Object::parse_memory_usage(argv) {
            Ok(cmd) => {
                let db = &ctx.shared.db;
                let i = db.index_of(argv[2]);
                let mut g = db.lock(i);
                cairn_engine::cmd::Command::apply(&cmd, &mut *g, ctx.now_ms, &mut ctx.out);
            }
            Err(e) => ctx.out.error(e.msg()),
        },
        "STATS" => {
            let used = ctx.shared.db.bytes_used() as i64;
            let clients = ctx.shared.clients.buffer_bytes() as i64;
            let mut keys = 0;
            ctx.shared.db.for_each(|_, ks| keys += ks.len());
            ctx.out.map(6);
            ctx.out.bulk(b"total.allocated");
            ctx.out.int(used + clients);
            ctx.out.bulk(b"dataset.bytes");
            ctx.out.int(used);
            ctx.out.bulk(b"clients.normal");
            ctx.out.int(clients);
            ctx.out.bulk(b"keys.count");
            ctx.out.int(keys as i64);
            ctx.out.bulk(b"keys.bytes-per-key");
            ctx.out.int(if keys > 0 { used / keys as i64 } else { 0 });
            ctx.out.bulk(b"rss.bytes");
            ctx.out.int(info::rss_bytes() as i64);
        }
        "DOCTOR" => {
            let max = ctx.shared.settings.maxmemory.load(Relaxed);
            let text = format!(
                "Sam, dataset {} of maxmemory {} (0 = unlimited), RSS {}. No memory issue detected.\n",
                info::human(ctx.shared.db.bytes_used() as u64),
                info::human(max),
                info::human(info::rss_bytes())
            );
            ctx.out.verbatim("txt", text.as_bytes());
        }
        "PURGE" => ctx.out.simple("OK"),
        "MALLOC-STATS" => ctx
            .out
            .verbatim("txt", b"Stats not supported for the current allocator\n"),
        "HELP" => {
            return help(
                ctx,
                &[
                    "DOCTOR",
                    "    Return memory problems reports.",
                    "MALLOC-STATS",
                    "    Return internal statistics report from the memory allocator.",
                    "PURGE",
                    "    Attempt to purge dirty pages for reclamation by the allocator.",
                    "STATS",
                    "    Return information about the memory usage of the server.",
                    "USAGE <key> [SAMPLES <count>]",
                    "    Return memory in bytes used by <key> and its value.",
                ],
            )
        }
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}
