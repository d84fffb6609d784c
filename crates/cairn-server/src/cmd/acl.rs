//! ACL SETUSER | GETUSER | DELUSER | LIST | USERS | WHOAMI | CAT | LOG |
//! DRYRUN | SAVE | LOAD | HELP (crate::acl, docs/design/acl.md).
//!
//! Cluster mode: users are cluster-wide. SETUSER and DELUSER are checked
//! here, then the users' descriptions are proposed to the meta group;
//! every node installs them as they commit (cluster/jobs.rs). ACL LOAD
//! answers an error there (it would replace one node's users only).

use super::{help, lookup, sub, sub_arity, table, unknown_subcommand, Ctx, Flow};
use crate::acl::{self, category};
use crate::cluster::deferred::{Deferred, Then};
use crate::cluster::AdminOp;

const NO_ACLFILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";
const CLUSTER_LOAD: &str = "ERR ACL LOAD is not supported in cluster mode: users are cluster-wide, set them with ACL SETUSER (docs/design/acl.md)";
/// A user's description travels as one meta setting: at most this long.
const CLUSTER_DESCRIPTION_MAX: usize = cairn_cluster::meta::MAX_SETTING_LEN;

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let s = sub(argv);
    let n = argv.len();
    let arity_ok = match s.as_str() {
        "SETUSER" => n >= 3,
        "GETUSER" => n == 3,
        "DELUSER" => n >= 3,
        "LIST" | "USERS" | "WHOAMI" | "SAVE" | "LOAD" | "HELP" => n == 2,
        "CAT" => n <= 3,
        "LOG" => n <= 3,
        "DRYRUN" => n >= 4,
        "GENPASS" => n <= 3,
        _ => return unknown_subcommand(ctx, argv),
    };
    if !arity_ok {
        return sub_arity(ctx, argv);
    }
    if ctx.shared.cluster.get().is_some() {
        match s.as_str() {
            "SETUSER" => return cluster_setuser(ctx, argv),
            "DELUSER" => return cluster_deluser(ctx, argv),
            "LOAD" => {
                ctx.out.error(CLUSTER_LOAD);
                return Flow::Continue;
            }
            _ => {}
        }
    }
    match s.as_str() {
        "SETUSER" => match ctx.shared.acl.setuser(argv[2], &argv[3..]) {
            Ok(()) => ctx.out.simple("OK"),
            Err(e) => ctx.out.error(&e),
        },
        "GETUSER" => getuser(ctx, argv[2]),
        "DELUSER" => match ctx.shared.acl.deluser(&argv[2..]) {
            Ok(n) => ctx.out.int(n as i64),
            Err(e) => ctx.out.error(&e),
        },
        "LIST" => {
            let lines = ctx.shared.acl.list();
            ctx.out.array(lines.len());
            for l in lines {
                ctx.out.bulk(l.as_bytes());
            }
        }
        "USERS" => {
            let users = ctx.shared.acl.users();
            ctx.out.array(users.len());
            for u in users {
                ctx.out.bulk(&u.name);
            }
        }
        "WHOAMI" => {
            let name = ctx.conn.auth.name();
            ctx.out.bulk(name.as_bytes());
        }
        "CAT" => cat(ctx, argv.get(2).copied()),
        "LOG" => log(ctx, argv.get(2).copied()),
        "DRYRUN" => dryrun(ctx, argv),
        "SAVE" => save(ctx),
        "GENPASS" => genpass(ctx, argv.get(2).copied()),
        "LOAD" => load(ctx),
        _ => {
            return help(
                ctx,
                &[
                    "CAT [<category>]",
                    "DELUSER <username> [<username> ...]",
                    "DRYRUN <username> <command> [<arg> ...]",
                    "GETUSER <username>",
                    "LIST",
                    "USERS",
                    "SETUSER <username> <attribute> [<attribute> ...]",
                    "LOAD",
                    "SAVE",
                    "WHOAMI",
                    "LOG [<count> | RESET]",
                    "GENPASS [<bits>]",
                ],
            )
        }
    }
    Flow::Continue
}

