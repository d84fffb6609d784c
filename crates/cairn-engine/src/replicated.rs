//! Applying a command that arrives as a replicated log entry: the
//! argument list alone, by name. The leader checked arity and syntax
//! before proposing, so every replica normally sees valid commands; the
//! arity is checked again here so that no entry, however it was made,
//! can crash a replica. Errors are replies, identical on every replica.

use crate::cmd::{self, *};
use crate::reply::Reply;

/// Applies `argv` (name first) to `db` at the leader's time `now_ms`.
pub fn apply_argv(db: &mut impl Db, argv: &[&[u8]], now_ms: u64, out: &mut impl Reply) {
    let Some(name) = argv.first() else {
        out.error("ERR empty command");
        return;
    };
    let mut lower = [0u8; 16];
    if name.len() > lower.len() {
        out.error("ERR unknown command");
        return;
    }
    for (d, s) in lower.iter_mut().zip(name.iter()) {
        *d = s.to_ascii_lowercase();
    }
    let name = &lower[..name.len()];
    // (minimum argc, exact?) as in the server's command table.
    macro_rules! run {
        ($min:expr, $exact:expr, $t:ty) => {{
            let n = argv.len();
            if n < $min || ($exact && n != $min) {
                out.error(&cmd::wrong_arity(&String::from_utf8_lossy(argv[0])).0);
                return;
            }
            match <$t>::parse(argv) {
                Ok(c) => c.apply(db, now_ms, out),
                Err(e) => out.error(e.msg()),
            }
        }};
    }
    match name {
        b"set" => run!(3, false, set::Set),
        b"setnx" => run!(3, true, setnx::SetNx),
        b"setex" => run!(4, true, setex::SetEx<false>),
        b"psetex" => run!(4, true, setex::PSetEx),
        b"getset" => run!(3, true, getset::GetSet),
        b"getdel" => run!(2, true, getdel::GetDel),
        b"getex" => run!(2, false, getex::GetEx),
        b"mset" => run!(3, false, mset::MSet<false>),
        b"msetnx" => run!(3, false, mset::MSetNx),
        b"append" => run!(3, true, append::Append),
        b"setrange" => run!(4, true, setrange::SetRange),
        b"incr" => run!(2, true, incr::Incr),
        b"decr" => run!(2, true, incr::Decr),
        b"incrby" => run!(3, true, incr::IncrBy<1, true>),
        b"decrby" => run!(3, true, incr::DecrBy),
        b"incrbyfloat" => run!(3, true, incrbyfloat::IncrByFloat),
        b"del" | b"unlink" => run!(2, false, del::Del),
        b"expire" => run!(3, false, expire::Expire<0>),
        b"pexpire" => run!(3, false, expire::PExpire),
        b"expireat" => run!(3, false, expire::ExpireAt),
        b"pexpireat" => run!(3, false, expire::PExpireAt),
        b"persist" => run!(2, true, persist::Persist),
        b"rename" => run!(3, true, rename::Rename<false>),
        b"renamenx" => run!(3, true, rename::RenameNx),
        b"copy" => run!(3, false, copy::Copy),
        b"cairn.expired" => run!(1, false, expired::Expired),
        b"cairn.evict" => run!(1, false, evict::Evict),
        b"flushall" | b"flushdb" => {
            db.shard(b"").clear();
            out.ok();
        }
        _ => out.error(&format!(
            "ERR unknown command '{}'",
            String::from_utf8_lossy(argv[0])
        )),
    }
}

/// Whether a command name (any case) changes state when applied, i.e.
/// must go through the log in cluster mode.
pub fn is_replicated(name: &[u8]) -> bool {
    const NAMES: &[&str] = &[
        "set",
        "setnx",
        "setex",
        "psetex",
        "getset",
        "getdel",
        "getex",
        "mset",
        "msetnx",
        "append",
        "setrange",
        "incr",
        "decr",
        "incrby",
        "decrby",
        "incrbyfloat",
        "del",
        "unlink",
        "expire",
        "pexpire",
        "expireat",
        "pexpireat",
        "persist",
        "rename",
        "renamenx",
        "copy",
        "flushall",
        "flushdb",
    ];
    NAMES
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameReply, Keyspace};
    use cairn_proto::Frame;

    fn run(ks: &mut Keyspace, argv: &[&[u8]], now: u64) -> Frame {
        let mut out = FrameReply::new();
        apply_argv(ks, argv, now, &mut out);
        out.take().pop().unwrap()
    }

    #[test]
    fn applies_by_name_and_rejects_bad_entries_without_panicking() {
        let mut ks = Keyspace::new(7);
        assert_eq!(
            run(&mut ks, &[b"SET", b"k", b"1"], 1),
            Frame::Simple(b"OK".to_vec())
        );
        assert_eq!(
            run(&mut ks, &[b"incrby", b"k", b"41"], 2),
            Frame::Integer(42)
        );
        assert!(matches!(run(&mut ks, &[b"SET", b"k"], 3), Frame::Error(_)));
        assert!(matches!(run(&mut ks, &[b"INCR"], 3), Frame::Error(_)));
        assert!(matches!(run(&mut ks, &[], 3), Frame::Error(_)));
        assert!(matches!(run(&mut ks, &[b"GETX", b"k"], 3), Frame::Error(_)));
        assert!(matches!(
            run(&mut ks, &[b"a-very-long-command-name"], 3),
            Frame::Error(_)
        ));
        assert_eq!(
            run(&mut ks, &[b"flushall"], 4),
            Frame::Simple(b"OK".to_vec())
        );
        assert!(ks.is_empty());
    }

    #[test]
    fn every_replicated_name_is_applied() {
        for name in [
            "set",
            "setnx",
            "setex",
            "psetex",
            "getset",
            "getdel",
            "getex",
            "mset",
            "msetnx",
            "append",
            "setrange",
            "incr",
            "decr",
            "incrby",
            "decrby",
            "incrbyfloat",
            "del",
            "unlink",
            "expire",
            "pexpire",
            "expireat",
            "pexpireat",
            "persist",
            "rename",
            "renamenx",
            "copy",
            "flushall",
            "flushdb",
        ] {
            assert!(is_replicated(name.as_bytes()));
            let mut ks = Keyspace::new(1);
            let r = run(&mut ks, &[name.as_bytes()], 1);
            if name.starts_with("flush") {
                continue;
            }
            // Too few arguments: an arity error, not "unknown command".
            match r {
                Frame::Error(e) => assert!(
                    String::from_utf8_lossy(&e).contains("wrong number"),
                    "{name}: {}",
                    String::from_utf8_lossy(&e)
                ),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
