//! Commands on the keyspace, one file per command (or per family of
//! commands that differ only in a unit or a flag).
//!
//! Each command is a type with three steps: `parse` from the argument list
//! (arity was already checked by the caller against the command table),
//! `apply` to the keyspace at a given time, writing the reply to a
//! [`Reply`] sink. Parsing borrows the arguments; nothing is copied until a
//! value is stored.

use std::borrow::Cow;

use crate::keyspace::Keyspace;
use crate::reply::Reply;

pub mod append;
pub mod bitcount;
pub mod bitfield;
pub mod bitop;
pub mod bitpos;
pub mod blpop;
pub mod copy;
pub mod del;
pub mod evict;
pub mod exec;
pub mod exists;
pub mod expire;
pub mod expired;
pub mod get;
pub mod getbit;
pub mod getdel;
pub mod getex;
pub mod getrange;
pub mod getset;
pub mod hdel;
pub mod hexists;
pub mod hexpire;
pub mod hget;
pub mod hgetall;
pub mod hincrby;
pub mod hincrbyfloat;
pub mod hlen;
pub mod hmget;
pub mod hpersist;
pub mod hpurge;
pub mod hrandfield;
pub mod hscan;
pub mod hset;
pub mod hsetnx;
pub mod hstrlen;
pub mod httl;
pub mod incr;
pub mod incrbyfloat;
pub mod keys;
pub mod lcs;
pub mod lindex;
pub mod linsert;
pub mod llen;
pub mod lmove;
pub mod lmpop;
pub mod lock_acquire;
pub mod lock_dequeue;
pub mod lock_expire;
pub mod lock_fence;
pub mod lock_forcerelease;
pub mod lock_info;
pub mod lock_release;
pub mod lock_renew;
pub mod lpop;
pub mod lpos;
pub mod lpush;
pub mod lrange;
pub mod lrem;
pub mod lset;
pub mod ltrim;
pub mod mget;
pub mod mset;
pub mod object;
pub mod persist;
pub mod rename;
pub mod sadd;
pub mod scan;
pub mod scard;
pub mod sem_info;
pub mod set;
pub mod setbit;
pub mod setex;
pub mod setnx;
pub mod setrange;
pub mod sinter;
pub mod sintercard;
pub mod sismember;
pub mod smembers;
pub mod smove;
pub mod spop;
pub mod srandmember;
pub mod srem;
pub mod sscan;
pub mod strlen;
pub mod sunion;
pub mod touch;
pub mod ttl;
pub mod type_;
pub mod versions;
pub mod zadd;
pub mod zpop;
pub mod zrandmember;
pub mod zrange;
pub mod zrem;
pub mod zscan;
pub mod zscore;
pub mod zunion;

pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const TOO_BIG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// A command error; the text starts with the Redis error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError(pub Cow<'static, str>);

impl CmdError {
    pub fn msg(&self) -> &str {
        &self.0
    }
}

impl From<String> for CmdError {
    fn from(s: String) -> Self {
        CmdError(s.into())
    }
}

impl From<&'static str> for CmdError {
    fn from(s: &'static str) -> Self {
        CmdError(Cow::Borrowed(s))
    }
}

pub fn wrong_arity(name: &str) -> CmdError {
    CmdError(
        format!(
            "ERR wrong number of arguments for '{}' command",
            name.to_ascii_lowercase()
        )
        .into(),
    )
}

/// The keyspace shard(s) a command may touch. A single shard serves every
/// key; a standalone server hands out the locked shard owning each key.
pub trait Db {
    fn shard(&mut self, key: &[u8]) -> &mut Keyspace;
}

impl Db for Keyspace {
    fn shard(&mut self, _key: &[u8]) -> &mut Keyspace {
        self
    }
}

/// A command on keys: parse, then apply at a time.
pub trait Command<'a>: Sized {
    fn parse(argv: &'a [&'a [u8]]) -> Result<Self, CmdError>;
    fn apply(&self, db: &mut impl Db, now_ms: u64, out: &mut impl Reply);
    /// Errors `apply` would give whatever the data, at about `now_ms`
    /// (an expire time out of range); with `parse`, what a node checks
    /// before it proposes a command to the log.
    fn check(&self, _now_ms: u64) -> Result<(), CmdError> {
        Ok(())
    }
}

pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub(crate) fn int_arg(arg: &[u8]) -> Result<i64, CmdError> {
    crate::num::parse_i64(arg).ok_or(CmdError::from(NOT_INTEGER))
}

pub(crate) fn arg<'a>(argv: &[&'a [u8]], i: usize) -> Result<&'a [u8], CmdError> {
    argv.get(i).copied().ok_or_else(|| {
        wrong_arity(&String::from_utf8_lossy(
            argv.first().copied().unwrap_or(b"?"),
        ))
    })
}