fn getuser(ctx: &mut Ctx<'_>, name: &[u8]) {
    let Some(u) = ctx.shared.acl.get(name) else {
        return ctx.out.null();
    };
    let out = &mut ctx.out;
    out.map(6);
    out.bulk(b"flags");
    let flags = u.flags();
    out.array(flags.len());
    for f in flags {
        out.bulk(f.as_bytes());
    }
    out.bulk(b"passwords");
    out.array(u.passwords.len());
    for p in &u.passwords {
        out.bulk(acl::sha256::hex(p).as_bytes());
    }
    out.bulk(b"commands");
    out.bulk(u.describe_commands().as_bytes());
    out.bulk(b"keys");
    out.bulk(u.describe_keys().as_bytes());
    out.bulk(b"channels");
    out.bulk(u.describe_channels().as_bytes());
    out.bulk(b"selectors");
    out.array(0);
}

fn cat(ctx: &mut Ctx<'_>, name: Option<&[u8]>) {
    let Some(name) = name else {
        ctx.out.array(category::NAMES.len());
        for n in category::NAMES {
            ctx.out.bulk(n.as_bytes());
        }
        return;
    };
    let name = String::from_utf8_lossy(name);
    let Some(bit) = category::bit(&name) else {
        return ctx.out.error(&format!("ERR Unknown category '{name}'"));
    };
    let cats = category::all();
    let names: Vec<&str> = table()
        .iter()
        .enumerate()
        .filter(|(i, _)| cats[*i] & bit != 0)
        .map(|(_, s)| s.name)
        .collect();
    ctx.out.array(names.len());
    for n in names {
        ctx.out.bulk(n.as_bytes());
    }
}

fn log(ctx: &mut Ctx<'_>, arg: Option<&[u8]>) {
    let mut count = usize::MAX;
    if let Some(a) = arg {
        if a.eq_ignore_ascii_case(b"RESET") {
            ctx.shared.acl.log.lock().reset();
            return ctx.out.simple("OK");
        }
        match cairn_engine::num::parse_i64(a) {
            // As Redis: a negative count lists nothing.
            Some(n) => count = n.max(0) as usize,
            None => return ctx.out.error("ERR value is not an integer or out of range"),
        }
    }
    let now_ms = crate::unix_ms();
    let entries: Vec<acl::LogEntry> = ctx
        .shared
        .acl
        .log
        .lock()
        .entries()
        .take(count)
        .cloned()
        .collect();
    let out = &mut ctx.out;
    out.array(entries.len());
    for e in entries {
        out.map(7);
        out.bulk(b"count");
        out.int(e.count as i64);
        out.bulk(b"reason");
        out.bulk(e.reason.as_bytes());
        out.bulk(b"context");
        out.bulk(e.context.as_bytes());
        out.bulk(b"object");
        out.bulk(e.object.as_bytes());
        out.bulk(b"username");
        out.bulk(e.username.as_bytes());
        out.bulk(b"age-seconds");
        out.double(now_ms.saturating_sub(e.updated_ms) as f64 / 1000.0);
        out.bulk(b"client-info");
        out.bulk(e.client_info.as_bytes());
    }
}

fn dryrun(ctx: &mut Ctx<'_>, argv: &[&[u8]]) {
    let Some(user) = ctx.shared.acl.get(argv[2]) else {
        let name = String::from_utf8_lossy(argv[2]);
        return ctx.out.error(&format!("ERR User '{name}' not found"));
    };
    let cmd = &argv[3..];
    let Some(idx) = lookup(cmd[0]) else {
        let name = String::from_utf8_lossy(cmd[0]);
        return ctx.out.error(&format!("ERR Command '{name}' not found"));
    };
    let spec = &table()[idx];
    if !super::arity_ok(spec.arity, cmd.len() as i32) {
        return ctx.out.error(&cairn_engine::cmd::wrong_arity(spec.name).0);
    }
    match acl::user_may(&user, idx, cmd) {
        Ok(()) => ctx.out.simple("OK"),
        Err(acl::Denied::Key(pos)) => ctx.out.bulk(
            format!(
                "This user has no permissions to access the '{}' key",
                String::from_utf8_lossy(cmd[pos])
            )
            .as_bytes(),
        ),
        Err(_) => ctx.out.bulk(
            format!(
                "This user has no permissions to run the '{}' command",
                acl::full_name(spec, cmd)
            )
            .as_bytes(),
        ),
    }
}

