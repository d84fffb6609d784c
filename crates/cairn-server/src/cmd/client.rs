//! CLIENT ID | SETNAME | GETNAME | LIST | INFO | KILL | SETINFO |
//! NO-EVICT | NO-TOUCH | HELP

use std::sync::atomic::Ordering::Relaxed;

use super::{help, sub, sub_arity, unknown_subcommand, Ctx, Flow};
use crate::clients::ClientInfo;

/// Redis' rule: printable ASCII without spaces.
pub(crate) fn validate_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    Ok(())
}

fn cmd_name(c: &ClientInfo) -> &'static str {
    super::table()
        .get(c.last_cmd.load(Relaxed))
        .map_or("NULL", |s| s.name)
}

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let s = sub(argv);
    let n = argv.len();
    match s.as_str() {
        "ID" if n == 2 => ctx.out.int(ctx.conn.info.id as i64),
        "GETNAME" if n == 2 => {
            let name = ctx.conn.info.name.lock().clone();
            if name.is_empty() {
                ctx.out.null()
            } else {
                ctx.out.bulk(&name)
            }
        }
        "SETNAME" if n == 3 => match validate_name(argv[2]) {
            Ok(()) => {
                *ctx.conn.info.name.lock() = argv[2].to_vec();
                ctx.out.simple("OK")
            }
            Err(e) => ctx.out.error(e),
        },
        "SETINFO" if n == 4 => {
            let attr = argv[2].to_ascii_uppercase();
            let v = String::from_utf8_lossy(argv[3]).into_owned();
            if v.contains(|c: char| !c.is_ascii_graphic()) {
                ctx.out.error(&format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(argv[2])
                ));
                return Flow::Continue;
            }
            let mut lib = ctx.conn.info.lib.lock();
            match attr.as_slice() {
                b"LIB-NAME" => lib.0 = v,
                b"LIB-VER" => lib.1 = v,
                _ => {
                    drop(lib);
                    ctx.out.error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(argv[2])
                    ));
                    return Flow::Continue;
                }
            }
            drop(lib);
            ctx.out.simple("OK")
        }
        "INFO" if n == 2 => {
            let line = ctx.conn.info.describe(cmd_name(&ctx.conn.info));
            ctx.out.verbatim("txt", format!("{line}\n").as_bytes())
        }
        "LIST" => return list(ctx, argv),
        "KILL" if n >= 3 => return kill(ctx, argv),
        "NO-EVICT" | "NO-TOUCH" if n == 3 => {
            if argv[2].eq_ignore_ascii_case(b"on") || argv[2].eq_ignore_ascii_case(b"off") {
                ctx.out.simple("OK")
            } else {
                ctx.out.error(cairn_engine::cmd::SYNTAX)
            }
        }
        "HELP" if n == 2 => {
            return help(
                ctx,
                &[
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "INFO",
                    "    Return information about the current client connection.",
                    "KILL <ip:port>",
                    "    Kill connection made from <ip:port>.",
                    "KILL <option> <value> [<option> <value> [...]]",
                    "    Kill connections. Options are: ID, ADDR, LADDR, USER, SKIPME.",
                    "LIST [TYPE normal] [ID <id> [<id> ...]]",
                    "    Return information about client connections.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                    "SETINFO <LIB-NAME|LIB-VER> <value>",
                    "    Set client library name or version.",
                ],
            )
        }
        "ID" | "GETNAME" | "SETNAME" | "SETINFO" | "INFO" | "KILL" | "NO-EVICT" | "NO-TOUCH"
        | "HELP" => return sub_arity(ctx, argv),
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}

fn list(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < argv.len() {
        let opt = argv[i].to_ascii_uppercase();
        if opt == b"TYPE" && i + 1 < argv.len() {
            let t = argv[i + 1].to_ascii_lowercase();
            if !matches!(t.as_slice(), b"normal" | b"master" | b"replica" | b"pubsub") {
                ctx.out.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(argv[i + 1])
                ));
                return Flow::Continue;
            }
            if t != b"normal" {
                ids = Some(Vec::new());
            }
            i += 2;
        } else if opt == b"ID" && i + 1 < argv.len() {
            let mut v = Vec::new();
            for a in &argv[i + 1..] {
                match cairn_engine::num::parse_i64(a) {
                    Some(id) if id > 0 => v.push(id as u64),
                    _ => {
                        ctx.out.error("ERR Invalid client ID");
                        return Flow::Continue;
                    }
                }
            }
            ids = Some(v);
            i = argv.len();
        } else {
            ctx.out.error(cairn_engine::cmd::SYNTAX);
            return Flow::Continue;
        }
    }
    let mut text = String::new();
    for c in ctx.shared.clients.snapshot() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&c.describe(cmd_name(&c)));
        text.push('\n');
    }
    ctx.out.verbatim("txt", text.as_bytes());
    Flow::Continue
}

/// One CLIENT KILL filter; a client is killed when all match.
type Filter = Box<dyn Fn(&ClientInfo) -> bool>;

fn kill(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let clients = ctx.shared.clients.snapshot();
    // Old form: CLIENT KILL ip:port -> +OK or an error.
    if argv.len() == 3 {
        let addr = String::from_utf8_lossy(argv[2]);
        match clients.iter().find(|c| c.addr.to_string() == addr) {
            Some(c) => {
                c.request_kill();
                ctx.out.simple("OK")
            }
            None => ctx.out.error("ERR No such client"),
        }
        return Flow::Continue;
    }
    let mut filters: Vec<Filter> = Vec::new();
    let mut skipme = true;
    let me = ctx.conn.info.id;
    let mut i = 2;
    while i + 1 < argv.len() {
        let opt = argv[i].to_ascii_uppercase();
        let v = String::from_utf8_lossy(argv[i + 1]).into_owned();
        match opt.as_slice() {
            b"ID" => match v.parse::<u64>() {
                Ok(id) => filters.push(Box::new(move |c| c.id == id)),
                Err(_) => {
                    ctx.out.error("ERR client-id should be greater than 0");
                    return Flow::Continue;
                }
            },
            b"ADDR" => filters.push(Box::new(move |c| c.addr.to_string() == v)),
            b"LADDR" => filters.push(Box::new(move |c| c.laddr.to_string() == v)),
            b"USER" => filters.push(Box::new(move |c| *c.user.lock() == v)),
            b"TYPE" => filters.push(Box::new(move |_| v.eq_ignore_ascii_case("normal"))),
            b"SKIPME" => {
                skipme = match v.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => {
                        ctx.out.error(cairn_engine::cmd::SYNTAX);
                        return Flow::Continue;
                    }
                }
            }
            _ => {
                ctx.out.error(cairn_engine::cmd::SYNTAX);
                return Flow::Continue;
            }
        }
        i += 2;
    }
    if i != argv.len() {
        ctx.out.error(cairn_engine::cmd::SYNTAX);
        return Flow::Continue;
    }
    let mut killed = 0;
    let mut kill_me = false;
    for c in &clients {
        if filters.iter().all(|f| f(c)) {
            if c.id == me {
                if skipme {
                    continue;
                }
                kill_me = true;
            }
            c.request_kill();
            killed += 1;
        }
    }
    ctx.out.int(killed);
    if kill_me {
        Flow::Close
    } else {
        Flow::Continue
    }
}
