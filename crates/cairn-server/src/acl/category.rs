//! ACL categories (`+@read`, `-@dangerous`, …) and what each command does
//! to its keys (read, write, both, or only looks at them).
//!
//! Both are derived from the command table's flags and group, with a few
//! named exceptions, so a command added to the table gets Redis' usual
//! categories without touching this file: READONLY → @read, WRITE →
//! @write, FAST → @fast else @slow, ADMIN → @admin @dangerous, and the
//! group gives the data type (@string, @hash, @list, @set, @keyspace …).
//! `acl_categories_follow_redis` pins the result against Redis 7's table.

use crate::cmd::{table, Spec, ADMIN, FAST, READONLY, WRITE};

/// Redis 7.0's categories in its order (ACL CAT), then cairn's own.
pub(crate) const NAMES: [&str; 23] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "lock",
    "cluster",
];

/// The bit of category `name` (`NAMES` index).
pub(crate) fn bit(name: &str) -> Option<u32> {
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

fn b(name: &str) -> u32 {
    bit(name).unwrap_or(0)
}

/// The categories of one command, as a bit set over `NAMES`.
/// Whether command `idx` of the table is audited (docs/design/audit.md):
/// @admin, and FLUSHALL/FLUSHDB.
pub(crate) fn audited(idx: usize) -> bool {
    static TABLE: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| {
            table()
                .iter()
                .map(|s| of(s) & b("admin") != 0 || matches!(s.name, "flushall" | "flushdb"))
                .collect()
        })
        .get(idx)
        .copied()
        .unwrap_or(false)
}

pub(crate) fn of(spec: &Spec) -> u32 {
    let mut c = 0;
    if spec.flags & READONLY != 0 {
        c |= b("read");
    }
    if spec.flags & WRITE != 0 {
        c |= b("write");
    }
    c |= if spec.flags & FAST != 0 {
        b("fast")
    } else {
        b("slow")
    };
    if spec.flags & ADMIN != 0 {
        c |= b("admin") | b("dangerous");
    }
    c |= match spec.group {
        "string" => b("string"),
        "bitmap" => b("bitmap"),
        "hash" => b("hash"),
        "list" => b("list"),
        "set" => b("set"),
        "sorted_set" | "sortedset" | "zset" => b("sortedset"),
        "generic" => b("keyspace"),
        "connection" => b("connection"),
        "transactions" => b("transaction"),
        "lock" => b("lock"),
        "pubsub" => b("pubsub"),
        _ => 0,
    };
    c | match spec.name {
        "keys" | "info" => b("dangerous"),
        "dbsize" => b("keyspace"),
        "flushdb" | "flushall" => b("keyspace") | b("dangerous"),
        // Redis' READONLY/READWRITE/ASKING are connection commands.
        "readonly" | "readwrite" | "asking" => b("connection"),
        "cluster" => b("admin") | b("dangerous") | b("cluster"),
        "command" => b("connection"),
        // CLIENT KILL/LIST are admin in Redis and the container cannot be
        // split by subcommand here: the whole of CLIENT is admin, so
        // `+@connection` never grants CLIENT KILL.
        "client" => b("admin") | b("dangerous"),
        // A whole transaction as one command, or its WATCH versions:
        // cairn's internal form, checked command by command only when it
        // comes from MULTI/EXEC. Sent directly it needs an admin.
        "cairn.exec" | "cairn.versions" | "lock.forcerelease" => b("admin") | b("dangerous"),
        _ => 0,
    }
}

/// Whether the command reads its keys' data (Redis' ACCESS key flag),
/// writes them (INSERT/UPDATE/DELETE), both, or only looks at them
/// (EXISTS, TYPE, STRLEN: any pattern of the user covering the key will
/// do). `pos` is the key's argument position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum KeyUse {
    Read,
    Write,
    ReadWrite,
    Look,
}

