//! The command table and dispatch.
//!
//! Keyspace commands live in `cairn_engine::cmd` (one file each); this
//! module adds the connection and server commands (one file each here),
//! and a table that gives every command its arity, flags and key
//! positions — the same metadata COMMAND INFO reports and the router uses
//! to find the shards a command touches.

use std::collections::HashMap;
use std::sync::OnceLock;

use cairn_engine::cmd::{self as ecmd, CmdError, Command};
use cairn_proto::ReplyWriter;

use crate::session::ConnState;
use crate::Shared;

mod acl;
mod auth;
mod client;
mod cluster;
mod command;
pub(crate) mod config;
mod dbsize;
mod echo;
mod flush;
mod hello;
mod info;
mod keys;
mod latency;
mod lock;
mod memory;
pub(crate) mod multi;
mod ping;
mod quit;
mod randomkey;
mod readonly;
mod reset;
mod scan;
mod select;
mod shutdown;
mod slowlog;
mod time;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Flow {
    Continue,
    Close,
    /// The command went to `conn.deferred` to wait for the cluster.
    Defer,
    /// Cluster commands are being gathered into a pipeline and this one
    /// cannot join it: nothing was done; run it after they have answered.
    Barrier,
}

/// What a handler sees: the server, its connection, the reply sink.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub conn: &'a mut ConnState,
    pub out: ReplyWriter<'a>,
    pub now_ms: u64,
    pub spec: &'static Spec,
}

pub(crate) type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> Flow;

pub(crate) const WRITE: u32 = 1;
pub(crate) const READONLY: u32 = 1 << 1;
pub(crate) const DENYOOM: u32 = 1 << 2;
pub(crate) const FAST: u32 = 1 << 3;
pub(crate) const ADMIN: u32 = 1 << 4;
pub(crate) const LOADING: u32 = 1 << 5;
pub(crate) const STALE: u32 = 1 << 6;
pub(crate) const NOSCRIPT: u32 = 1 << 7;
/// Not a Redis flag (COMMAND does not show it): the command's key list
/// may end with `FENCE lock token` (DEL), which are not keys.
pub(crate) const FENCE_TAIL: u32 = 1 << 8;
/// Not a Redis flag: the keys are `numkeys` arguments from `first_key`,
/// `numkeys` being the argument just before (LMPOP, BLMPOP); Redis
/// calls these movable keys.
pub(crate) const NUMKEYS: u32 = 1 << 9;
/// Not a Redis flag: with NUMKEYS, the first argument is a key too (the
/// destination of ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE), before
/// `numkeys`.
pub(crate) const DEST: u32 = 1 << 10;

pub(crate) const FLAG_NAMES: [(u32, &str); 9] = [
    (WRITE, "write"),
    (READONLY, "readonly"),
    (DENYOOM, "denyoom"),
    (ADMIN, "admin"),
    (NOSCRIPT, "noscript"),
    (LOADING, "loading"),
    (STALE, "stale"),
    (FAST, "fast"),
    (NUMKEYS, "movablekeys"),
];

pub(crate) struct Spec {
    pub name: &'static str,
    /// Redis arity: n = exactly n arguments (name included), -n = at least n.
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub summary: &'static str,
    pub since: &'static str,
    pub handler: Handler,
}

impl Spec {
    /// Argument positions of the keys in the call `argv`.
    pub fn keys_of(&self, argv: &[&[u8]]) -> impl Iterator<Item = usize> {
        let dest = (self.flags & DEST != 0 && argv.len() > 1).then_some(1);
        let mut argc = argv.len();
        if self.flags & FENCE_TAIL != 0
            && argc >= 5
            && argv[argc - 3].eq_ignore_ascii_case(b"FENCE")
        {
            argc -= 3;
        }
        if self.flags & NUMKEYS != 0 {
            // Keys end where numkeys says (a bad count names none: the
            // command's own parse answers the error).
            let first = self.first_key.max(1) as usize;
            let n = argv
                .get(first - 1)
                .and_then(|a| cairn_engine::num::parse_i64(a))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            argc = argc.min(first.saturating_add(n));
        }
        dest.into_iter().chain(self.key_positions(argc))
    }

    /// Argument positions of the keys in a call with `argc` arguments.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let last = if self.last_key < 0 {
            argc as i32 + self.last_key
        } else {
            self.last_key
        };
        let (first, step) = (self.first_key, self.step.max(1));
        (first..=last)
            .step_by(step as usize)
            .filter(move |&i| first > 0 && (i as usize) < argc)
            .map(|i| i as usize)
    }
}

/// Runs a keyspace command: lock the shard(s) its keys live in, apply.
fn engine<'a, C: Command<'a>>(
    ctx: &mut Ctx<'_>,
    argv: &'a [&'a [u8]],
    parsed: Result<C, CmdError>,
) -> Flow {
    let cmd = match parsed {
        Ok(c) => c,
        Err(e) => {
            ctx.out.error(e.msg());
            return Flow::Continue;
        }
    };
    let db = &ctx.shared.db;
    let spec = ctx.spec;
    if spec.first_key == spec.last_key && spec.first_key > 0 {
        let i = db.index_of(argv[spec.first_key as usize]);
        let mut g = db.lock(i);
        cmd.apply(&mut *g, ctx.now_ms, &mut ctx.out);
        if spec.group == "lock" {
            // A release handing the lock to a waiter: wake it.
            let grants = g.locks.take_grants();
            ctx.shared.lock_waits.notify(i, grants);
        }
        crate::listwait::wake_ready(ctx.shared, i, &mut g);
        db.refresh(i, &g);
    } else {
        let mut guard = db.lock_keys(spec.keys_of(argv).map(|i| argv[i]));
        cmd.apply(&mut guard, ctx.now_ms, &mut ctx.out);
        guard.each_locked(|i, ks| crate::listwait::wake_ready(ctx.shared, i, ks));
    }
    Flow::Continue
}

