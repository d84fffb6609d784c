//! Sorted-set commands side by side with redis-server: the same sequence,
//! error cases included, must give identical replies (docs/design/
//! datatypes.md, "Sorted sets"; docs/COMPATIBILITY.md), played twice:
//! RESP2 (scores as bulk strings in `%.17g`) and RESP3 (scores as
//! doubles, WITHSCORES pairs nested). The reference is redis-server 7.0,
//! whose zsets have the same two encodings and thresholds as cairn's, so
//! OBJECT ENCODING is compared directly.
//!
//! Modes (a prefix before `: `):
//! * `len:` compares only how many items a reply holds (random draws).
//! * `sort:` compares a reply with its items sorted (ZSCAN of a skiplist,
//!   whose order is each server's own table order).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use redis::Value;

mod common;

use common::{connect, scan_all, send as cmd, Played, Reference, Server};

fn sorted(v: Value) -> Value {
    match v {
        Value::Array(items) if items.len() == 2 && matches!(items[1], Value::Array(_)) => {
            let mut it = items.into_iter();
            let cursor = it.next().unwrap_or(Value::Nil);
            Value::Array(vec![cursor, sorted(it.next().unwrap_or(Value::Nil))])
        }
        Value::Array(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Array(items)
        }
        other => other,
    }
}

fn play(url: &str, script: &[String]) -> Played {
    let mut c = connect(url);
    // A reply that never completes (a miscounted array) fails the line
    // instead of hanging the test.
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    cmd(&mut c, &["FLUSHALL".into()]).expect("flush");
    script
        .iter()
        .map(|line| {
            let (mode, text) = match line.split_once(": ") {
                Some((m, t)) if m == "sort" || m == "len" => (m, t),
                _ => ("", line.as_str()),
            };
            let args: Vec<String> = text.split(' ').map(String::from).collect();
            let r = cmd(&mut c, &args).map(|v| match mode {
                "sort" => sorted(v),
                "len" => match v {
                    Value::Array(items) => Value::Int(items.len() as i64),
                    Value::Nil => Value::Int(0),
                    _ => Value::Int(1),
                },
                _ => v,
            });
            (line.clone(), r)
        })
        .collect()
}

