//! COMMAND [COUNT | LIST | INFO name... | DOCS name... | GETKEYS cmd...]

use super::{help, sub, table, unknown_subcommand, Ctx, Flow, Spec, FLAG_NAMES};

fn info_entry(ctx: &mut Ctx<'_>, s: &Spec) {
    let cats = crate::acl::category::of(s);
    let out = &mut ctx.out;
    out.array(10);
    out.bulk(s.name.as_bytes());
    out.int(s.arity as i64);
    let flags: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(f, _)| s.flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(flags.len());
    for f in flags {
        out.simple(f);
    }
    // Movable keys (NUMKEYS: SINTERCARD, and LMPOP on the lists branch)
    // show as Redis' `movablekeys` with no legacy range (0 0 0).
    // With a destination first (ZUNIONSTORE ...) Redis' legacy range is
    // that key alone (1 1 1).
    let movable = s.flags & super::NUMKEYS != 0;
    let dest = s.flags & super::DEST != 0;
    for n in [s.first_key, s.last_key, s.step] {
        out.int(match (movable, dest) {
            (true, true) => 1,
            (true, false) => 0,
            _ => i64::from(n),
        });
    }
    // ACL categories, as Redis (in ACL CAT's order, which is Redis' own
    // for most commands: @read @string @fast).
    let names: Vec<&str> = crate::acl::category::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| cats & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(names.len());
    for n in names {
        out.simple(&format!("@{n}"));
    }
    out.array(0); // tips
    out.array(0); // key specs
    out.array(0); // subcommands
}

fn docs_entry(ctx: &mut Ctx<'_>, s: &Spec) {
    let out = &mut ctx.out;
    out.bulk(s.name.as_bytes());
    out.map(3);
    out.bulk(b"summary");
    out.bulk(s.summary.as_bytes());
    out.bulk(b"since");
    out.bulk(s.since.as_bytes());
    out.bulk(b"group");
    out.bulk(s.group.as_bytes());
}

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    if argv.len() == 1 {
        ctx.out.array(table().len());
        for s in table() {
            info_entry(ctx, s);
        }
        return Flow::Continue;
    }
    match sub(argv).as_str() {
        "COUNT" => ctx.out.int(table().len() as i64),
        "LIST" => {
            ctx.out.array(table().len());
            for s in table() {
                ctx.out.bulk(s.name.as_bytes());
            }
        }
        "INFO" => {
            let names = &argv[2..];
            if names.is_empty() {
                ctx.out.array(table().len());
                for s in table() {
                    info_entry(ctx, s);
                }
            } else {
                ctx.out.array(names.len());
                for n in names {
                    match super::lookup(n) {
                        Some(i) => info_entry(ctx, &table()[i]),
                        None => ctx.out.null_array(),
                    }
                }
            }
        }
        "DOCS" => {
            let found: Vec<&Spec> = if argv.len() == 2 {
                table().iter().collect()
            } else {
                argv[2..]
                    .iter()
                    .filter_map(|n| super::lookup(n))
                    .map(|i| &table()[i])
                    .collect()
            };
            ctx.out.map(found.len());
            for s in found {
                docs_entry(ctx, s);
            }
        }
        "GETKEYS" if argv.len() >= 3 => {
            let call = &argv[2..];
            let Some(i) = super::lookup(call[0]) else {
                ctx.out.error("ERR Invalid command specified");
                return Flow::Continue;
            };
            let s = &table()[i];
            let argc = call.len() as i32;
            if (s.arity > 0 && argc != s.arity) || argc < -s.arity {
                ctx.out
                    .error("ERR Invalid number of arguments specified for command");
                return Flow::Continue;
            }
            let keys: Vec<usize> = s.keys_of(call).collect();
            if keys.is_empty() {
                ctx.out.error("ERR The command has no key arguments");
                return Flow::Continue;
            }
            ctx.out.array(keys.len());
            for k in keys {
                ctx.out.bulk(call[k]);
            }
        }
        "HELP" => {
            return help(
                ctx,
                &[
                    "(no subcommand)",
                    "    Return details about all commands.",
                    "COUNT",
                    "    Return the total number of commands in this server.",
                    "LIST",
                    "    Return a list of all commands in this server.",
                    "INFO [<command-name> ...]",
                    "    Return details about multiple commands.",
                    "DOCS [<command-name> ...]",
                    "    Return documentation details about multiple commands.",
                    "GETKEYS <full-command>",
                    "    Return the keys from a full command.",
                ],
            )
        }
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}