/// ACL GENPASS [bits]: random hex from the OS (Redis: 256 bits by
/// default, at most 4096).
fn genpass(ctx: &mut Ctx<'_>, bits: Option<&[u8]>) {
    let bits = match bits.map(cairn_engine::num::parse_i64) {
        None => 256,
        Some(Some(b @ 1..=4096)) => b as usize,
        Some(Some(_)) => {
            return ctx
                .out
                .error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096")
        }
        Some(None) => return ctx.out.error("ERR value is not an integer or out of range"),
    };
    let chars = bits.div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw));
    if let Err(e) = read {
        tracing::warn!("ACL GENPASS: /dev/urandom: {e}");
        return ctx.out.error("ERR could not read random bytes");
    }
    let mut hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(chars);
    ctx.out.bulk(hex.as_bytes());
}

fn save(ctx: &mut Ctx<'_>) {
    let path = &ctx.shared.config.aclfile;
    if path.is_empty() {
        return ctx.out.error(NO_ACLFILE);
    }
    let mut text = ctx.shared.acl.list().join("\n");
    text.push('\n');
    // Written whole to a temporary file, then renamed over the old one:
    // a crash leaves either file, never half of one.
    let tmp = format!("{path}.tmp-{}", std::process::id());
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    match written {
        Ok(()) => ctx.out.simple("OK"),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!("ACL SAVE to {path}: {e}");
            ctx.out.error("ERR There was an error trying to save the ACLs. Please check the server logs for more information")
        }
    }
}

fn load(ctx: &mut Ctx<'_>) {
    let path = &ctx.shared.config.aclfile;
    if path.is_empty() {
        return ctx.out.error(NO_ACLFILE);
    }
    let loaded = std::fs::read_to_string(path)
        .map_err(|e| format!("Error loading ACLs, opening file '{path}': {e}"))
        .and_then(|text| ctx.shared.acl.load(&text, path));
    match loaded {
        Ok(()) => ctx.out.simple("OK"),
        Err(e) => ctx.out.error(&format!("ERR {e}")),
    }
}

/// Proposes users' descriptions to the meta group (answered once
/// committed; every node installs them as they apply).
fn propose(ctx: &mut Ctx<'_>, sets: Vec<(String, String)>, count: Option<i64>) -> Flow {
    let Some(idx) = lookup(b"acl") else {
        ctx.out.error("ERR acl missing");
        return Flow::Continue;
    };
    ctx.conn.deferred.push(Deferred {
        idx,
        argv: Vec::new(),
        group: None,
        write: true,
        denyoom: false,
        slot: 0,
        admin: Some(AdminOp::Users(sets, count)),
        lock_wait: None,
        list_wait: None,
        then: Then::Reply,
    });
    Flow::Defer
}

fn cluster_setuser(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let user = match ctx.shared.acl.preview(argv[2], &argv[3..]) {
        Ok(u) => u,
        Err(e) => {
            ctx.out.error(&e);
            return Flow::Continue;
        }
    };
    let description = user.describe();
    if description.len() > CLUSTER_DESCRIPTION_MAX {
        ctx.out.error(&format!(
            "ERR user too large for cluster mode (its rules at most {CLUSTER_DESCRIPTION_MAX} bytes)"
        ));
        return Flow::Continue;
    }
    propose(ctx, vec![(acl::meta_key(argv[2]), description)], None)
}

fn cluster_deluser(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    if argv[2..].iter().any(|n| *n == b"default") {
        ctx.out.error("ERR The 'default' user cannot be removed");
        return Flow::Continue;
    }
    let mut names: Vec<&[u8]> = argv[2..]
        .iter()
        .copied()
        .filter(|n| ctx.shared.acl.get(n).is_some())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        ctx.out.int(0);
        return Flow::Continue;
    }
    // An empty description deletes the user on every node.
    let sets = names
        .iter()
        .map(|n| (acl::meta_key(n), String::new()))
        .collect();
    propose(ctx, sets, Some(names.len() as i64))
}