pub(crate) fn key_use(spec: &Spec, argv: &[&[u8]], pos: usize) -> KeyUse {
    // Named as Redis 7.0's key specs have them (checked with ACL DRYRUN);
    // list, set and sorted-set names are here ahead of those types, so
    // their commands get Redis' rules when they join the table.
    match spec.name {
        "exists" | "touch" | "type" | "strlen" | "object" | "hlen" | "hexists" | "hstrlen"
        | "llen" | "scard" | "sismember" | "zcard" | "watch" | "cairn.versions" | "lock.info"
        | "sem.info" | "lock.fence" => KeyUse::Look,
        // Writes that also return what they remove or change.
        "getset" | "getdel" | "getex" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat"
        | "hincrby" | "hincrbyfloat" | "lpop" | "rpop" | "lmpop" | "blpop" | "brpop" | "blmpop"
        | "spop" | "zpopmin" | "zpopmax" | "bzpopmin" | "bzpopmax" | "zmpop" | "bzmpop"
        | "zincrby" | "setbit" => KeyUse::ReadWrite,
        "bitfield" if cairn_engine::cmd::bitfield::only_reads(argv) => KeyUse::Read,
        "bitfield" => KeyUse::ReadWrite,
        "rename" | "renamenx" | "lmove" | "blmove" | "rpoplpush" | "brpoplpush" | "smove"
            if pos == 1 =>
        {
            KeyUse::ReadWrite
        }
        "copy" if pos == 1 => KeyUse::Read,
        // STORE commands: the destination is written, the sources read.
        "sinterstore" | "sunionstore" | "sdiffstore" | "zunionstore" | "zinterstore"
        | "zdiffstore" | "zrangestore"
            if pos > 1 =>
        {
            KeyUse::Read
        }
        // BITOP op dest src...: the sources are read.
        "bitop" if pos > 2 => KeyUse::Read,
        "set" if argv[3..].iter().any(|a| a.eq_ignore_ascii_case(b"GET")) => KeyUse::ReadWrite,
        _ if spec.flags & WRITE != 0 => KeyUse::Write,
        _ if spec.flags & READONLY != 0 => KeyUse::Read,
        _ => KeyUse::Look,
    }
}

/// Every command's categories, by table index (computed once).
pub(crate) fn all() -> &'static [u32] {
    static CATS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    CATS.get_or_init(|| table().iter().map(of).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::lookup;

    fn names(idx: usize) -> Vec<&'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| all()[idx] & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// Redis 7.0's COMMAND INFO categories for commands both have
    /// (containers excepted: Redis categorises their subcommands).
    #[test]
    fn acl_categories_follow_redis() {
        let redis: &[(&str, &[&str])] = &[
            ("get", &["read", "string", "fast"]),
            ("set", &["write", "string", "slow"]),
            ("getrange", &["read", "string", "slow"]),
            ("hset", &["write", "hash", "fast"]),
            ("setbit", &["write", "bitmap", "slow"]),
            ("getbit", &["read", "bitmap", "fast"]),
            ("bitcount", &["read", "bitmap", "slow"]),
            ("bitop", &["write", "bitmap", "slow"]),
            ("bitfield", &["write", "bitmap", "slow"]),
            ("bitfield_ro", &["read", "bitmap", "fast"]),
            ("lcs", &["read", "string", "slow"]),
            ("hgetall", &["read", "hash", "slow"]),
            ("del", &["keyspace", "write", "slow"]),
            ("exists", &["keyspace", "read", "fast"]),
            ("keys", &["keyspace", "read", "slow", "dangerous"]),
            ("dbsize", &["keyspace", "read", "fast"]),
            ("flushall", &["keyspace", "write", "slow", "dangerous"]),
            ("multi", &["fast", "transaction"]),
            ("exec", &["slow", "transaction"]),
            ("ping", &["fast", "connection"]),
            ("readonly", &["fast", "connection"]),
            ("info", &["slow", "dangerous"]),
            ("time", &["fast"]),
            ("config", &["admin", "slow", "dangerous"]),
            ("shutdown", &["admin", "slow", "dangerous"]),
        ];
        for (name, want) in redis {
            let idx = lookup(name.as_bytes()).expect("command exists");
            let mut got = names(idx);
            let mut want = want.to_vec();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
        let lock = lookup(b"lock.acquire").expect("exists");
        assert!(names(lock).contains(&"lock"));
        let cluster = lookup(b"cluster").expect("exists");
        assert!(names(cluster).contains(&"cluster"));
    }

    #[test]
    fn every_command_is_fast_or_slow() {
        let (fast, slow) = (b("fast"), b("slow"));
        for (i, c) in all().iter().enumerate() {
            assert!((c & fast != 0) ^ (c & slow != 0), "{}", table()[i].name);
        }
    }
}