macro_rules! eng {
    ($t:ty) => {
        |ctx: &mut Ctx<'_>, argv: &[&[u8]]| engine(ctx, argv, <$t>::parse(argv))
    };
}

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $first:expr, $last:expr, $step:expr, $group:literal, $since:literal, $summary:literal, $h:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
            group: $group,
            since: $since,
            summary: $summary,
            handler: $h,
        }
    };
}

use ecmd::*;

static TABLE: &[Spec] = &[
    // strings
    spec!("get", 2, READONLY | FAST, 1, 1, 1, "string", "1.0.0", "Returns the string value of a key.", eng!(get::Get)),
    spec!("set", -3, WRITE | DENYOOM, 1, 1, 1, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", eng!(set::Set)),
    spec!("setnx", 3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist.", eng!(setnx::SetNx)),
    spec!("setex", 4, WRITE | DENYOOM, 1, 1, 1, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", eng!(setex::SetEx<false>)),
    spec!("psetex", 4, WRITE | DENYOOM, 1, 1, 1, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", eng!(setex::PSetEx)),
    spec!("getset", 3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value.", eng!(getset::GetSet)),
    spec!("getdel", 2, WRITE | FAST, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after deleting the key.", eng!(getdel::GetDel)),
    spec!("getex", -2, WRITE | FAST, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after setting its expiration time.", eng!(getex::GetEx)),
    spec!("mget", -2, READONLY | FAST, 1, -1, 1, "string", "1.0.0", "Atomically returns the string values of one or more keys.", eng!(mget::MGet)),
    spec!("mset", -3, WRITE | DENYOOM, 1, -1, 2, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys.", eng!(mset::MSet<false>)),
    spec!("msetnx", -3, WRITE | DENYOOM, 1, -1, 2, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.", eng!(mset::MSetNx)),
    spec!("append", 3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.", eng!(append::Append)),
    spec!("strlen", 2, READONLY | FAST, 1, 1, 1, "string", "2.2.0", "Returns the length of a string value.", eng!(strlen::StrLen)),
    spec!("getrange", 4, READONLY, 1, 1, 1, "string", "2.4.0", "Returns a substring of the string stored at a key.", eng!(getrange::GetRange)),
    spec!("setrange", 4, WRITE | DENYOOM, 1, 1, 1, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", eng!(setrange::SetRange)),
    spec!("incr", 2, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", eng!(incr::Incr)),
    spec!("decr", 2, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", eng!(incr::Decr)),
    spec!("incrby", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", eng!(incr::IncrBy<1, true>)),
    spec!("decrby", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", eng!(incr::DecrBy)),
    spec!("incrbyfloat", 3, WRITE | DENYOOM | FAST, 1, 1, 1, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", eng!(incrbyfloat::IncrByFloat)),
    spec!("lcs", -3, READONLY, 1, 2, 1, "string", "7.0.0", "Finds the longest common substring.", eng!(lcs::Lcs)),
    // bitmaps (docs/design/datatypes.md, "Bitmaps and LCS")
    spec!("setbit", 4, WRITE | DENYOOM, 1, 1, 1, "bitmap", "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", eng!(setbit::SetBit)),
    spec!("getbit", 3, READONLY | FAST, 1, 1, 1, "bitmap", "2.2.0", "Returns a bit value by offset.", eng!(getbit::GetBit)),
    spec!("bitcount", -2, READONLY, 1, 1, 1, "bitmap", "2.6.0", "Counts the number of set bits (population counting) in a string.", eng!(bitcount::BitCount)),
    spec!("bitpos", -3, READONLY, 1, 1, 1, "bitmap", "2.8.7", "Finds the first set (1) or clear (0) bit in a string.", eng!(bitpos::BitPos)),
    spec!("bitop", -4, WRITE | DENYOOM, 2, -1, 1, "bitmap", "2.6.0", "Performs bitwise operations on multiple strings, and stores the result.", eng!(bitop::BitOp)),
    spec!("bitfield", -2, WRITE | DENYOOM, 1, 1, 1, "bitmap", "3.2.0", "Performs arbitrary bitfield integer operations on strings.", eng!(bitfield::BitField<false>)),
    spec!("bitfield_ro", -2, READONLY | FAST, 1, 1, 1, "bitmap", "6.0.0", "Performs arbitrary read-only bitfield integer operations on strings.", eng!(bitfield::BitFieldRo)),
    // hashes (docs/design/datatypes.md)
    spec!("hset", -4, WRITE | DENYOOM | FAST, 1, 1, 1, "hash", "2.0.0", "Creates or modifies the value of a field in a hash.", eng!(hset::HSet<false>)),
    spec!("hmset", -4, WRITE | DENYOOM | FAST, 1, 1, 1, "hash", "2.0.0", "Sets the values of multiple fields.", eng!(hset::HMSet)),
    spec!("hsetnx", 4, WRITE | DENYOOM | FAST, 1, 1, 1, "hash", "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist.", eng!(hsetnx::HSetNx)),
    spec!("hget", 3, READONLY | FAST, 1, 1, 1, "hash", "2.0.0", "Returns the value of a field in a hash.", eng!(hget::HGet)),
    spec!("hmget", -3, READONLY | FAST, 1, 1, 1, "hash", "2.0.0", "Returns the values of all fields in a hash.", eng!(hmget::HMGet)),
    spec!("hdel", -3, WRITE | FAST, 1, 1, 1, "hash", "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", eng!(hdel::HDel)),
    spec!("hlen", 2, READONLY | FAST, 1, 1, 1, "hash", "2.0.0", "Returns the number of fields in a hash.", eng!(hlen::HLen)),
    spec!("hstrlen", 3, READONLY | FAST, 1, 1, 1, "hash", "3.2.0", "Returns the length of the value of a field.", eng!(hstrlen::HStrLen)),
    spec!("hexists", 3, READONLY | FAST, 1, 1, 1, "hash", "2.0.0", "Determines whether a field exists in a hash.", eng!(hexists::HExists)),
    spec!("hkeys", 2, READONLY, 1, 1, 1, "hash", "2.0.0", "Returns all fields in a hash.", eng!(hgetall::HKeys)),
    spec!("hvals", 2, READONLY, 1, 1, 1, "hash", "2.0.0", "Returns all values in a hash.", eng!(hgetall::HVals)),
    spec!("hgetall", 2, READONLY, 1, 1, 1, "hash", "2.0.0", "Returns all fields and values in a hash.", eng!(hgetall::HGetAll<3>)),
    spec!("hincrby", 4, WRITE | DENYOOM | FAST, 1, 1, 1, "hash", "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", eng!(hincrby::HIncrBy)),
    spec!("hincrbyfloat", 4, WRITE | DENYOOM | FAST, 1, 1, 1, "hash", "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", eng!(hincrbyfloat::HIncrByFloat)),
    spec!("hrandfield", -2, READONLY, 1, 1, 1, "hash", "6.2.0", "Returns one or more random fields from a hash.", eng!(hrandfield::HRandField)),
    spec!("hscan", -3, READONLY, 1, 1, 1, "hash", "2.8.0", "Iterates over fields and values of a hash.", eng!(hscan::HScan)),
    // hash field expiry (Redis 7.4)
    spec!("hexpire", -6, WRITE | FAST, 1, 1, 1, "hash", "7.4.0", "Set expiry for hash field using relative time to expire (seconds)", eng!(hexpire::HExpire<0>)),
    spec!("hpexpire", -6, WRITE | FAST, 1, 1, 1, "hash", "7.4.0", "Set expiry for hash field using relative time to expire (milliseconds)", eng!(hexpire::HPExpire)),
    spec!("hexpireat", -6, WRITE | FAST, 1, 1, 1, "hash", "7.4.0", "Set expiry for hash field using an absolute Unix timestamp (seconds)", eng!(hexpire::HExpireAt)),
    spec!("hpexpireat", -6, WRITE | FAST, 1, 1, 1, "hash", "7.4.0", "Set expiry for hash field using an absolute Unix timestamp (milliseconds)", eng!(hexpire::HPExpireAt)),
    spec!("hpersist", -5, WRITE | FAST, 1, 1, 1, "hash", "7.4.0", "Removes the expiration time for each specified field", eng!(hpersist::HPersist)),
    spec!("httl", -5, READONLY | FAST, 1, 1, 1, "hash", "7.4.0", "Returns the TTL in seconds of a hash field.", eng!(httl::HTtl<0>)),
    spec!("hpttl", -5, READONLY | FAST, 1, 1, 1, "hash", "7.4.0", "Returns the TTL in milliseconds of a hash field.", eng!(httl::HPTtl)),
    spec!("hexpiretime", -5, READONLY | FAST, 1, 1, 1, "hash", "7.4.0", "Returns the expiration time of a hash field as a Unix timestamp, in seconds.", eng!(httl::HExpireTime)),
    spec!("hpexpiretime", -5, READONLY | FAST, 1, 1, 1, "hash", "7.4.0", "Returns the expiration time of a hash field as a Unix timestamp, in msec.", eng!(httl::HPExpireTime)),
    // sets (docs/design/datatypes.md)
    spec!("sadd", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "set", "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist.", eng!(sadd::SAdd)),
    spec!("srem", -3, WRITE | FAST, 1, 1, 1, "set", "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed.", eng!(srem::SRem)),
    spec!("scard", 2, READONLY | FAST, 1, 1, 1, "set", "1.0.0", "Returns the number of members in a set.", eng!(scard::SCard)),
    spec!("sismember", 3, READONLY | FAST, 1, 1, 1, "set", "1.0.0", "Determines whether a member belongs to a set.", eng!(sismember::SIsMember<false>)),
    spec!("smismember", -3, READONLY | FAST, 1, 1, 1, "set", "6.2.0", "Determines whether multiple members belong to a set.", eng!(sismember::SMIsMember)),
    spec!("smembers", 2, READONLY, 1, 1, 1, "set", "1.0.0", "Returns all members of a set.", eng!(smembers::SMembers)),
    spec!("srandmember", -2, READONLY, 1, 1, 1, "set", "1.0.0", "Get one or multiple random members from a set", eng!(srandmember::SRandMember)),
    spec!("spop", -2, WRITE | FAST, 1, 1, 1, "set", "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", eng!(spop::SPop)),
    spec!("smove", 4, WRITE | FAST, 1, 2, 1, "set", "1.0.0", "Moves a member from one set to another.", eng!(smove::SMove)),
    spec!("sinter", -2, READONLY, 1, -1, 1, "set", "1.0.0", "Returns the intersect of multiple sets.", eng!(sinter::SInter<false>)),
    spec!("sintercard", -3, READONLY | NUMKEYS, 2, -1, 1, "set", "7.0.0", "Returns the number of members of the intersect of multiple sets.", eng!(sintercard::SInterCard)),
    spec!("sinterstore", -3, WRITE | DENYOOM, 1, -1, 1, "set", "1.0.0", "Stores the intersect of multiple sets in a key.", eng!(sinter::SInterStore)),
    spec!("sunion", -2, READONLY, 1, -1, 1, "set", "1.0.0", "Returns the union of multiple sets.", eng!(sunion::SUnion<{ sunion::UNION }, false>)),
    spec!("sunionstore", -3, WRITE | DENYOOM, 1, -1, 1, "set", "1.0.0", "Stores the union of multiple sets in a key.", eng!(sunion::SUnionStore)),
    spec!("sdiff", -2, READONLY, 1, -1, 1, "set", "1.0.0", "Returns the difference of multiple sets.", eng!(sunion::SDiff)),
    spec!("sdiffstore", -3, WRITE | DENYOOM, 1, -1, 1, "set", "1.0.0", "Stores the difference of multiple sets in a key.", eng!(sunion::SDiffStore)),
    spec!("sscan", -3, READONLY, 1, 1, 1, "set", "2.6.0", "Iterates over members of a set.", eng!(sscan::SScan)),
    // lists (docs/design/datatypes.md, "Lists")
    spec!("lpush", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "list", "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist.", eng!(lpush::LPush)),
    spec!("rpush", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "list", "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist.", eng!(lpush::RPush)),
    spec!("lpushx", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "list", "2.2.0", "Prepends one or more elements to a list only when the list exists.", eng!(lpush::LPushX)),
    spec!("rpushx", -3, WRITE | DENYOOM | FAST, 1, 1, 1, "list", "2.2.0", "Appends an element to a list only when the list exists.", eng!(lpush::RPushX)),
    spec!("lpop", -2, WRITE | FAST, 1, 1, 1, "list", "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", eng!(lpop::LPop)),
    spec!("rpop", -2, WRITE | FAST, 1, 1, 1, "list", "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", eng!(lpop::RPop)),
    spec!("llen", 2, READONLY | FAST, 1, 1, 1, "list", "1.0.0", "Returns the length of a list.", eng!(llen::LLen)),
    spec!("lrange", 4, READONLY, 1, 1, 1, "list", "1.0.0", "Returns a range of elements from a list.", eng!(lrange::LRange)),
    spec!("lindex", 3, READONLY, 1, 1, 1, "list", "1.0.0", "Returns an element from a list by its index.", eng!(lindex::LIndex)),
    spec!("lset", 4, WRITE | DENYOOM, 1, 1, 1, "list", "1.0.0", "Sets the value of an element in a list by its index.", eng!(lset::LSet)),
    spec!("linsert", 5, WRITE | DENYOOM, 1, 1, 1, "list", "2.2.0", "Inserts an element before or after another element in a list.", eng!(linsert::LInsert)),
    spec!("lrem", 4, WRITE, 1, 1, 1, "list", "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed.", eng!(lrem::LRem)),
    spec!("ltrim", 4, WRITE, 1, 1, 1, "list", "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", eng!(ltrim::LTrim)),
    spec!("lpos", -3, READONLY, 1, 1, 1, "list", "6.0.6", "Returns the index of matching elements in a list.", eng!(lpos::LPos)),
    spec!("lmove", 5, WRITE | DENYOOM, 1, 2, 1, "list", "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", eng!(lmove::LMove)),
    spec!("rpoplpush", 3, WRITE | DENYOOM, 1, 2, 1, "list", "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", eng!(lmove::RPopLPush)),
    spec!("lmpop", -4, WRITE | NUMKEYS, 2, -1, 1, "list", "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", eng!(lmpop::LMPop)),
    spec!("blpop", -3, WRITE | NOSCRIPT, 1, -2, 1, "list", "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", crate::listwait::run),
    spec!("brpop", -3, WRITE | NOSCRIPT, 1, -2, 1, "list", "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", crate::listwait::run),
    spec!("blmove", 6, WRITE | DENYOOM | NOSCRIPT, 1, 2, 1, "list", "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", crate::listwait::run),
    spec!("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT, 1, 2, 1, "list", "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", crate::listwait::run),
    spec!("blmpop", -5, WRITE | NUMKEYS, 3, -1, 1, "list", "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", crate::listwait::run),
    // sorted sets (docs/design/datatypes.md, "Sorted sets")
    spec!("zadd", -4, WRITE | DENYOOM | FAST, 1, 1, 1, "sorted_set", "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", eng!(zadd::ZAdd<false>)),
    spec!("zincrby", 4, WRITE | DENYOOM | FAST, 1, 1, 1, "sorted_set", "1.2.0", "Increments the score of a member in a sorted set.", eng!(zadd::ZIncrBy)),
    spec!("zrem", -3, WRITE | FAST, 1, 1, 1, "sorted_set", "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", eng!(zrem::ZRem)),
    spec!("zcard", 2, READONLY | FAST, 1, 1, 1, "sorted_set", "1.2.0", "Returns the number of members in a sorted set.", eng!(zscore::ZCard)),
    spec!("zscore", 3, READONLY | FAST, 1, 1, 1, "sorted_set", "1.2.0", "Returns the score of a member in a sorted set.", eng!(zscore::ZScore<false>)),
    spec!("zmscore", -3, READONLY | FAST, 1, 1, 1, "sorted_set", "6.2.0", "Returns the score of one or more members in a sorted set.", eng!(zscore::ZMScore)),
    spec!("zrank", 3, READONLY | FAST, 1, 1, 1, "sorted_set", "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores.", eng!(zscore::ZRank<false>)),
    spec!("zrevrank", 3, READONLY | FAST, 1, 1, 1, "sorted_set", "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores.", eng!(zscore::ZRevRank)),
    spec!("zcount", 4, READONLY | FAST, 1, 1, 1, "sorted_set", "2.0.0", "Returns the count of members in a sorted set that have scores within a range.", eng!(zrange::ZCount<false>)),
    spec!("zlexcount", 4, READONLY | FAST, 1, 1, 1, "sorted_set", "2.8.9", "Returns the number of members in a sorted set within a lexicographical range.", eng!(zrange::ZLexCount)),
    spec!("zrange", -4, READONLY, 1, 1, 1, "sorted_set", "1.2.0", "Returns members in a sorted set within a range of indexes.", eng!(zrange::ZRange)),
    spec!("zrevrange", -4, READONLY, 1, 1, 1, "sorted_set", "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order.", eng!(zrange::ZRevRange)),
    spec!("zrangebyscore", -4, READONLY, 1, 1, 1, "sorted_set", "1.0.5", "Returns members in a sorted set within a range of scores.", eng!(zrange::ZRangeByScore)),
    spec!("zrevrangebyscore", -4, READONLY, 1, 1, 1, "sorted_set", "2.2.0", "Returns members in a sorted set within a range of scores in reverse order.", eng!(zrange::ZRevRangeByScore)),
    spec!("zrangebylex", -4, READONLY, 1, 1, 1, "sorted_set", "2.8.9", "Returns members in a sorted set within a lexicographical range.", eng!(zrange::ZRangeByLex)),
    spec!("zrevrangebylex", -4, READONLY, 1, 1, 1, "sorted_set", "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order.", eng!(zrange::ZRevRangeByLex)),
    spec!("zrangestore", -5, WRITE | DENYOOM, 1, 2, 1, "sorted_set", "6.2.0", "Stores a range of members from sorted set in a key.", eng!(zrange::ZRangeStore)),
    spec!("zremrangebyrank", 4, WRITE, 1, 1, 1, "sorted_set", "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", eng!(zrange::ZRemRangeByRank)),
    spec!("zremrangebyscore", 4, WRITE, 1, 1, 1, "sorted_set", "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", eng!(zrange::ZRemRangeByScore)),
    spec!("zremrangebylex", 4, WRITE, 1, 1, 1, "sorted_set", "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", eng!(zrange::ZRemRangeByLex)),
    spec!("zunion", -3, READONLY | NUMKEYS, 2, -1, 1, "sorted_set", "6.2.0", "Returns the union of multiple sorted sets.", eng!(zunion::ZUnion)),
    spec!("zinter", -3, READONLY | NUMKEYS, 2, -1, 1, "sorted_set", "6.2.0", "Returns the intersect of multiple sorted sets.", eng!(zunion::ZInter)),
    spec!("zdiff", -3, READONLY | NUMKEYS, 2, -1, 1, "sorted_set", "6.2.0", "Returns the difference between multiple sorted sets.", eng!(zunion::ZDiff)),
    spec!("zintercard", -3, READONLY | NUMKEYS, 2, -1, 1, "sorted_set", "7.0.0", "Returns the number of members of the intersect of multiple sorted sets.", eng!(zunion::ZInterCard)),
    spec!("zunionstore", -4, WRITE | DENYOOM | NUMKEYS | DEST, 3, -1, 1, "sorted_set", "2.0.0", "Stores the union of multiple sorted sets in a key.", eng!(zunion::ZUnionStore)),
    spec!("zinterstore", -4, WRITE | DENYOOM | NUMKEYS | DEST, 3, -1, 1, "sorted_set", "2.0.0", "Stores the intersect of multiple sorted sets in a key.", eng!(zunion::ZInterStore)),
    spec!("zdiffstore", -4, WRITE | DENYOOM | NUMKEYS | DEST, 3, -1, 1, "sorted_set", "6.2.0", "Stores the difference of multiple sorted sets in a key.", eng!(zunion::ZDiffStore)),
    spec!("zpopmin", -2, WRITE | FAST, 1, 1, 1, "sorted_set", "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", eng!(zpop::ZPopMin)),
    spec!("zpopmax", -2, WRITE | FAST, 1, 1, 1, "sorted_set", "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", eng!(zpop::ZPopMax)),
    spec!("zmpop", -4, WRITE | NUMKEYS, 2, -1, 1, "sorted_set", "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", eng!(zpop::ZMPop)),
    spec!("bzpopmin", -3, WRITE | NOSCRIPT | FAST, 1, -2, 1, "sorted_set", "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", crate::listwait::run),
    spec!("bzpopmax", -3, WRITE | NOSCRIPT | FAST, 1, -2, 1, "sorted_set", "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise. Deletes the sorted set if the last element was popped.", crate::listwait::run),
    spec!("bzmpop", -5, WRITE | NUMKEYS, 3, -1, 1, "sorted_set", "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", crate::listwait::run),
    spec!("zrandmember", -2, READONLY, 1, 1, 1, "sorted_set", "6.2.0", "Returns one or more random members from a sorted set.", eng!(zrandmember::ZRandMember)),
    spec!("zscan", -3, READONLY, 1, 1, 1, "sorted_set", "2.8.0", "Iterates over members and scores of a sorted set.", eng!(zscan::ZScan)),
    // keys
    spec!("del", -2, WRITE | FENCE_TAIL, 1, -1, 1, "generic", "1.0.0", "Deletes one or more keys.", eng!(del::Del<true>)),
    spec!("unlink", -2, WRITE | FAST, 1, -1, 1, "generic", "4.0.0", "Asynchronously deletes one or more keys.", eng!(del::Unlink)),
    spec!("exists", -2, READONLY | FAST, 1, -1, 1, "generic", "1.0.0", "Determines whether one or more keys exist.", eng!(exists::Exists)),
    spec!("touch", -2, READONLY | FAST, 1, -1, 1, "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.", eng!(touch::Touch)),
    spec!("type", 2, READONLY | FAST, 1, 1, 1, "generic", "1.0.0", "Determines the type of value stored at a key.", eng!(type_::Type)),
    spec!("expire", -3, WRITE | FAST, 1, 1, 1, "generic", "1.0.0", "Sets the expiration time of a key in seconds.", eng!(expire::Expire<0>)),
    spec!("pexpire", -3, WRITE | FAST, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds.", eng!(expire::PExpire)),
    spec!("expireat", -3, WRITE | FAST, 1, 1, 1, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp.", eng!(expire::ExpireAt)),
    spec!("pexpireat", -3, WRITE | FAST, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp.", eng!(expire::PExpireAt)),
    spec!("ttl", 2, READONLY | FAST, 1, 1, 1, "generic", "1.0.0", "Returns the expiration time in seconds of a key.", eng!(ttl::Ttl<0>)),
    spec!("pttl", 2, READONLY | FAST, 1, 1, 1, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key.", eng!(ttl::PTtl)),
    spec!("expiretime", 2, READONLY | FAST, 1, 1, 1, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp.", eng!(ttl::ExpireTime)),
    spec!("pexpiretime", 2, READONLY | FAST, 1, 1, 1, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp.", eng!(ttl::PExpireTime)),
    spec!("persist", 2, WRITE | FAST, 1, 1, 1, "generic", "2.2.0", "Removes the expiration time of a key.", eng!(persist::Persist)),
    spec!("rename", 3, WRITE, 1, 2, 1, "generic", "1.0.0", "Renames a key and overwrites the destination.", eng!(rename::Rename<false>)),
    spec!("renamenx", 3, WRITE | FAST, 1, 2, 1, "generic", "1.0.0", "Renames a key only when the target key name doesn't exist.", eng!(rename::RenameNx)),
    spec!("copy", -3, WRITE | DENYOOM, 1, 2, 1, "generic", "6.2.0", "Copies the value of a key to a new key.", eng!(copy::Copy)),
    spec!("object", -2, READONLY, 2, 2, 1, "generic", "2.2.3", "A container for object introspection commands.", eng!(object::Object)),
    spec!("keys", 2, READONLY, 0, 0, 0, "generic", "1.0.0", "Returns all key names that match a pattern.", keys::run),
    spec!("scan", -2, READONLY, 0, 0, 0, "generic", "2.8.0", "Iterates over the key names in the database.", scan::run),
    spec!("randomkey", 1, READONLY, 0, 0, 0, "generic", "1.0.0", "Returns a random key name from the database.", randomkey::run),
    spec!("dbsize", 1, READONLY | FAST, 0, 0, 0, "server", "1.0.0", "Returns the number of keys in the database.", dbsize::run),
    spec!("flushdb", -1, WRITE, 0, 0, 0, "server", "1.0.0", "Remove all keys from the current database.", flush::run),
    spec!("flushall", -1, WRITE, 0, 0, 0, "server", "1.0.0", "Removes all keys from all databases.", flush::run),
    // locks (docs/design/locks.md)
    spec!("lock.acquire", -4, WRITE | DENYOOM, 1, 1, 1, "lock", "cairn 0.1.0", "Acquires a lock for an owner with a lease, waiting up to WAIT ms in a FIFO queue; returns the grant's fencing token, or null when another owner holds it.", lock::acquire::<false>),
    spec!("sem.acquire", -6, WRITE | DENYOOM, 1, 1, 1, "lock", "cairn 0.1.0", "Acquires permits of a semaphore for an owner with a lease, waiting up to WAIT ms in a FIFO queue; returns the grant's fencing token, or null when not enough permits are free.", lock::acquire::<true>),
    spec!("sem.info", 2, READONLY | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Returns a semaphore's (or lock's) permits, holders and waiters.", eng!(sem_info::SemInfo)),
    spec!("lock.dequeue", 3, WRITE | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Takes an owner out of a lock's queue of waiters; returns its token if it holds the lock, else 0.", eng!(lock_dequeue::LockDequeue)),
    spec!("lock.renew", 5, WRITE | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Renews the lease of a lock its owner holds with the given token.", eng!(lock_renew::LockRenew)),
    spec!("lock.release", 4, WRITE | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Releases a lock its owner holds with the given token.", eng!(lock_release::LockRelease)),
    spec!("lock.info", 2, READONLY | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Returns a lock's holder, token, lease and waiters.", eng!(lock_info::LockInfo)),
    spec!("lock.fence", 3, READONLY | FAST, 1, 1, 1, "lock", "cairn 0.1.0", "Answers OK while a lock is held with the given token, else FENCED; inside MULTI, the transaction's precondition.", eng!(lock_fence::LockFence)),
    spec!("lock.forcerelease", 2, WRITE, 1, 1, 1, "lock", "cairn 0.1.0", "Releases a lock whoever holds it (administrators).", eng!(lock_forcerelease::LockForceRelease)),
    // transactions (docs/design/transactions.md)
    spec!("multi", 1, NOSCRIPT | LOADING | STALE | FAST, 0, 0, 0, "transactions", "1.2.0", "Starts a transaction.", multi::multi),
    spec!("exec", 1, NOSCRIPT | LOADING | STALE, 0, 0, 0, "transactions", "1.2.0", "Executes all commands in a transaction.", multi::exec),
    spec!("discard", 1, NOSCRIPT | LOADING | STALE | FAST, 0, 0, 0, "transactions", "2.0.0", "Discards a transaction.", multi::discard),
    spec!("watch", -2, NOSCRIPT | LOADING | STALE | FAST, 1, -1, 1, "transactions", "2.2.0", "Monitors changes to keys to determine the execution of a transaction.", multi::watch),
    spec!("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST, 0, 0, 0, "transactions", "2.2.0", "Forgets about watched keys of a transaction.", multi::unwatch),
    spec!("cairn.exec", -3, WRITE, 1, 1, 1, "transactions", "cairn 0.1.0", "A whole transaction as one command (what EXEC sends its keys' group).", multi::exec_raw),
    spec!("cairn.versions", -2, READONLY, 1, -1, 1, "transactions", "cairn 0.1.0", "The write versions WATCH records for keys.", eng!(versions::Versions)),
    // connection
    spec!("ping", -1, FAST | STALE | LOADING, 0, 0, 0, "connection", "1.0.0", "Returns the server's liveliness response.", ping::run),
    spec!("echo", 2, FAST | STALE | LOADING, 0, 0, 0, "connection", "1.0.0", "Returns the given string.", echo::run),
    spec!("hello", -1, FAST | STALE | LOADING | NOSCRIPT, 0, 0, 0, "connection", "6.0.0", "Handshakes with the Redis server.", hello::run),
    spec!("auth", -2, FAST | STALE | LOADING | NOSCRIPT, 0, 0, 0, "connection", "1.0.0", "Authenticates the connection.", auth::run),
    spec!("quit", -1, FAST | STALE | LOADING | NOSCRIPT, 0, 0, 0, "connection", "1.0.0", "Closes the connection.", quit::run),
    spec!("reset", 1, FAST | STALE | LOADING | NOSCRIPT, 0, 0, 0, "connection", "6.2.0", "Resets the connection.", reset::run),
    spec!("select", 2, FAST | STALE | LOADING, 0, 0, 0, "connection", "1.0.0", "Changes the selected database.", select::run),
    spec!("readonly", 1, FAST | LOADING | STALE, 0, 0, 0, "cluster", "3.0.0", "Enables read-only queries for a connection to a Redis Cluster replica node.", readonly::readonly),
    spec!("readwrite", 1, FAST | LOADING | STALE, 0, 0, 0, "cluster", "3.0.0", "Enables read-write queries for a connection to a Redis Cluster replica node.", readonly::readwrite),
    spec!("asking", 1, FAST, 0, 0, 0, "cluster", "3.0.0", "Signals that a cluster client is following an -ASK redirect.", readonly::asking),
    spec!("cluster", -2, STALE, 0, 0, 0, "cluster", "3.0.0", "A container for Redis Cluster commands.", cluster::run),
    spec!("client", -2, STALE | LOADING | NOSCRIPT, 0, 0, 0, "connection", "2.4.0", "A container for client connection commands.", client::run),
    // server
    spec!("command", -1, STALE | LOADING, 0, 0, 0, "server", "2.8.13", "Returns detailed information about all commands.", command::run),
    spec!("info", -1, STALE | LOADING, 0, 0, 0, "server", "1.0.0", "Returns information and statistics about the server.", info::run),
    spec!("config", -2, ADMIN | STALE | LOADING | NOSCRIPT, 0, 0, 0, "server", "2.0.0", "A container for server configuration commands.", config::run),
    spec!("time", 1, FAST | STALE | LOADING, 0, 0, 0, "server", "2.6.0", "Returns the server time.", time::run),
    spec!("slowlog", -2, ADMIN | STALE | LOADING, 0, 0, 0, "server", "2.2.12", "A container for slow log commands.", slowlog::run),
    spec!("latency", -2, ADMIN | STALE | LOADING | NOSCRIPT, 0, 0, 0, "server", "2.8.13", "A container for latency diagnostics commands.", latency::run),
    spec!("memory", -2, READONLY, 0, 0, 0, "server", "4.0.0", "A container for memory diagnostics commands.", memory::run),
    spec!("acl", -2, ADMIN | NOSCRIPT | LOADING | STALE, 0, 0, 0, "server", "6.0.0", "A container for Access List Control commands.", acl::run),
    spec!("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE, 0, 0, 0, "server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server.", shutdown::run),
];

pub(crate) fn table() -> &'static [Spec] {
    TABLE
}

type Index = HashMap<&'static [u8], usize, foldhash::fast::FixedState>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        TABLE
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_bytes(), i))
            .collect()
    })
}

/// Finds a command by name, case-insensitively, without allocating.
pub(crate) fn lookup(name: &[u8]) -> Option<usize> {
    let mut buf = [0u8; 24];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    index().get(&buf[..name.len()]).copied()
}

pub(crate) fn unknown_command_error(argv: &[&[u8]]) -> String {
    let mut args = String::new();
    for a in &argv[1..] {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let s = String::from_utf8_lossy(a);
        let cut: String = s.chars().take(room).collect();
        args.push_str(&format!("'{cut}' "));
    }
    let name: String = String::from_utf8_lossy(argv[0]).chars().take(128).collect();
    format!("ERR unknown command '{name}', with args beginning with: {args}")
}

/// Redis' arity rule: exactly `arity` arguments, or at least `-arity`.
pub(crate) fn arity_ok(arity: i32, argc: i32) -> bool {
    if arity > 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Runs a command's handler here and now (a read after its cluster
/// barrier, or a forwarded request), writing the reply to `out`.
pub(crate) fn run_handler(
    shared: &Shared,
    conn: &mut ConnState,
    idx: usize,
    argv: &[&[u8]],
    out: &mut Vec<u8>,
    now_ms: u64,
) -> Flow {
    let spec = &TABLE[idx];
    let proto = conn.proto;
    let mut ctx = Ctx {
        shared,
        conn,
        out: ReplyWriter::new(out, proto),
        now_ms,
        spec,
    };
    (spec.handler)(&mut ctx, argv)
}

#[inline]
pub(crate) fn slow_path_logs(shared: &Shared, conn: &ConnState, argv: &[&[u8]], us: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &shared.settings;
    if us >= s.slowlog_slower_than_us.load(Relaxed) {
        let name = conn.info.name.lock().clone();
        let len_max = s.slowlog_max_len.load(Relaxed) as usize;
        shared.slowlog.lock().push(
            argv,
            us,
            crate::unix_ms() / 1000,
            conn.info.addr.to_string(),
            name,
            len_max,
        );
    }
    let threshold_ms = s.latency_threshold_ms.load(Relaxed);
    if threshold_ms > 0 && us / 1000 >= threshold_ms {
        shared
            .latency
            .lock()
            .record(crate::unix_ms() / 1000, us / 1000);
    }
}

/// Shared helper: the subcommand word, uppercased, for container commands.
pub(crate) fn sub(argv: &[&[u8]]) -> String {
    String::from_utf8_lossy(argv.get(1).copied().unwrap_or_default()).to_ascii_uppercase()
}

pub(crate) fn unknown_subcommand(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let name = ctx.spec.name.to_ascii_uppercase();
    let s = String::from_utf8_lossy(argv.get(1).copied().unwrap_or_default()).into_owned();
    ctx.out
        .error(&format!("ERR unknown subcommand '{s}'. Try {name} HELP."));
    Flow::Continue
}

pub(crate) fn sub_arity(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let name = format!(
        "{}|{}",
        ctx.spec.name,
        String::from_utf8_lossy(argv[1]).to_ascii_lowercase()
    );
    ctx.out.error(&ecmd::wrong_arity(&name).0);
    Flow::Continue
}

/// Writes a HELP reply: an array of status lines.
pub(crate) fn help(ctx: &mut Ctx<'_>, lines: &[&str]) -> Flow {
    let name = ctx.spec.name.to_ascii_uppercase();
    ctx.out.array(lines.len() + 1);
    ctx.out.simple(&format!(
        "{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for l in lines {
        ctx.out.simple(l);
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatch table and the replicated-apply table agree: every
    /// write a client can send is applied by replicas, with the same
    /// arity, and nothing else is replicated but cairn's own entries.
    #[test]
    fn every_write_is_replicated_with_the_same_arity() {
        for spec in TABLE.iter().filter(|s| s.flags & WRITE != 0) {
            assert_eq!(
                cairn_engine::replicated::arity(spec.name.as_bytes()),
                Some(spec.arity),
                "{}",
                spec.name
            );
        }
        for name in cairn_engine::replicated::NAMES {
            match lookup(name.as_bytes()) {
                Some(i) => assert!(TABLE[i].flags & WRITE != 0, "{name}"),
                None => assert!(name.starts_with("cairn."), "{name}"),
            }
        }
    }
}