/// How an expiry option was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireUnit {
    /// Relative seconds (EX).
    Seconds,
    /// Relative milliseconds (PX).
    Millis,
    /// Absolute unix seconds (EXAT).
    UnixSeconds,
    /// Absolute unix milliseconds (PXAT).
    UnixMillis,
}

impl ExpireUnit {
    pub(crate) fn from_option(arg: &[u8]) -> Option<ExpireUnit> {
        if is(arg, "EX") {
            Some(ExpireUnit::Seconds)
        } else if is(arg, "PX") {
            Some(ExpireUnit::Millis)
        } else if is(arg, "EXAT") {
            Some(ExpireUnit::UnixSeconds)
        } else if is(arg, "PXAT") {
            Some(ExpireUnit::UnixMillis)
        } else {
            None
        }
    }

    /// Redis' `getExpireMillisecondsOrReply`: non-positive or overflowing
    /// values are rejected; the result is an absolute unix-ms deadline,
    /// possibly already past.
    pub(crate) fn deadline(self, v: i64, now_ms: u64, cmd: &str) -> Result<u64, CmdError> {
        let invalid = || CmdError(format!("ERR invalid expire time in '{cmd}' command").into());
        if v <= 0 {
            return Err(invalid());
        }
        let ms = match self {
            ExpireUnit::Seconds | ExpireUnit::UnixSeconds => {
                v.checked_mul(1000).ok_or_else(invalid)?
            }
            ExpireUnit::Millis | ExpireUnit::UnixMillis => v,
        };
        match self {
            ExpireUnit::Seconds | ExpireUnit::Millis => ms
                .checked_add(now_ms as i64)
                .map(|d| d as u64)
                .ok_or_else(invalid),
            _ => Ok(ms as u64),
        }
    }
}

/// The expiry options shared by SET and GETEX: EX/PX/EXAT/PXAT with a
/// number, or one keyword meaning "no new deadline" (KEEPTTL for SET,
/// PERSIST for GETEX). As in Redis, the same option may repeat (the last
/// value wins); different ones conflict. Numbers are parsed by `finish`,
/// after every option was checked.
pub(crate) struct ExpiryOptions<'a> {
    keyword: &'static str,
    pub expiry: Option<(ExpireUnit, &'a [u8])>,
    pub keyword_seen: bool,
}

impl<'a> ExpiryOptions<'a> {
    pub fn new(keyword: &'static str) -> Self {
        ExpiryOptions {
            keyword,
            expiry: None,
            keyword_seen: false,
        }
    }

    /// Consumes the option at `argv[i]` if it is one of these; returns how
    /// many arguments it took (0 = not an expiry option).
    pub fn offer(&mut self, argv: &[&'a [u8]], i: usize) -> Result<usize, CmdError> {
        let a = argv[i];
        if is(a, self.keyword) {
            if self.expiry.is_some() {
                return Err(SYNTAX.into());
            }
            self.keyword_seen = true;
            return Ok(1);
        }
        let (Some(unit), Some(v)) = (ExpireUnit::from_option(a), argv.get(i + 1)) else {
            return Ok(0);
        };
        if self.keyword_seen || self.expiry.is_some_and(|(u, _)| u != unit) {
            return Err(SYNTAX.into());
        }
        self.expiry = Some((unit, v));
        Ok(2)
    }

    /// The chosen deadline option with its number parsed.
    pub fn finish(&self) -> Result<Option<(ExpireUnit, i64)>, CmdError> {
        self.expiry
            .map(|(unit, v)| Ok((unit, int_arg(v)?)))
            .transpose()
    }
}

/// Whether the RESP3 reply of `argv` nests pairs that Redis flattens in
/// RESP2 (`[[member, score], ...]` there is `[member, score, ...]`):
/// ZRANGE and its forms, ZUNION, ZINTER and ZDIFF WITHSCORES, ZRANDMEMBER
/// and HRANDFIELD with scores or values, ZPOPMIN and ZPOPMAX with a
/// count. A reply made in RESP3 for a RESP2 client (cluster mode applies
/// commands through the log in RESP3) is flattened one level for these.
pub fn resp2_flattens(argv: &[&[u8]]) -> bool {
    let Some(name) = argv.first() else {
        return false;
    };
    let any = |word: &str| argv[1..].iter().any(|a| is(a, word));
    if [
        "zrange",
        "zrevrange",
        "zrangebyscore",
        "zrevrangebyscore",
        "zunion",
        "zinter",
        "zdiff",
    ]
    .iter()
    .any(|n| is(name, n))
    {
        any("WITHSCORES")
    } else if is(name, "zrandmember") || is(name, "hrandfield") {
        argv.len() == 4
    } else if is(name, "zpopmin") || is(name, "zpopmax") {
        argv.len() == 3
    } else {
        false
    }
}

/// Writes a `Result` that failed as an error reply.
pub(crate) fn reply_err(out: &mut impl Reply, e: CmdError) {
    out.error(e.msg());
}
