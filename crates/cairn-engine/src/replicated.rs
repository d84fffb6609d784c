//! Applying a command that arrives as a replicated log entry: the
//! argument list alone, by name. The leader checked arity and syntax
//! before proposing, so every replica normally sees valid commands; the
//! arity is checked again here so that no entry, however it was made,
//! can crash a replica. Errors are replies, identical on every replica.

use crate::cmd::{self, *};
use crate::reply::Reply;

/// The command's name, lowercased into `buf`; `None` when it is too long
/// to be any replicated command.
fn lower_name<'b>(argv: &[&[u8]], buf: &'b mut [u8; 24]) -> Result<&'b [u8], String> {
    let Some(name) = argv.first() else {
        return Err("ERR empty command".into());
    };
    if name.len() > buf.len() {
        return Err(unknown(name));
    }
    for (d, s) in buf.iter_mut().zip(name.iter()) {
        *d = s.to_ascii_lowercase();
    }
    Ok(&buf[..name.len()])
}

fn unknown(name: &[u8]) -> String {
    format!("ERR unknown command '{}'", String::from_utf8_lossy(name))
}

/// Checks Redis' arity rule (`arity` = n: exactly n arguments, name
/// included; -n: at least n), then parses.
fn parse<'a, T: Command<'a>>(argv: &'a [&'a [u8]], arity: i32) -> Result<T, String> {
    let n = argv.len() as i64;
    let a = i64::from(arity);
    if (a >= 0 && n != a) || (a < 0 && n < -a) {
        return Err(cmd::wrong_arity(&String::from_utf8_lossy(argv[0]))
            .0
            .into_owned());
    }
    T::parse(argv).map_err(|e| e.msg().to_string())
}

/// The one table of replicated commands: name(s), Redis arity, type.
/// From it come [`apply_argv`] (a replica applies an entry),
/// [`check_argv`] (the node that receives a command validates it before
/// proposing), [`arity`] and [`NAMES`].
macro_rules! replicated {
    ($($($name:literal)|+ => $arity:expr, $t:ty;)*) => {
        /// Applies `argv` (name first) to `db` at the leader's time `now_ms`.
        pub fn apply_argv(db: &mut impl Db, argv: &[&[u8]], now_ms: u64, out: &mut impl Reply) {
            let mut buf = [0u8; 24];
            let name = match lower_name(argv, &mut buf) {
                Ok(n) => n,
                Err(e) => return out.error(&e),
            };
            let r = match name {
                $($($name)|+ => parse::<$t>(argv, $arity).map(|c| c.apply(db, now_ms, out)),)*
                b"flushall" | b"flushdb" => {
                    db.shard(b"").clear();
                    out.ok();
                    Ok(())
                }
                _ => Err(unknown(argv[0])),
            };
            if let Err(e) = r {
                out.error(&e);
            }
        }

        /// Whether `argv` would apply at about `now_ms` without an arity,
        /// syntax or range error — what a node checks before it proposes
        /// a command, so that no invalid command reaches the log (the
        /// error is the reply). Errors that depend on the data
        /// (WRONGTYPE, not an integer) are decided at apply, identically
        /// on every replica.
        pub fn check_argv(argv: &[&[u8]], now_ms: u64) -> Result<(), String> {
            let mut buf = [0u8; 24];
            let name = lower_name(argv, &mut buf)?;
            match name {
                $($($name)|+ => parse::<$t>(argv, $arity)
                    .and_then(|c| c.check(now_ms).map_err(|e| e.msg().to_string())),)*
                b"flushall" | b"flushdb" => Ok(()),
                _ => Err(unknown(argv[0])),
            }
        }

        /// The Redis arity of a replicated command (any case); `None`
        /// for a command that is not replicated.
        pub fn arity(name: &[u8]) -> Option<i32> {
            let mut buf = [0u8; 24];
            let name = lower_name(&[name], &mut buf).ok()?;
            match name {
                $($($name)|+ => Some($arity),)*
                b"flushall" | b"flushdb" => Some(-1),
                _ => None,
            }
        }

        /// Every replicated command's name.
        pub const NAMES: &[&str] = &[$($(
            // A byte-string literal's text: b"set" -> "set".
            match std::str::from_utf8($name) { Ok(s) => s, Err(_) => "" },
        )+)* "flushall", "flushdb"];
    };
}