fn script() -> Vec<String> {
    let long = "x".repeat(65);
    let edge = "y".repeat(64);
    // 128 and 129 members with scores that repeat (ties ordered by member).
    let pairs = |n: usize| -> String {
        (0..n)
            .map(|i| format!("{} m{i:03}", i % 10))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s: Vec<String> = [
        // ZADD and its options
        "ZADD z 1 a 2 b 3 c",
        "ZADD z 1 a",
        "ZADD z 10 a",
        "ZADD z CH 11 a 12 b 4 d",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZADD z NX 100 a 5 e",
        "ZADD z XX 100 a 6 f",
        "ZADD z XX CH 100 a 6 f",
        "ZSCORE z a",
        "ZSCORE z f",
        "ZADD z GT 50 a",
        "ZADD z GT CH 150 a",
        "ZADD z LT CH 150 a 1 b",
        "ZADD z LT 200 a",
        "ZADD z XX GT CH 300 a 0 b",
        "ZADD z GT CH 7 new",
        "ZADD z nx xx 1 a",
        "ZADD z NX GT 1 a",
        "ZADD z NX LT 1 a",
        "ZADD z GT LT 1 a",
        "ZADD z INCR 1 a 2 b",
        "ZADD z 1",
        "ZADD z 1 a 2",
        "ZADD z NX",
        "ZADD z nan a",
        "ZADD z abc a",
        "ZADD z 1 a abc b",
        "ZADD z 1e400 a",
        "ZADD z 1e-400 a",
        "ZADD z 0x10 hex",
        "ZADD z +1.5 plus",
        "ZADD z .5 half",
        "ZADD z -0 negzero",
        "ZADD z 4.9e-324 tiny",
        "ZADD z inf top",
        "ZADD z -Infinity bottom",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZCARD z",
        "ZADD z INCR 5 a",
        "ZADD z INCR NX 5 a",
        "ZADD z INCR XX 5 nope",
        "ZADD z INCR GT -1 a",
        "ZADD z INCR LT -1 a",
        "ZADD z INCR 1.1 fresh",
        "ZADD z INCR -inf top",
        "ZADD z INCR inf bottom",
        "ZADD nokey XX 1 a",
        "ZADD nokey XX INCR 1 a",
        "EXISTS nokey",
        "ZADD nokey GT 1 a",
        "ZRANGE nokey 0 -1 WITHSCORES",
        // ZINCRBY
        "ZINCRBY z 2.5 c",
        "ZINCRBY z 1 newbie",
        "ZINCRBY z abc c",
        "ZINCRBY z nx c",
        "ZINCRBY z -inf top",
        "ZINCRBY zi 3 m",
        "ZINCRBY zi 0.1 m",
        "ZINCRBY zi 0.2 m",
        "ZSCORE zi m",
        // reads
        "ZSCORE z nope",
        "ZSCORE missing a",
        "ZMSCORE z a nope c negzero",
        "ZMSCORE missing a b",
        "ZRANK z a",
        "ZRANK z nope",
        "ZREVRANK z a",
        "ZREVRANK z bottom",
        "ZRANK missing a",
        "ZCARD missing",
        // ranges by rank
        "DEL r",
        "ZADD r 1 a 2 b 3 c 4 d 5 e 6 f",
        "ZRANGE r 0 -1",
        "ZRANGE r 1 3",
        "ZRANGE r -2 -1",
        "ZRANGE r -100 100",
        "ZRANGE r 4 2",
        "ZRANGE r 10 20",
        "ZRANGE r -1 -100",
        "ZRANGE r 0 0 WITHSCORES",
        "ZRANGE r 0 -1 REV",
        "ZRANGE r 0 1 REV WITHSCORES",
        "ZREVRANGE r 0 2",
        "ZREVRANGE r 0 -1 WITHSCORES",
        "ZREVRANGE r -2 -1",
        "ZRANGE r 0 -1 LIMIT 0 1",
        "ZRANGE r 0 -1 LIMIT 0 -1",
        "ZRANGE r a b",
        "ZRANGE r 0 1 BOGUS",
        "ZRANGE r 0 1 LIMIT 0",
        "ZRANGE r 0 1 LIMIT x 1",
        "ZRANGE r 0 -9223372036854775808",
        "ZRANGE r -9223372036854775808 9223372036854775807",
        "ZREVRANGE r 0 1 REV",
        "ZREVRANGE r 0 1 BYSCORE",
        "ZRANGE missing 0 -1",
        "ZRANGE missing a b",
        // ranges by score
        "ZRANGE r 2 4 BYSCORE",
        "ZRANGE r (2 4 BYSCORE",
        "ZRANGE r 2 (4 BYSCORE WITHSCORES",
        "ZRANGE r -inf +inf BYSCORE",
        "ZRANGE r (1 (1 BYSCORE",
        "ZRANGE r 1 1 BYSCORE",
        "ZRANGE r 5 2 BYSCORE",
        "ZRANGE r 5 2 BYSCORE REV",
        "ZRANGE r +inf -inf BYSCORE REV LIMIT 1 2",
        "ZRANGE r -inf +inf BYSCORE LIMIT 2 2",
        "ZRANGE r -inf +inf BYSCORE LIMIT 2 -1",
        "ZRANGE r -inf +inf BYSCORE LIMIT -1 2",
        "ZRANGE r -inf +inf BYSCORE LIMIT 10 2",
        "ZRANGE r -inf +inf BYSCORE LIMIT 0 0",
        "ZRANGE r -inf +inf BYSCORE LIMIT 5 9223372036854775807",
        "ZRANGE r -inf +inf BYSCORE LIMIT 1 1 LIMIT 3 1",
        "ZRANGE r a b BYSCORE",
        "ZRANGE r 1 x BYSCORE",
        "ZRANGE r ( 3 BYSCORE",
        "ZRANGE r 1e400 inf BYSCORE",
        "ZRANGE r 0x2 0x3 BYSCORE",
        "ZRANGE r 1 2 BYSCORE BYLEX",
        "ZRANGE r 1 2 BYSCORE BYSCORE",
        "ZRANGE r 1 2 REV REV",
        "ZRANGEBYSCORE r 2 4",
        "ZRANGEBYSCORE r 2 4 WITHSCORES LIMIT 1 5",
        "ZRANGEBYSCORE r -inf +inf LIMIT 1 2 WITHSCORES",
        "ZRANGEBYSCORE r 2 4 REV",
        "ZRANGEBYSCORE r 2 4 BYSCORE",
        "ZRANGEBYSCORE r 2 nope",
        "ZRANGEBYSCORE missing 2 nope",
        "ZRANGEBYSCORE missing 2 4",
        "ZREVRANGEBYSCORE r 4 2",
        "ZREVRANGEBYSCORE r 4 2 WITHSCORES",
        "ZREVRANGEBYSCORE r +inf -inf LIMIT 0 3",
        "ZREVRANGEBYSCORE r (4 (2",
        "ZREVRANGEBYSCORE r 2 4",
        // lex ranges (equal scores)
        "ZADD lex 0 a 0 b 0 c 0 d 0 e 0 foo 0 zap",
        "ZRANGEBYLEX lex - +",
        "ZRANGEBYLEX lex [b (e",
        "ZRANGEBYLEX lex (b [e",
        "ZRANGEBYLEX lex [bb +",
        "ZRANGEBYLEX lex - [c LIMIT 1 1",
        "ZRANGEBYLEX lex + -",
        "ZRANGEBYLEX lex [e [b",
        "ZRANGEBYLEX lex [c [c",
        "ZRANGEBYLEX lex (c [c",
        "ZRANGEBYLEX lex - + LIMIT -1 3",
        "ZRANGEBYLEX lex - + LIMIT 2 -5",
        "ZRANGEBYLEX lex b c",
        "ZRANGEBYLEX lex [b",
        "ZRANGEBYLEX lex [a [z WITHSCORES",
        "ZRANGEBYLEX lex [a [z BYLEX",
        "ZRANGEBYLEX lex -x +",
        "ZRANGEBYLEX lex - ++",
        "ZREVRANGEBYLEX lex + -",
        "ZREVRANGEBYLEX lex [e (b",
        "ZREVRANGEBYLEX lex + - LIMIT 1 2",
        "ZRANGE lex [b [d BYLEX",
        "ZRANGE lex [d [b BYLEX REV",
        "ZRANGE lex [b [d BYLEX WITHSCORES",
        "ZRANGE lex - + BYLEX LIMIT 1 3",
        "ZRANGE lex x y BYLEX",
        "ZRANGEBYLEX missing - +",
        "ZRANGEBYLEX missing x y",
        "ZLEXCOUNT lex - +",
        "ZLEXCOUNT lex [b (e",
        "ZLEXCOUNT lex [e [b",
        "ZLEXCOUNT lex b c",
        "ZLEXCOUNT missing - +",
        "ZCOUNT r -inf +inf",
        "ZCOUNT r (1 3",
        "ZCOUNT r 3 1",
        "ZCOUNT r x 1",
        "ZCOUNT missing 1 2",
        "ZCOUNT r  ",
        "ZCOUNT r  1",
        // ZRANGESTORE
        "ZRANGESTORE dst r 0 2",
        "ZRANGE dst 0 -1 WITHSCORES",
        "OBJECT ENCODING dst",
        "ZRANGESTORE dst r 2 4 BYSCORE REV",
        "ZRANGE dst 0 -1 WITHSCORES",
        "ZRANGESTORE dst r 0 -1 BYSCORE",
        "ZRANGESTORE dst r -inf +inf BYSCORE LIMIT 1 2",
        "ZRANGE dst 0 -1",
        "ZRANGESTORE dst lex [b [d BYLEX",
        "ZRANGE dst 0 -1 WITHSCORES",
        "EXPIRE dst 100",
        "ZRANGESTORE dst r 0 0",
        "TTL dst",
        "ZRANGESTORE dst r 5 1",
        "EXISTS dst",
        "ZRANGESTORE dst missing 0 -1",
        "ZRANGESTORE dst r 0 1 WITHSCORES",
        "ZRANGESTORE dst r 0 1 LIMIT 0 1",
        "ZRANGESTORE dst r",
        "ZRANGESTORE r r 0 1",
        "ZRANGE r 0 -1",
        "ZADD r 3 c 4 d 5 e 6 f",
        // removals
        "ZREM r a nope",
        "ZREM r nope",
        "ZREM missing a",
        "ZADD rr 1 a 2 b 3 c 4 d 5 e 6 f 7 g",
        "ZREMRANGEBYRANK rr 0 0",
        "ZREMRANGEBYRANK rr -2 -1",
        "ZREMRANGEBYRANK rr 5 1",
        "ZREMRANGEBYRANK rr 10 20",
        "ZREMRANGEBYRANK rr a 1",
        "ZREMRANGEBYRANK missing 0 -1",
        "ZRANGE rr 0 -1",
        "ZREMRANGEBYSCORE rr (2 4",
        "ZREMRANGEBYSCORE rr 5 1",
        "ZREMRANGEBYSCORE rr a 1",
        "ZREMRANGEBYSCORE missing 1 2",
        "ZRANGE rr 0 -1 WITHSCORES",
        "ZADD rl 0 a 0 b 0 c 0 d",
        "ZREMRANGEBYLEX rl [b (d",
        "ZREMRANGEBYLEX rl x y",
        "ZREMRANGEBYLEX rl + -",
        "ZREMRANGEBYLEX missing - +",
        "ZRANGE rl 0 -1",
        "ZREMRANGEBYLEX rl - +",
        "EXISTS rl",
        "ZREMRANGEBYSCORE rr -inf +inf",
        "EXISTS rr",
        // pops
        "ZADD p 1 a 2 b 3 c 4 d 5 e",
        "ZPOPMIN p",
        "ZPOPMAX p",
        "ZPOPMIN p 2",
        "ZPOPMIN p 0",
        "ZPOPMAX p 10",
        "EXISTS p",
        "ZPOPMIN p",
        "ZPOPMIN p 3",
        "ZPOPMIN missing 0",
        "ZPOPMIN p -1",
        "ZPOPMIN p x",
        "ZPOPMIN p 1 2",
        "ZADD p 1 a 2 b",
        "ZPOPMIN p -1",
        "ZPOPMAX p 9223372036854775807",
        "ZADD m1 1 a 2 b 3 c",
        "ZADD m2 10 x",
        "ZMPOP 2 missing m1 MIN",
        "ZMPOP 2 m1 m2 MAX COUNT 2",
        "ZMPOP 1 m1 min count 10",
        "ZMPOP 1 m1 MIN",
        "ZMPOP 2 missing nothing MIN",
        "ZMPOP 0 m2 MIN",
        "ZMPOP -1 m2 MIN",
        "ZMPOP x m2 MIN",
        "ZMPOP 1 m2",
        "ZMPOP 1 m2 MIDDLE",
        "ZMPOP 2 m2 MIN",
        "ZMPOP 1 m2 MIN COUNT 0",
        "ZMPOP 1 m2 MIN COUNT -1",
        "ZMPOP 1 m2 MIN COUNT x",
        "ZMPOP 1 m2 MIN COUNT 1 COUNT 1",
        "ZMPOP 1 m2 MIN COUNT",
        "ZMPOP 1 m2 MIN BOGUS 1",
        "ZMPOP 5 m2 MIN",
        "ZMPOP 1 m2 MAX",
        "ZADD m2 1 y",
        "BZPOPMIN m2 0",
        "ZADD bz 1 a 2 b",
        "BZPOPMIN missing bz 0",
        "BZPOPMAX bz 0",
        "BZPOPMIN bz 0.01",
        "BZPOPMIN bz 0.01",
        "BZPOPMIN bz -1",
        "BZPOPMIN bz abc",
        "BZPOPMIN bz",
        "ZADD bz 1 a 2 b 3 c",
        "BZMPOP 0 2 missing bz MAX COUNT 2",
        "BZMPOP 0.01 1 missing MIN",
        "BZMPOP -1 1 bz MIN",
        "BZMPOP x 1 bz MIN",
        "BZMPOP 0 0 bz MIN",
        "BZMPOP 0 1 bz SIDE",
        "BZMPOP x 1 bz SIDE",
        "BZMPOP 0 1 bz MIN COUNT 0",
        "BZMPOP 0 1 bz MIN",
        // algebra
        "DEL a b c",
        "ZADD a 1 x 2 y 3 z",
        "ZADD b 10 y 20 z 30 w",
        "SADD c y w v",
        "ZUNION 2 a b",
        "ZUNION 2 a b WITHSCORES",
        "ZUNION 3 a b c WITHSCORES",
        "ZUNION 2 a b WEIGHTS 2 0.5 WITHSCORES",
        "ZUNION 2 a b AGGREGATE MIN WITHSCORES",
        "ZUNION 2 a b AGGREGATE max WITHSCORES",
        "ZUNION 2 a b WEIGHTS 1 inf WITHSCORES",
        "ZUNION 2 a b WEIGHTS 0 inf WITHSCORES",
        "ZUNION 2 a missing WITHSCORES",
        "ZUNION 1 missing",
        "ZINTER 2 a b WITHSCORES",
        "ZINTER 3 a b c WITHSCORES",
        "ZINTER 2 a b AGGREGATE MAX WEIGHTS 1 -1 WITHSCORES",
        "ZINTER 2 a missing",
        "ZINTER 2 a a WITHSCORES",
        "ZDIFF 2 a b WITHSCORES",
        "ZDIFF 2 b a",
        "ZDIFF 3 b a c WITHSCORES",
        "ZDIFF 2 missing a",
        "ZDIFF 1 a WITHSCORES",
        "ZINTERCARD 2 a b",
        "ZINTERCARD 3 a b c",
        "ZINTERCARD 2 a b LIMIT 1",
        "ZINTERCARD 2 a b LIMIT 0",
        "ZINTERCARD 2 a missing",
        "ZUNIONSTORE d 2 a b",
        "ZRANGE d 0 -1 WITHSCORES",
        "OBJECT ENCODING d",
        "ZINTERSTORE d 2 a b WEIGHTS 2 3",
        "ZRANGE d 0 -1 WITHSCORES",
        "ZDIFFSTORE d 2 a b",
        "ZRANGE d 0 -1 WITHSCORES",
        "EXPIRE d 100",
        "ZUNIONSTORE d 1 a",
        "TTL d",
        "ZINTERSTORE d 2 a missing",
        "EXISTS d",
        "ZUNIONSTORE a 2 a b",
        "ZRANGE a 0 -1 WITHSCORES",
        "ZDIFFSTORE d 1 c",
        "ZRANGE d 0 -1 WITHSCORES",
        // algebra arguments
        "ZUNION 0 a",
        "ZINTER -1 a",
        "ZUNIONSTORE d 0 a",
        "ZINTERSTORE d 0 a",
        "ZDIFFSTORE d 0 a",
        "ZDIFF 0 a",
        "ZINTERCARD 0 a",
        "ZUNION x a",
        "ZUNION 3 a b",
        "ZUNION 9223372036854775807 a",
        "ZUNION 2 a b WEIGHTS 1",
        "ZUNION 2 a b WEIGHTS 1 x",
        "ZUNION 2 a b WEIGHTS 1 nan",
        "ZUNION 2 a b AGGREGATE",
        "ZUNION 2 a b AGGREGATE avg",
        "ZUNION 2 a b BOGUS",
        "ZUNIONSTORE d 2 a b WITHSCORES",
        "ZDIFF 2 a b WEIGHTS 1 2",
        "ZDIFF 2 a b AGGREGATE SUM",
        "ZINTERCARD 2 a b WITHSCORES",
        "ZINTERCARD 2 a b WEIGHTS 1 1",
        "ZINTERCARD 2 a b LIMIT -1",
        "ZINTERCARD 2 a b LIMIT x",
        "ZINTERCARD 2 a b LIMIT",
        "ZINTERCARD 3 a b",
        // random members that do not depend on the generator
        "ZADD one 5 only",
        "ZRANDMEMBER one",
        "ZRANDMEMBER one -3",
        "ZRANDMEMBER one -2 WITHSCORES",
        "ZRANDMEMBER one 5 WITHSCORES",
        "ZRANDMEMBER one 0",
        "ZRANDMEMBER missing",
        "ZRANDMEMBER missing 3",
        "ZRANDMEMBER a 100 WITHSCORES",
        "ZRANDMEMBER a 9223372036854775807",
        "ZRANDMEMBER a -9223372036854775808",
        "ZRANDMEMBER a 9223372036854775807 WITHSCORES",
        "ZRANDMEMBER a 1 WITHSCORE",
        "ZRANDMEMBER a 1 WITHSCORES x",
        "ZRANDMEMBER a x",
        "len: ZRANDMEMBER a 2",
        "len: ZRANDMEMBER a -10",
        "len: ZRANDMEMBER a -10 WITHSCORES",
        "len: ZRANDMEMBER a 2 WITHSCORES",
        // ZSCAN (a listpack comes back whole, in order)
        "ZSCAN a 0",
        "ZSCAN a 0 MATCH y*",
        "ZSCAN a 0 COUNT 1",
        "ZSCAN missing 0",
        "ZSCAN missing 0 COUNT 0",
        "ZSCAN a 0 COUNT 0",
        "ZSCAN a x",
        "ZSCAN a 0 BOGUS",
        "ZSCAN a 0 NOVALUES",
        "ZSCAN z 0",
        // arity
        "ZADD z",
        "ZADD z 1",
        "ZINCRBY z 1",
        "ZREM z",
        "ZCARD",
        "ZCARD z extra",
        "ZSCORE z",
        "ZSCORE z a b",
        "ZMSCORE z",
        "ZRANK z",
        "ZRANK z a WITHSCORE",
        "ZREVRANK z",
        "ZCOUNT z 1",
        "ZLEXCOUNT z -",
        "ZRANGE z 0",
        "ZRANGESTORE d z 0",
        "ZREMRANGEBYRANK z 0",
        "ZREMRANGEBYSCORE z 0 1 2",
        "ZREMRANGEBYLEX z -",
        "ZPOPMIN",
        "ZMPOP 1 z",
        "BZPOPMIN z",
        "BZMPOP 0 1 z",
        "ZUNION 1",
        "ZUNIONSTORE d 1",
        "ZINTERCARD 1",
        "ZRANDMEMBER",
        "ZSCAN z",
        // wrong types
        "SET str v",
        "HSET h f v",
        "ZADD str 1 a",
        "ZADD h 1 a",
        "ZINCRBY str 1 a",
        "ZREM str a",
        "ZCARD str",
        "ZSCORE h a",
        "ZMSCORE str a",
        "ZRANK str a",
        "ZREVRANK h a",
        "ZCOUNT str 1 2",
        "ZLEXCOUNT str - +",
        "ZRANGE str 0 -1",
        "ZRANGE str a b",
        "ZRANGEBYSCORE str 1 2",
        "ZRANGEBYLEX h - +",
        "ZRANGESTORE d str 0 -1",
        "ZRANGESTORE str a 0 -1",
        "TYPE str",
        "SET str v",
        "ZREMRANGEBYRANK str 0 1",
        "ZREMRANGEBYSCORE str 0 1",
        "ZREMRANGEBYLEX str - +",
        "ZPOPMIN str",
        "ZPOPMAX h 2",
        "ZMPOP 2 missing str MIN",
        "ZMPOP 2 a str MIN",
        "BZPOPMIN missing str 0",
        "BZMPOP 0 1 str MIN",
        "ZUNION 2 a str",
        "ZUNION 2 a str BOGUS",
        "ZUNION 2 str missing WEIGHTS x",
        "ZINTER 2 missing str",
        "ZDIFF 2 a h",
        "ZINTERCARD 2 a str",
        "ZUNIONSTORE d 2 a str",
        "ZUNIONSTORE str 1 a",
        "TYPE str",
        "SET str v",
        "ZRANDMEMBER str",
        "ZRANDMEMBER h 2",
        "ZSCAN str 0",
        "SET str v",
        "GET a",
        "SADD a m",
        "HSET a f v",
        "LPUSH a x",
        "INCR a",
        "APPEND a x",
        "SCARD a",
        "LLEN a",
        "SMEMBERS a",
        // encodings at the thresholds
        "ZADD big PAIRS128",
        "OBJECT ENCODING big",
        "ZCARD big",
        "ZADD big 1 m005",
        "OBJECT ENCODING big",
        "ZADD big 99 m999",
        "OBJECT ENCODING big",
        "ZRANGE big 0 9 WITHSCORES",
        "ZRANGE big -3 -1",
        "ZREVRANGE big 0 3 WITHSCORES",
        "ZRANK big m999",
        "ZRANK big m010",
        "ZREVRANK big m010",
        "ZCOUNT big 3 (5",
        "ZRANGEBYSCORE big (8 9 LIMIT 5 3",
        "ZREVRANGEBYSCORE big 9 (8 LIMIT 5 3 WITHSCORES",
        "ZREM big m999",
        "OBJECT ENCODING big",
        "ZADD big129 PAIRS129",
        "OBJECT ENCODING big129",
        "ZREMRANGEBYRANK big129 0 100",
        "OBJECT ENCODING big129",
        "ZRANGE big129 0 -1 WITHSCORES",
        "ZADD e 1 EDGE",
        "OBJECT ENCODING e",
        "ZADD e 2 LONG",
        "OBJECT ENCODING e",
        "ZADD l 1 LONG",
        "OBJECT ENCODING l",
        "ZADD l2 1 a 2 LONG",
        "OBJECT ENCODING l2",
        "ZADD l3 XX 1 LONG",
        "EXISTS l3",
        "ZINCRBY l4 1 LONG",
        "OBJECT ENCODING l4",
        "ZUNIONSTORE u 2 big big129",
        "OBJECT ENCODING u",
        "ZCARD u",
        "ZRANGE u 0 5 WITHSCORES",
        "ZINTERSTORE u2 2 big big129",
        "OBJECT ENCODING u2",
        "ZRANGE u2 0 -1 WITHSCORES",
        "ZUNIONSTORE u3 1 l",
        "OBJECT ENCODING u3",
        "ZRANGESTORE s1 big 0 -1",
        "OBJECT ENCODING s1",
        "ZRANGESTORE s2 big -inf +inf BYSCORE",
        "OBJECT ENCODING s2",
        "ZRANGESTORE s3 big -inf +inf BYSCORE LIMIT 0 128",
        "OBJECT ENCODING s3",
        "ZRANGESTORE s4 big129 0 -1 REV",
        "OBJECT ENCODING s4",
        "sort: ZSCAN big 0 COUNT 1000",
        "ZPOPMIN big 3",
        "ZPOPMAX big 2",
        "BZPOPMAX big 0",
        "ZMPOP 1 big MIN COUNT 2",
        "ZCARD big",
        "OBJECT ENCODING big",
        "ZRANDMEMBER big 1000 WITHSCORES",
        "ZLEXCOUNT big - +",
        // lex ranges over a skiplist of equal scores
        "ZUNIONSTORE biglex 1 big129 WEIGHTS 0",
        "OBJECT ENCODING biglex",
        "ZRANGEBYLEX biglex [m05 (m06",
        "ZREVRANGEBYLEX biglex (m06 [m05 LIMIT 2 3",
        "ZLEXCOUNT biglex (m05 +",
        "ZRANGE biglex [m12 + BYLEX",
        "ZREMRANGEBYLEX biglex - (m100",
        "ZCARD biglex",
        "ZRANGE biglex 0 2",
        "ZINTERCARD 2 big big129 LIMIT 3",
        "sort: CONFIG GET zset-max-listpack-entries",
        "sort: CONFIG GET zset-max-listpack-value",
        // key positions (what routing and CROSSSLOT use)
        "COMMAND GETKEYS ZUNIONSTORE d 2 a b WEIGHTS 1 2",
        "COMMAND GETKEYS ZUNION 2 a b",
        "COMMAND GETKEYS ZINTERCARD 2 a b LIMIT 1",
        "COMMAND GETKEYS ZRANGESTORE d s 0 -1",
        "COMMAND GETKEYS ZMPOP 2 a b MIN",
        "COMMAND GETKEYS BZMPOP 0 2 a b MIN",
        "COMMAND GETKEYS BZPOPMIN a b 0",
        "COMMAND GETKEYS ZADD k 1 a",
        // key commands on zsets
        "COPY a a2",
        "ZADD a2 99 extra",
        "ZSCORE a extra",
        "OBJECT ENCODING a2",
        "COPY big129 b2",
        "OBJECT ENCODING b2",
        "ZRANGE b2 0 3 WITHSCORES",
        "RENAME a2 a3",
        "ZRANGE a3 0 -1 WITHSCORES",
        "EXPIRE a3 100",
        "TTL a3",
        "PERSIST a3",
        "SCAN 0 TYPE zset COUNT 1000 MATCH a3",
        "SCAN 0 TYPE string COUNT 1000 MATCH a3",
        "TYPE a3",
        "DEL a3",
        "EXISTS a3",
        // transactions read and write zsets
        "MULTI",
        "ZADD t 1 a 2 b 3 c",
        "ZINCRBY t 0.5 a",
        "ZRANGE t 0 -1 WITHSCORES",
        "ZPOPMIN t 2",
        "ZPOPMAX t",
        "BZPOPMIN t 0",
        "ZRANDMEMBER t 5 WITHSCORES",
        "ZSCORE t a",
        "EXISTS t",
        "EXEC",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    for l in s.iter_mut() {
        *l = l
            .replace("LONG", &long)
            .replace("EDGE", &edge)
            .replace("PAIRS128", &pairs(128))
            .replace("PAIRS129", &pairs(129));
    }
    s
}

#[test]
fn zset_commands_answer_like_redis() {
    let script = script();
    assert!(script.len() >= 400, "{} commands", script.len());
    common::same_replies_as_redis(&script, play, false);
}

/// The same script in RESP3: scores as doubles, WITHSCORES and ZPOPMIN
/// with a count as nested pairs, nulls of RESP3's kind.
#[test]
fn zset_commands_answer_like_redis_in_resp3() {
    let want = common::same_replies_as_redis(&script(), play, true);
    assert!(
        want.iter().any(|(_, r)| matches!(r, Ok(Value::Double(_)))),
        "the reference speaks RESP3"
    );
}

/// Scores print as redis-server 7.0 prints them (`%.17g`): compared as
/// the raw bytes on the wire, so a client's own float parsing cannot hide
/// a difference.
#[test]
fn scores_are_formatted_byte_for_byte_like_redis() {
    let reference = Reference::start();
    let cairn = Server::start();
    let scores = [
        "1.1",
        "0.1",
        "2.5",
        "-0",
        "1e16",
        "1e17",
        "123456789.123456789",
        "1e-5",
        "0.0001",
        "4.9e-324",
        "1.7976931348623157e308",
        "inf",
        "-inf",
        "0x1p-3",
        "3.0e-3",
        "100",
    ];
    for url in [reference.url(), cairn.url()] {
        let mut raw = Raw::open(&url);
        raw.send(&["FLUSHALL"]);
        raw.read();
    }
    let transcript = |url: &str, hello: Option<&str>| {
        let mut raw = Raw::open(url);
        if let Some(v) = hello {
            raw.send(&["HELLO", v]);
            raw.read();
        }
        let mut got = String::new();
        for (i, s) in scores.iter().enumerate() {
            let m = format!("m{i}");
            raw.send(&["ZADD", "fmt", s, &m]);
            raw.read();
            raw.send(&["ZSCORE", "fmt", &m]);
            got.push_str(&raw.read());
        }
        raw.send(&["ZRANGE", "fmt", "0", "-1", "WITHSCORES"]);
        got.push_str(&raw.read_all());
        raw.send(&["ZINCRBY", "fmt", "0.1", "m0"]);
        got.push_str(&raw.read());
        raw.send(&["ZSCAN", "fmt", "0"]);
        got.push_str(&raw.read_all());
        raw.send(&["DEL", "fmt"]);
        raw.read();
        got
    };
    for hello in [None, Some("3")] {
        let want = transcript(&reference.url(), hello);
        let got = transcript(&cairn.url(), hello);
        assert_eq!(got, want, "protocol {hello:?}");
    }
}

#[test]
fn a_big_zset_scans_completely_in_several_calls() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    let mut args: Vec<String> = Vec::new();
    for i in 0..1000 {
        args.push((i % 17).to_string());
        args.push(format!("m{i}"));
    }
    let added: i64 = redis::cmd("ZADD")
        .arg("big")
        .arg(&args)
        .query(&mut c)
        .expect("zadd");
    assert_eq!(added, 1000);
    let (seen, calls) = scan_all(&mut c, "ZSCAN", "big", 100, &[]);
    // Members and scores, both seen.
    assert_eq!(seen.len(), 1000 + 17);
    assert!(calls >= 10, "{calls} calls");
    let rank: i64 = redis::cmd("ZRANK")
        .arg("big")
        .arg("m16")
        .query(&mut c)
        .expect("zrank");
    // Scores 0..16 repeat: m16 has score 16, the highest; ties by member.
    let higher: i64 = redis::cmd("ZCOUNT")
        .arg("big")
        .arg("(16")
        .arg("+inf")
        .query(&mut c)
        .expect("zcount");
    assert_eq!(higher, 0);
    let at_16: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg("big")
        .arg(16)
        .arg(16)
        .query(&mut c)
        .expect("zrangebyscore");
    let first = 1000 - at_16.len() as i64;
    let pos = at_16.iter().position(|m| m == "m16").expect("m16 there") as i64;
    assert_eq!(rank, first + pos);
}

// ---- blocking pops ----

/// A raw RESP connection, to send a blocking command without waiting
/// for its reply, and to see replies byte for byte.
struct Raw(std::net::TcpStream);

impl Raw {
    fn open(url: &str) -> Raw {
        let addr = url.trim_start_matches("redis://").trim_end_matches('/');
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw(s)
    }

    fn send(&mut self, args: &[&str]) {
        let mut b = format!("*{}\r\n", args.len());
        for a in args {
            b.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.write_all(b.as_bytes()).expect("send");
    }

    /// Whatever arrives within `ms` (empty if nothing).
    fn read_within(&mut self, ms: u64) -> String {
        self.0
            .set_read_timeout(Some(Duration::from_millis(ms)))
            .expect("timeout");
        let mut buf = [0u8; 65536];
        match self.0.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }

    fn read(&mut self) -> String {
        let r = self.read_within(10_000);
        assert!(!r.is_empty(), "no reply");
        r
    }

    /// A reply that may come in several reads: everything until the
    /// connection has been quiet for 100 ms.
    fn read_all(&mut self) -> String {
        let mut r = self.read();
        loop {
            let more = self.read_within(100);
            if more.is_empty() {
                return r;
            }
            r.push_str(&more);
        }
    }
}

/// Waits until the server reports `n` connections blocked.
fn wait_blocked(c: &mut redis::Connection, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info: String = redis::cmd("INFO").arg("clients").query(c).expect("info");
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1);
        if blocked == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "blocked_clients {blocked}, want {n}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The same blocking exchange with both servers gives the same bytes.
#[test]
fn bzpopmin_is_woken_by_a_zadd_from_another_connection() {
    let reference = Reference::start();
    let cairn = Server::start();
    let mut transcripts = Vec::new();
    for url in [reference.url(), cairn.url()] {
        let mut c = connect(&url);
        let mut waiter = Raw::open(&url);
        waiter.send(&["BZPOPMIN", "q", "other", "0"]);
        wait_blocked(&mut c, 1);
        assert_eq!(waiter.read_within(100), "");
        // A list, a string or a set written there wakes nobody.
        let _: i64 = redis::cmd("RPUSH")
            .arg("other")
            .arg("x")
            .query(&mut c)
            .expect("rpush");
        assert_eq!(waiter.read_within(100), "", "{url}");
        let _: i64 = redis::cmd("ZADD")
            .arg("q")
            .arg(2)
            .arg("b")
            .arg(1.5)
            .arg("a")
            .query(&mut c)
            .expect("zadd");
        let mut t = waiter.read();
        let left: Vec<String> = redis::cmd("ZRANGE")
            .arg("q")
            .arg(0)
            .arg(-1)
            .query(&mut c)
            .expect("zrange");
        assert_eq!(left, vec!["b"]);
        // BZMPOP and BZPOPMAX are woken the same way.
        waiter.send(&["BZMPOP", "0", "1", "q2", "MAX", "COUNT", "5"]);
        wait_blocked(&mut c, 1);
        let _: i64 = redis::cmd("ZADD")
            .arg("q2")
            .arg(1)
            .arg("x")
            .arg(2)
            .arg("y")
            .query(&mut c)
            .expect("zadd");
        t.push_str(&waiter.read());
        waiter.send(&["BZPOPMAX", "q3", "0"]);
        wait_blocked(&mut c, 1);
        let _: i64 = redis::cmd("ZINCRBY")
            .arg("q3")
            .arg(7)
            .arg("z")
            .query(&mut c)
            .expect("zincrby");
        t.push_str(&waiter.read());
        wait_blocked(&mut c, 0);
        transcripts.push(t);
    }
    assert_eq!(
        transcripts[1], transcripts[0],
        "cairn (second) differs from redis-server (first)"
    );
    assert!(transcripts[0].starts_with("*3\r\n$1\r\nq\r\n$1\r\na\r\n$3\r\n1.5\r\n"));
}

#[test]
fn a_blocking_zset_pop_times_out_with_null() {
    let reference = Reference::start();
    let cairn = Server::start();
    for url in [reference.url(), cairn.url()] {
        for (args, want) in [
            (&["BZPOPMIN", "none", "0.1"][..], "*-1\r\n"),
            (&["BZPOPMAX", "none", "0.1"][..], "*-1\r\n"),
            (&["BZMPOP", "0.1", "1", "none", "MIN"][..], "*-1\r\n"),
        ] {
            let mut raw = Raw::open(&url);
            let t = Instant::now();
            raw.send(args);
            assert_eq!(raw.read(), want, "{url} {args:?}");
            assert!(t.elapsed() >= Duration::from_millis(90), "{url} {args:?}");
        }
        let mut raw = Raw::open(&url);
        raw.send(&["HELLO", "3"]);
        raw.read_all();
        raw.send(&["BZPOPMIN", "none", "0.05"]);
        assert_eq!(raw.read(), "_\r\n", "{url}");
    }
}

#[test]
fn the_longest_waiting_client_is_served_first() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    let mut waiters: Vec<Raw> = (0..2).map(|_| Raw::open(&cairn.url())).collect();
    for (i, w) in waiters.iter_mut().enumerate() {
        w.send(&["BZPOPMIN", "fifo", "0"]);
        wait_blocked(&mut c, i as i64 + 1);
    }
    let _: i64 = redis::cmd("ZADD")
        .arg("fifo")
        .arg(1)
        .arg("first")
        .query(&mut c)
        .expect("zadd");
    assert_eq!(
        waiters[0].read(),
        "*3\r\n$4\r\nfifo\r\n$5\r\nfirst\r\n$1\r\n1\r\n"
    );
    assert_eq!(waiters[1].read_within(100), "");
    let _: i64 = redis::cmd("ZADD")
        .arg("fifo")
        .arg(2)
        .arg("second")
        .query(&mut c)
        .expect("zadd");
    assert_eq!(
        waiters[1].read(),
        "*3\r\n$4\r\nfifo\r\n$6\r\nsecond\r\n$1\r\n2\r\n"
    );
    wait_blocked(&mut c, 0);
    // Two members in one ZADD serve two waiters, in arrival order.
    for (i, w) in waiters.iter_mut().enumerate() {
        w.send(&["BZPOPMAX", "fifo", "0"]);
        wait_blocked(&mut c, i as i64 + 1);
    }
    let _: i64 = redis::cmd("ZADD")
        .arg("fifo")
        .arg(1)
        .arg("lo")
        .arg(2)
        .arg("hi")
        .query(&mut c)
        .expect("zadd");
    assert_eq!(
        waiters[0].read(),
        "*3\r\n$4\r\nfifo\r\n$2\r\nhi\r\n$1\r\n2\r\n"
    );
    assert_eq!(
        waiters[1].read(),
        "*3\r\n$4\r\nfifo\r\n$2\r\nlo\r\n$1\r\n1\r\n"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("fifo")
        .query(&mut c)
        .expect("exists");
    assert_eq!(exists, 0);
}

/// A zset stored whole under the key (RENAME, ZUNIONSTORE) wakes its
/// waiter, as Redis' dbAdd signals.
#[test]
fn a_zset_stored_onto_the_key_wakes_its_waiter() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    let mut waiter = Raw::open(&cairn.url());
    waiter.send(&["BZPOPMIN", "{w}k", "0"]);
    wait_blocked(&mut c, 1);
    let _: i64 = redis::cmd("ZADD")
        .arg("{w}src")
        .arg(3)
        .arg("m")
        .query(&mut c)
        .expect("zadd");
    let _: i64 = redis::cmd("ZUNIONSTORE")
        .arg("{w}k")
        .arg(1)
        .arg("{w}src")
        .query(&mut c)
        .expect("zunionstore");
    assert_eq!(waiter.read(), "*3\r\n$4\r\n{w}k\r\n$1\r\nm\r\n$1\r\n3\r\n");
    waiter.send(&["BZPOPMIN", "{w}k", "0"]);
    wait_blocked(&mut c, 1);
    let _: () = redis::cmd("RENAME")
        .arg("{w}src")
        .arg("{w}k")
        .query(&mut c)
        .expect("rename");
    assert_eq!(waiter.read(), "*3\r\n$4\r\n{w}k\r\n$1\r\nm\r\n$1\r\n3\r\n");
}
