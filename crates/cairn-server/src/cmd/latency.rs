//! LATENCY LATEST | HISTORY event | RESET [event ...] | DOCTOR | HELP
//!
//! cairn tracks one event, "command": commands slower than
//! latency-monitor-threshold milliseconds (0 = off, the default).

use super::{help, sub, unknown_subcommand, Ctx, Flow};

const EVENT: &str = "command";

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match sub(argv).as_str() {
        "LATEST" => {
            let l = ctx.shared.latency.lock();
            match l.history.back() {
                None => ctx.out.array(0),
                Some(&(t, ms)) => {
                    ctx.out.array(1);
                    ctx.out.array(4);
                    ctx.out.bulk(EVENT.as_bytes());
                    ctx.out.int(t as i64);
                    ctx.out.int(ms as i64);
                    ctx.out.int(l.max_ms as i64);
                }
            }
        }
        "HISTORY" if argv.len() == 3 => {
            let l = ctx.shared.latency.lock();
            if argv[2] != EVENT.as_bytes() {
                ctx.out.array(0);
            } else {
                ctx.out.array(l.history.len());
                for &(t, ms) in &l.history {
                    ctx.out.array(2);
                    ctx.out.int(t as i64);
                    ctx.out.int(ms as i64);
                }
            }
        }
        "RESET" => {
            let mut l = ctx.shared.latency.lock();
            let had = !l.history.is_empty();
            *l = Default::default();
            ctx.out.int(had as i64);
        }
        "DOCTOR" => {
            let l = ctx.shared.latency.lock();
            let text = if l.history.is_empty() {
                "Dave, no latency spike was observed during the lifetime of this cairn instance, not in the slightest bit.\n".to_string()
            } else {
                format!("command: {} latency spikes (max {} ms). Check SLOWLOG GET for the commands involved.\n", l.history.len(), l.max_ms)
            };
            ctx.out.verbatim("txt", text.as_bytes());
        }
        "HELP" => {
            return help(
                ctx,
                &[
                    "LATEST",
                    "    Return the latest latency samples for all events.",
                    "HISTORY <event>",
                    "    Return time-latency samples for the specified event.",
                    "RESET [<event> ...]",
                    "    Reset latency data of one or more events.",
                    "DOCTOR",
                    "    Return a human readable latency analysis report.",
                ],
            )
        }
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}