replicated! {
    b"set" => -3, set::Set;
    b"setnx" => 3, setnx::SetNx;
    b"setex" => 4, setex::SetEx<false>;
    b"psetex" => 4, setex::PSetEx;
    b"getset" => 3, getset::GetSet;
    b"getdel" => 2, getdel::GetDel;
    b"getex" => -2, getex::GetEx;
    b"mset" => -3, mset::MSet<false>;
    b"msetnx" => -3, mset::MSetNx;
    b"append" => 3, append::Append;
    b"setrange" => 4, setrange::SetRange;
    b"setbit" => 4, setbit::SetBit;
    b"bitop" => -4, bitop::BitOp;
    // A BITFIELD of GETs only is served as a read in cluster mode; in
    // the log (inside a transaction) it applies as a write that changes
    // nothing.
    b"bitfield" => -2, bitfield::BitField<false>;
    b"incr" => 2, incr::Incr;
    b"decr" => 2, incr::Decr;
    b"incrby" => -3, incr::IncrBy<1, true>;
    b"decrby" => -3, incr::DecrBy;
    b"incrbyfloat" => 3, incrbyfloat::IncrByFloat;
    b"del" => -2, del::Del<true>;
    b"unlink" => -2, del::Unlink;
    b"expire" => -3, expire::Expire<0>;
    b"pexpire" => -3, expire::PExpire;
    b"expireat" => -3, expire::ExpireAt;
    b"pexpireat" => -3, expire::PExpireAt;
    b"persist" => 2, persist::Persist;
    b"rename" => 3, rename::Rename<false>;
    b"renamenx" => 3, rename::RenameNx;
    b"copy" => -3, copy::Copy;
    b"hset" => -4, hset::HSet<false>;
    b"hmset" => -4, hset::HMSet;
    b"hsetnx" => 4, hsetnx::HSetNx;
    b"hdel" => -3, hdel::HDel;
    b"hincrby" => 4, hincrby::HIncrBy;
    b"hincrbyfloat" => 4, hincrbyfloat::HIncrByFloat;
    b"hexpire" => -6, hexpire::HExpire<0>;
    b"hpexpire" => -6, hexpire::HPExpire;
    b"hexpireat" => -6, hexpire::HExpireAt;
    b"hpexpireat" => -6, hexpire::HPExpireAt;
    b"hpersist" => -5, hpersist::HPersist;
    b"cairn.hpurge" => -1, hpurge::HPurge;
    b"sadd" => -3, sadd::SAdd;
    b"srem" => -3, srem::SRem;
    b"spop" => -2, spop::SPop;
    b"smove" => 4, smove::SMove;
    b"sinterstore" => -3, sinter::SInterStore;
    b"sunionstore" => -3, sunion::SUnionStore;
    b"sdiffstore" => -3, sunion::SDiffStore;
    b"lpush" => -3, lpush::LPush;
    b"rpush" => -3, lpush::RPush;
    b"lpushx" => -3, lpush::LPushX;
    b"rpushx" => -3, lpush::RPushX;
    b"lpop" => -2, lpop::LPop;
    b"rpop" => -2, lpop::RPop;
    b"lset" => 4, lset::LSet;
    b"linsert" => 5, linsert::LInsert;
    b"lrem" => 4, lrem::LRem;
    b"ltrim" => 4, ltrim::LTrim;
    b"lmove" => 5, lmove::LMove;
    b"rpoplpush" => 3, lmove::RPopLPush;
    b"lmpop" => -4, lmpop::LMPop;
    // A blocking pop in the log is one attempt (the server waits and
    // proposes it again): docs/design/datatypes.md, "Blocking pops".
    b"blpop" => -3, blpop::BLPop;
    b"brpop" => -3, blpop::BRPop;
    b"blmove" => 6, blpop::BLMove;
    b"brpoplpush" => 4, blpop::BRPopLPush;
    b"blmpop" => -5, blpop::BLMPop;
    b"zadd" => -4, zadd::ZAdd<false>;
    b"zincrby" => 4, zadd::ZIncrBy;
    b"zrem" => -3, zrem::ZRem;
    b"zremrangebyrank" => 4, zrange::ZRemRangeByRank;
    b"zremrangebyscore" => 4, zrange::ZRemRangeByScore;
    b"zremrangebylex" => 4, zrange::ZRemRangeByLex;
    b"zrangestore" => -5, zrange::ZRangeStore;
    b"zunionstore" => -4, zunion::ZUnionStore;
    b"zinterstore" => -4, zunion::ZInterStore;
    b"zdiffstore" => -4, zunion::ZDiffStore;
    b"zpopmin" => -2, zpop::ZPopMin;
    b"zpopmax" => -2, zpop::ZPopMax;
    b"zmpop" => -4, zpop::ZMPop;
    b"bzpopmin" => -3, zpop::BZPopMin;
    b"bzpopmax" => -3, zpop::BZPopMax;
    b"bzmpop" => -5, zpop::BZMPop;
    b"cairn.expired" => -1, expired::Expired;
    b"cairn.evict" => -1, evict::Evict;
    b"lock.acquire" => -4, lock_acquire::LockAcquire<false>;
    b"sem.acquire" => -6, lock_acquire::SemAcquire;
    b"lock.dequeue" => 3, lock_dequeue::LockDequeue;
    b"lock.renew" => 5, lock_renew::LockRenew;
    b"lock.release" => 4, lock_release::LockRelease;
    b"cairn.lockexpire" => -3, lock_expire::LockExpire;
    b"lock.forcerelease" => 2, lock_forcerelease::LockForceRelease;
    b"cairn.exec" => -3, exec::Exec;
}

