//! HELLO [protover [AUTH username password] [SETNAME clientname]]

use std::sync::atomic::Ordering::Relaxed;

use cairn_proto::Protocol;

use super::{client, Ctx, Flow};

const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let mut proto = ctx.conn.proto;
    if let Some(v) = argv.get(1) {
        proto = match cairn_engine::num::parse_i64(v) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => {
                ctx.out.error("NOPROTO unsupported protocol version");
                return Flow::Continue;
            }
            None => {
                ctx.out
                    .error("ERR Protocol version is not an integer or out of range");
                return Flow::Continue;
            }
        };
    }
    let mut name = None;
    let mut login = None;
    let mut i = 2;
    while i < argv.len() {
        let opt = argv[i].to_ascii_uppercase();
        if opt == b"AUTH" && i + 2 < argv.len() {
            login = Some((argv[i + 1], argv[i + 2]));
            i += 3;
        } else if opt == b"SETNAME" && i + 1 < argv.len() {
            if let Err(e) = client::validate_name(argv[i + 1]) {
                ctx.out.error(e);
                return Flow::Continue;
            }
            name = Some(argv[i + 1]);
            i += 2;
        } else {
            ctx.out.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(argv[i])
            ));
            return Flow::Continue;
        }
    }
    // As Redis: options parsed first, then AUTH, then the NOAUTH check.
    if let Some((user, pass)) = login {
        if let Err(flow) = super::auth::login(ctx, argv[0], user, pass) {
            return flow;
        }
    }
    if ctx.conn.auth.user.is_none() {
        ctx.out.error(NOAUTH_HELLO);
        return Flow::Continue;
    }
    if let Some(n) = name {
        *ctx.conn.info.name.lock() = n.to_vec();
    }
    ctx.conn.proto = proto;
    ctx.conn
        .info
        .resp
        .store(if proto == Protocol::Resp3 { 3 } else { 2 }, Relaxed);
    ctx.out.proto = proto;
    let out = &mut ctx.out;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(crate::cmd::info::REDIS_VERSION.as_bytes());
    out.bulk(b"proto");
    out.int(if proto == Protocol::Resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(ctx.conn.info.id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
    Flow::Continue
}
