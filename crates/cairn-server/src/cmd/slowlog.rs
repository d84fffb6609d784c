//! SLOWLOG GET [count] | LEN | RESET | HELP

use super::{help, sub, sub_arity, unknown_subcommand, Ctx, Flow};

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match sub(argv).as_str() {
        "GET" if argv.len() <= 3 => {
            let count = match argv.get(2).map(|a| cairn_engine::num::parse_i64(a)) {
                None => 10,
                Some(Some(-1)) => usize::MAX,
                Some(Some(n)) if n >= 0 => n as usize,
                Some(_) => {
                    ctx.out
                        .error("ERR count should be greater than or equal to -1");
                    return Flow::Continue;
                }
            };
            let log = ctx.shared.slowlog.lock();
            let n = log.entries.len().min(count);
            ctx.out.array(n);
            for e in log.entries.iter().take(n) {
                ctx.out.array(6);
                ctx.out.int(e.id as i64);
                ctx.out.int(e.unix_s as i64);
                ctx.out.int(e.duration_us as i64);
                ctx.out.array(e.args.len());
                for a in &e.args {
                    ctx.out.bulk(a);
                }
                ctx.out.bulk(e.addr.as_bytes());
                ctx.out.bulk(&e.name);
            }
        }
        "LEN" if argv.len() == 2 => {
            let n = ctx.shared.slowlog.lock().entries.len();
            ctx.out.int(n as i64)
        }
        "RESET" if argv.len() == 2 => {
            ctx.shared.slowlog.lock().entries.clear();
            ctx.out.simple("OK")
        }
        "HELP" if argv.len() == 2 => {
            return help(
                ctx,
                &[
                    "GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "LEN",
                    "    Return the length of the slowlog.",
                    "RESET",
                    "    Reset the slowlog.",
                ],
            )
        }
        "GET" | "LEN" | "RESET" | "HELP" => return sub_arity(ctx, argv),
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}