/// The reads a transaction may hold besides the writes above: applied
/// with the transaction's entry on every replica (only the reply of the
/// node that answers the client matters).
macro_rules! tx_reads {
    ($($name:literal => $arity:expr, $t:ty;)*) => {
        fn read_arity(name: &[u8]) -> Option<i32> {
            match name {
                $($name => Some($arity),)*
                b"ping" => Some(-1),
                b"echo" => Some(2),
                _ => None,
            }
        }

        /// Applies a read of a transaction (`name` lowercased, arity
        /// checked); false when `name` is not one.
        fn apply_read(db: &mut impl Db, name: &[u8], argv: &[&[u8]], now_ms: u64, out: &mut impl Reply) -> bool {
            let r = match name {
                $($name => parse::<$t>(argv, $arity).map(|c| c.apply(db, now_ms, out)),)*
                b"ping" => {
                    match argv.get(1) {
                        None => out.simple("PONG"),
                        Some(m) if argv.len() == 2 => out.bulk(m),
                        Some(_) => out.error("ERR wrong number of arguments for 'ping' command"),
                    }
                    Ok(())
                }
                b"echo" => {
                    out.bulk(argv[1]);
                    Ok(())
                }
                _ => return false,
            };
            if let Err(e) = r {
                out.error(&e);
            }
            true
        }
    };
}

tx_reads! {
    b"get" => 2, get::Get;
    b"mget" => -2, mget::MGet;
    b"strlen" => 2, strlen::StrLen;
    b"getrange" => 4, getrange::GetRange;
    b"getbit" => 3, getbit::GetBit;
    b"bitcount" => -2, bitcount::BitCount;
    b"bitpos" => -3, bitpos::BitPos;
    b"bitfield_ro" => -2, bitfield::BitFieldRo;
    b"lcs" => -3, lcs::Lcs;
    b"exists" => -2, exists::Exists;
    b"touch" => -2, touch::Touch;
    b"type" => 2, type_::Type;
    b"ttl" => 2, ttl::Ttl<0>;
    b"pttl" => 2, ttl::PTtl;
    b"expiretime" => 2, ttl::ExpireTime;
    b"pexpiretime" => 2, ttl::PExpireTime;
    b"hget" => 3, hget::HGet;
    b"hmget" => -3, hmget::HMGet;
    b"hlen" => 2, hlen::HLen;
    b"hstrlen" => 3, hstrlen::HStrLen;
    b"httl" => -5, httl::HTtl<0>;
    b"hpttl" => -5, httl::HPTtl;
    b"hexpiretime" => -5, httl::HExpireTime;
    b"hpexpiretime" => -5, httl::HPExpireTime;
    b"hexists" => 3, hexists::HExists;
    b"hkeys" => 2, hgetall::HKeys;
    b"hvals" => 2, hgetall::HVals;
    b"hgetall" => 2, hgetall::HGetAll<3>;
    b"hrandfield" => -2, hrandfield::HRandField;
    b"hscan" => -3, hscan::HScan;
    b"scard" => 2, scard::SCard;
    b"sismember" => 3, sismember::SIsMember<false>;
    b"smismember" => -3, sismember::SMIsMember;
    b"smembers" => 2, smembers::SMembers;
    b"srandmember" => -2, srandmember::SRandMember;
    b"sinter" => -2, sinter::SInter<false>;
    b"sintercard" => -3, sintercard::SInterCard;
    b"sunion" => -2, sunion::SUnion<{ sunion::UNION }, false>;
    b"sdiff" => -2, sunion::SDiff;
    b"sscan" => -3, sscan::SScan;
    b"llen" => 2, llen::LLen;
    b"lrange" => 4, lrange::LRange;
    b"lindex" => 3, lindex::LIndex;
    b"lpos" => -3, lpos::LPos;
    b"zcard" => 2, zscore::ZCard;
    b"zscore" => 3, zscore::ZScore<false>;
    b"zmscore" => -3, zscore::ZMScore;
    b"zrank" => 3, zscore::ZRank<false>;
    b"zrevrank" => 3, zscore::ZRevRank;
    b"zcount" => 4, zrange::ZCount<false>;
    b"zlexcount" => 4, zrange::ZLexCount;
    b"zrange" => -4, zrange::ZRange;
    b"zrevrange" => -4, zrange::ZRevRange;
    b"zrangebyscore" => -4, zrange::ZRangeByScore;
    b"zrevrangebyscore" => -4, zrange::ZRevRangeByScore;
    b"zrangebylex" => -4, zrange::ZRangeByLex;
    b"zrevrangebylex" => -4, zrange::ZRevRangeByLex;
    b"zunion" => -3, zunion::ZUnion;
    b"zinter" => -3, zunion::ZInter;
    b"zdiff" => -3, zunion::ZDiff;
    b"zintercard" => -3, zunion::ZInterCard;
    b"zrandmember" => -2, zrandmember::ZRandMember;
    b"zscan" => -3, zscan::ZScan;
    b"lock.info" => 2, lock_info::LockInfo;
    b"sem.info" => 2, sem_info::SemInfo;
    b"lock.fence" => 3, lock_fence::LockFence;
}

/// Whether `argv` may be one of a transaction's commands: a write or a
/// read of the keyspace (not cairn's internal entries, not FLUSHALL,
/// which spans groups, not a nested transaction), with a valid arity,
/// and not a wait (LOCK.ACQUIRE ... WAIT cannot wait inside one entry).
/// Syntax errors are not checked: as in Redis they are the command's
/// reply inside EXEC's.
pub fn check_in_tx(argv: &[&[u8]]) -> Result<(), String> {
    let mut buf = [0u8; 24];
    let name = lower_name(argv, &mut buf)?;
    let internal = name.starts_with(b"cairn.") || name == b"flushall" || name == b"flushdb";
    let arity = if internal {
        None
    } else {
        arity(name).or_else(|| read_arity(name))
    };
    let Some(a) = arity else {
        return Err(format!(
            "ERR '{}' is not allowed in a transaction",
            String::from_utf8_lossy(argv[0]).to_ascii_lowercase()
        ));
    };
    let n = argv.len() as i64;
    let a = i64::from(a);
    if (a >= 0 && n != a) || (a < 0 && n < -a) {
        return Err(cmd::wrong_arity(&String::from_utf8_lossy(argv[0]))
            .0
            .into_owned());
    }
    if (name == b"lock.acquire" && argv.len() > 4) || (name == b"sem.acquire" && argv.len() > 6) {
        return Err("ERR LOCK.ACQUIRE and SEM.ACQUIRE cannot WAIT inside a transaction".into());
    }
    Ok(())
}

/// Applies one command of a transaction (see [`check_in_tx`]).
pub fn apply_in_tx(db: &mut impl Db, argv: &[&[u8]], now_ms: u64, out: &mut impl Reply) {
    if let Err(e) = check_in_tx(argv) {
        return out.error(&e);
    }
    let mut buf = [0u8; 24];
    let Ok(name) = lower_name(argv, &mut buf) else {
        return out.error("ERR empty command");
    };
    if !apply_read(db, name, argv, now_ms, out) {
        apply_argv(db, argv, now_ms, out);
    }
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
    fn lock_commands_take_their_tokens_from_the_stamp() {
        let mut ks = Keyspace::new(7);
        let acquire: &[&[u8]] = &[b"LOCK.ACQUIRE", b"l", b"me", b"1000"];
        // No stamp (not applied by a host that sets one): refused.
        assert!(matches!(run(&mut ks, acquire, 1), Frame::Error(_)));
        ks.locks.set_stamp(42, 3);
        let token = (42 << 16) + 3;
        assert_eq!(run(&mut ks, acquire, 1), Frame::Integer(token));
        ks.locks.set_stamp(43, 0);
        let other: &[&[u8]] = &[b"lock.acquire", b"l", b"you", b"1000"];
        assert_eq!(run(&mut ks, other, 2), Frame::Null);
        let t = token.to_string();
        let renew: &[&[u8]] = &[b"LOCK.RENEW", b"l", b"you", t.as_bytes(), b"10"];
        assert!(matches!(run(&mut ks, renew, 2), Frame::Error(e) if e.starts_with(b"LOCKLOST")));
        let release: &[&[u8]] = &[b"LOCK.RELEASE", b"l", b"me", t.as_bytes()];
        assert_eq!(run(&mut ks, release, 3), Frame::Integer(1));
        assert_eq!(run(&mut ks, release, 3), Frame::Integer(0));
        for bad in [
            &[&b"LOCK.ACQUIRE"[..], b"l", b"me", b"0"][..],
            &[b"LOCK.ACQUIRE", b"l", b"me", b"-5"],
            &[b"LOCK.ACQUIRE", b"l", b"me", b"86400001"],
            &[b"LOCK.ACQUIRE", b"l", b"", b"10"],
            &[b"LOCK.ACQUIRE", b"l", b"me"],
            &[b"LOCK.RELEASE", b"l", b"me", b"-1"],
            &[b"LOCK.RELEASE", b"l", b"me", b"x"],
            &[b"CAIRN.LOCKEXPIRE", b"l"],
        ] {
            assert!(check_argv(bad, 1).is_err(), "{bad:?} accepted");
            assert!(matches!(run(&mut ks, bad, 4), Frame::Error(_)), "{bad:?}");
        }
        assert!(ks.locks.is_empty());
    }

    #[test]
    fn a_fenced_set_writes_only_while_its_token_holds() {
        let mut ks = Keyspace::new(7);
        ks.locks.set_stamp(5, 0);
        let t = (5u64 << 16).to_string();
        let acquire: &[&[u8]] = &[b"LOCK.ACQUIRE", b"{j}:lock", b"a", b"1000"];
        assert_eq!(run(&mut ks, acquire, 1), Frame::Integer(5 << 16));
        let set: &[&[u8]] = &[
            b"SET",
            b"{j}:data",
            b"1",
            b"FENCE",
            b"{j}:lock",
            t.as_bytes(),
        ];
        assert_eq!(run(&mut ks, set, 2), Frame::Simple(b"OK".to_vec()));
        // An older token (a former holder): refused, nothing written.
        let stale: &[&[u8]] = &[b"SET", b"{j}:data", b"2", b"FENCE", b"{j}:lock", b"12"];
        assert!(matches!(run(&mut ks, stale, 3), Frame::Error(e) if e.starts_with(b"FENCED")));
        assert_eq!(
            ks.get(b"{j}:data", 3).map(|v| v.to_vec()),
            Some(b"1".to_vec())
        );
        // The lock released: even the last holder's token is refused.
        let release: &[&[u8]] = &[b"LOCK.RELEASE", b"{j}:lock", b"a", t.as_bytes()];
        assert_eq!(run(&mut ks, release, 4), Frame::Integer(1));
        assert!(matches!(run(&mut ks, set, 5), Frame::Error(e) if e.starts_with(b"FENCED")));
        // Lock and key in different slots, or a bad token: refused before
        // anything is proposed.
        for bad in [
            &[&b"SET"[..], b"data", b"1", b"FENCE", b"lock", t.as_bytes()][..],
            &[b"SET", b"{j}:data", b"1", b"FENCE", b"{j}:lock", b"-1"],
            &[b"SET", b"{j}:data", b"1", b"FENCE", b"{j}:lock"],
        ] {
            assert!(check_argv(bad, 1).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ks.get(b"{j}:data", 6).map(|v| v.to_vec()),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn every_replicated_name_is_applied() {
        assert_eq!(NAMES.len(), 94);
        for name in NAMES {
            assert!(arity(name.to_uppercase().as_bytes()).is_some(), "{name}");
            let mut ks = Keyspace::new(1);
            let r = run(&mut ks, &[name.as_bytes()], 1);
            if name.starts_with("flush")
                || (name.starts_with("cairn.") && arity(name.as_bytes()) == Some(-1))
            {
                assert!(check_argv(&[name.as_bytes()], 1).is_ok());
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
            assert!(check_argv(&[name.as_bytes()], 1).is_err_and(|e| e.contains("wrong number")));
        }
        assert_eq!(arity(b"get"), None);
    }

    #[test]
    fn check_gives_the_error_apply_would_and_changes_nothing() {
        let bad: &[&[&[u8]]] = &[
            &[b"SET", b"k", b"v", b"BOGUS"],
            &[b"SET", b"k", b"v", b"EX", b"0"],
            &[b"SET", b"k", b"v", b"NX", b"XX"],
            &[b"EXPIRE", b"k", b"ten"],
            &[b"INCRBY", b"k", b"x"],
            &[b"GETEX", b"k", b"PERSIST", b"EX", b"1"],
            &[b"MSET", b"a", b"1", b"b"],
            &[b"EXPIRE", b"k", b"9223372036854775807"],
            &[b"SETEX", b"k", b"0", b"v"],
            &[b"GETEX", b"k", b"PX", b"-1"],
            &[b"NOPE", b"k"],
        ];
        for argv in bad {
            let mut ks = Keyspace::new(1);
            let Err(e) = check_argv(argv, 1) else {
                panic!("{:?} passed the check", argv)
            };
            match run(&mut ks, argv, 1) {
                Frame::Error(applied) => assert_eq!(e.as_bytes(), &applied[..]),
                other => panic!("{argv:?}: {other:?}"),
            }
            assert!(ks.is_empty());
        }
        assert!(check_argv(&[b"set", b"k", b"v", b"px", b"10", b"get"], 1).is_ok());
        assert!(check_argv(&[b"incrby", b"k", b"-5"], 1).is_ok());
        assert!(check_argv(&[b"expire", b"k", b"-5"], 1).is_ok());
    }

    fn argvs(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    fn exec(ks: &mut Keyspace, parts: &[&str], now: u64) -> Frame {
        let owned = argvs(parts);
        let argv: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
        run(ks, &argv, now)
    }

    #[test]
    fn a_transaction_applies_every_command_in_order_and_errors_stay_in_place() {
        let mut ks = Keyspace::new(1);
        let r = exec(
            &mut ks,
            &[
                "CAIRN.EXEC",
                "k",
                "0",
                "3",
                "SET",
                "k",
                "1",
                "2",
                "INCR",
                "k",
                "2",
                "GET",
                "k",
                "3",
                "SET",
                "k",
                "v",
                "2",
                "INCR",
                "k",
                "1",
                "PING",
            ],
            1,
        );
        let Frame::Array(items) = r else {
            panic!("{r:?}")
        };
        assert_eq!(items.len(), 6);
        assert_eq!(items[1], Frame::Integer(2));
        assert_eq!(items[2], Frame::Bulk(b"2".to_vec()));
        assert!(matches!(&items[4], Frame::Error(e) if e.starts_with(b"ERR value is not")));
        assert_eq!(items[5], Frame::Simple(b"PONG".to_vec()));
        assert_eq!(ks.get(b"k", 1).map(|v| v.to_vec()), Some(b"v".to_vec()));
    }

    #[test]
    fn a_changed_watched_key_or_a_stale_fence_applies_nothing() {
        let mut ks = Keyspace::new(1);
        exec(&mut ks, &["CAIRN.EXEC", "w", "0", "3", "SET", "w", "1"], 1);
        let (v, alive) = ks.key_version(b"w", 1);
        assert!(v > 0 && alive);
        let tx = |v: u64| {
            vec![
                "CAIRN.EXEC".to_string(),
                "w".into(),
                "1".into(),
                "w".into(),
                v.to_string(),
                "1".into(),
                "3".into(),
                "SET".into(),
                "out".into(),
                "x".into(),
            ]
        };
        // Changed since WATCH: null, nothing written.
        exec(&mut ks, &["CAIRN.EXEC", "w", "0", "3", "SET", "w", "1"], 2);
        let stale = tx(v);
        let stale: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
        assert_eq!(exec(&mut ks, &stale, 3), Frame::Null);
        assert!(ks.get(b"out", 3).is_none());
        // Unchanged: applies.
        let (v2, _) = ks.key_version(b"w", 3);
        let fresh = tx(v2);
        let fresh: Vec<&str> = fresh.iter().map(|s| s.as_str()).collect();
        assert!(matches!(exec(&mut ks, &fresh, 3), Frame::Array(_)));
        assert!(ks.get(b"out", 3).is_some());
        // A watched key that was alive and expired since: aborted.
        exec(
            &mut ks,
            &["CAIRN.EXEC", "w", "0", "5", "SET", "w", "1", "PX", "10"],
            4,
        );
        let (v3, alive) = ks.key_version(b"w", 4);
        assert!(alive);
        let late = tx(v3);
        let late: Vec<&str> = late.iter().map(|s| s.as_str()).collect();
        assert_eq!(exec(&mut ks, &late, 100), Frame::Null);
        // A fence that does not hold: -FENCED, nothing applied.
        let r = exec(
            &mut ks,
            &[
                "CAIRN.EXEC",
                "k",
                "0",
                "3",
                "SET",
                "k",
                "1",
                "3",
                "LOCK.FENCE",
                "k",
                "7",
            ],
            200,
        );
        assert!(matches!(r, Frame::Error(e) if e.starts_with(b"FENCED")));
        assert!(ks.get(b"k", 200).is_none());
    }

    #[test]
    fn a_transaction_refuses_what_it_cannot_hold() {
        for inner in [
            &["CAIRN.EXEC", "k", "0"][..],
            &["FLUSHALL"],
            &["CAIRN.EXPIRED", "k"],
            &["LOCK.ACQUIRE", "l", "me", "100", "WAIT", "10"],
            &["KEYS", "*"],
            &["GET"],
        ] {
            let argv: Vec<&[u8]> = inner.iter().map(|a| a.as_bytes()).collect();
            assert!(check_in_tx(&argv).is_err(), "{inner:?}");
        }
        let mut ks = Keyspace::new(1);
        ks.insert(b"k", crate::Value::from_bytes(b"v"), None, 0);
        for bad in [
            &["CAIRN.EXEC", "k", "1", "k", "0"][..],
            &["CAIRN.EXEC", "k", "0", "5", "SET", "k"],
            &["CAIRN.EXEC", "k", "0", "0"],
            &["CAIRN.EXEC", "k", "x"],
        ] {
            let owned = argvs(bad);
            let argv: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
            let r = check_argv(&argv, 1);
            assert!(r.is_err(), "{bad:?}");
            assert!(matches!(run(&mut ks, &argv, 1), Frame::Error(_)), "{bad:?}");
        }
        // A command a transaction cannot hold is refused before it is
        // proposed; applied anyway, it is an error in its place.
        let flush: &[&[u8]] = &[b"CAIRN.EXEC", b"k", b"0", b"1", b"FLUSHALL"];
        assert!(check_argv(flush, 1).is_err());
        assert!(matches!(
            run(&mut ks, flush, 1),
            Frame::Array(items) if matches!(&items[0], Frame::Error(_))
        ));
        assert_eq!(ks.len(), 1);
    }

    #[test]
    fn fences_guard_del_and_incrby() {
        let mut ks = Keyspace::new(1);
        ks.locks.set_stamp(9, 0);
        assert_eq!(
            exec(&mut ks, &["SET", "{j}n", "5"], 1),
            Frame::Simple(b"OK".to_vec())
        );
        let t = (9u64 << 16).to_string();
        assert_eq!(
            exec(&mut ks, &["LOCK.ACQUIRE", "{j}l", "me", "10000"], 1),
            Frame::Integer(9 << 16)
        );
        let stale = ((9u64 << 16) - 1).to_string();
        let fenced = |r: Frame| matches!(r, Frame::Error(e) if e.starts_with(b"FENCED"));
        assert!(fenced(exec(
            &mut ks,
            &["INCRBY", "{j}n", "1", "FENCE", "{j}l", &stale],
            2
        )));
        assert!(fenced(exec(
            &mut ks,
            &["DEL", "{j}n", "FENCE", "{j}l", &stale],
            2
        )));
        assert_eq!(
            exec(&mut ks, &["INCRBY", "{j}n", "1", "FENCE", "{j}l", &t], 2),
            Frame::Integer(6)
        );
        assert_eq!(
            exec(&mut ks, &["DECRBY", "{j}n", "2", "FENCE", "{j}l", &t], 2),
            Frame::Integer(4)
        );
        assert!(matches!(
            exec(&mut ks, &["INCRBY", "{j}n", "1", "FENCE", "other", &t], 2),
            Frame::Error(e) if e.starts_with(b"CROSSSLOT")
        ));
        assert!(matches!(
            exec(&mut ks, &["INCRBY", "{j}n", "1", "FENCX", "{j}l", &t], 2),
            Frame::Error(e) if e.starts_with(b"ERR syntax")
        ));
        assert_eq!(
            exec(&mut ks, &["DEL", "{j}n", "FENCE", "{j}l", &t], 3),
            Frame::Integer(1)
        );
        // UNLINK never reads a fence: these are four keys.
        assert_eq!(
            exec(&mut ks, &["UNLINK", "a", "FENCE", "{j}l", &t], 3),
            Frame::Integer(0)
        );
    }
}
