//! Set commands side by side with redis-server: the same sequence, error
//! cases included, must give identical replies (docs/design/
//! datatypes.md, docs/COMPATIBILITY.md).
//!
//! The reference is redis-server 7.0, whose sets have two encodings
//! (intset, hashtable); cairn follows Redis 7.2, which added a listpack
//! for small sets of strings. So:
//! * `sort:` compares a reply sorted: a set whose order is its encoding's
//!   own (7.0's hashtable, cairn's listpack or table). Intsets are
//!   compared exactly (ascending in both).
//! * `len:` compares only how many members a reply holds (SPOP's and
//!   SRANDMEMBER's draws are random in both).
//! * `cairn=X:` replaces redis-server's reply by the bulk string X, what
//!   Redis 7.2 answers (OBJECT ENCODING of a small set of strings is
//!   `listpack` there and `hashtable` in 7.0); the command still runs on
//!   both.

use redis::Value;

mod common;

use common::{
    assert_same_replies, connect, memory_usage, scan_all, send as cmd, Reference, Server,
};

/// A reply with its items sorted; SSCAN's `[cursor, items]` keeps its
/// cursor and sorts its items.
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
        Value::Set(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Set(items)
        }
        other => other,
    }
}

fn play(url: &str, script: &[String], reference: bool) -> Vec<(String, Result<Value, String>)> {
    let mut c = connect(url);
    cmd(&mut c, &["FLUSHALL".into()]).expect("flush");
    script
        .iter()
        .map(|line| {
            let (mode, text) = match line.split_once(": ") {
                Some((m, t)) if m == "sort" || m == "len" || m.starts_with("cairn=") => (m, t),
                _ => ("", line.as_str()),
            };
            let args: Vec<String> = text.split(' ').map(String::from).collect();
            let r = cmd(&mut c, &args).map(|v| match mode {
                "sort" => sorted(v),
                "len" => match v {
                    Value::Array(items) | Value::Set(items) => Value::Int(items.len() as i64),
                    Value::Nil => Value::Int(0),
                    _ => Value::Int(1),
                },
                m if reference && m.starts_with("cairn=") => {
                    Value::BulkString(m.as_bytes()["cairn=".len()..].to_vec())
                }
                _ => v,
            });
            (line.clone(), r)
        })
        .collect()
}

fn script() -> Vec<String> {
    let long = "x".repeat(65);
    let edge = "y".repeat(64);
    let ints: Vec<String> = (0..512)
        .map(|i| ((i * 7919) % 1000 - 500).to_string())
        .collect();
    let strs: Vec<String> = (0..128).map(|i| format!("m{i}")).collect();
    let mut s: Vec<String> = [
        // the basics on an intset: exact (ascending) order
        "SADD i 5 3 -1 3 10",
        "SADD i 3",
        "SMEMBERS i",
        "SCARD i",
        "SISMEMBER i 3",
        "SISMEMBER i 4",
        "SISMEMBER i 03",
        "SMISMEMBER i 3 4 10 x",
        "SMISMEMBER missing a b",
        "SCARD missing",
        "SISMEMBER missing a",
        "SMEMBERS missing",
        "OBJECT ENCODING i",
        "TYPE i",
        "SSCAN i 0",
        "SSCAN i 0 MATCH 1*",
        "SSCAN i 0 COUNT 1",
        "SSCAN missing 0",
        "SSCAN missing 0 COUNT 0",
        "SREM i 3 nope",
        "SREM i nope",
        "SREM missing a",
        "SMEMBERS i",
        // integers that are not canonical are strings
        "SADD i 007",
        "cairn=listpack: OBJECT ENCODING i",
        "sort: SMEMBERS i",
        "SISMEMBER i 7",
        "SISMEMBER i 007",
        // strings
        "SADD s a b c",
        "SADD s b d",
        "sort: SMEMBERS s",
        "SCARD s",
        "cairn=listpack: OBJECT ENCODING s",
        "sort: SSCAN s 0",
        "sort: SSCAN s 0 MATCH [ab]",
        "SREM s a b c d",
        "EXISTS s",
        "SADD s x",
        // random draws that do not depend on the generator
        "SADD one only",
        "SRANDMEMBER one",
        "SRANDMEMBER one -3",
        "SRANDMEMBER one 5",
        "SRANDMEMBER one 0",
        "SRANDMEMBER missing",
        "SRANDMEMBER missing 3",
        "SRANDMEMBER missing -3",
        "sort: SRANDMEMBER i 100",
        "sort: SRANDMEMBER s 100",
        "SPOP one",
        "EXISTS one",
        "SPOP one",
        "SPOP missing",
        "SPOP missing 3",
        "SPOP missing 0",
        "SPOP i 0",
        "SADD p 1 2 3 4 5 6",
        "len: SPOP p 2",
        "SCARD p",
        "len: SPOP p",
        "SCARD p",
        "len: SPOP p 100",
        "EXISTS p",
        "SADD p2 z y",
        "sort: SPOP p2 2",
        "EXISTS p2",
        // counts
        "SPOP i -1",
        "SPOP i x",
        "SPOP i 1 2",
        "SPOP i -9223372036854775808",
        "SRANDMEMBER i x",
        "SRANDMEMBER i 1 2",
        "SRANDMEMBER i -9223372036854775808",
        "sort: SRANDMEMBER i 9223372036854775807",
        "SPOP missing -1",
        // SMOVE
        "SADD src 1 2 a",
        "SADD dst 3",
        "SMOVE src dst 1",
        "SMOVE src dst 1",
        "sort: SMEMBERS src",
        "SMEMBERS dst",
        "OBJECT ENCODING dst",
        "SMOVE src dst a",
        "cairn=listpack: OBJECT ENCODING dst",
        "SMOVE src src 2",
        "SMOVE src src 9",
        "SMOVE src fresh 2",
        "EXISTS src",
        "SMEMBERS fresh",
        "OBJECT ENCODING fresh",
        "SMOVE nosrc dst 1",
        "SET str v",
        "SMOVE nosrc str 1",
        "SADD src 1",
        "SMOVE src str 1",
        "SMOVE str dst 1",
        "SMOVE src dst nope",
        // algebra
        "DEL a b c",
        "SADD a 1 2 3 4",
        "SADD b 3 4 5",
        "SADD c 4 5 6 x",
        "SINTER a b",
        "SINTER a b c",
        "SINTER a missing",
        "SINTER missing",
        "SUNION a b",
        "sort: SUNION a b c",
        "SUNION missing a",
        "SUNION missing",
        "SDIFF a b",
        "SDIFF a b c",
        "SDIFF a a",
        "SDIFF missing a",
        "SDIFF a missing",
        "SINTERCARD 2 a b",
        "SINTERCARD 3 a b c",
        "SINTERCARD 2 a missing",
        "SINTERCARD 1 a LIMIT 2",
        "SINTERCARD 1 a LIMIT 0",
        "SINTERCARD 1 a LIMIT 100",
        "SINTERCARD 2 a b limit 1",
        "SINTERSTORE d a b",
        "SMEMBERS d",
        "OBJECT ENCODING d",
        "SUNIONSTORE d a b",
        "SMEMBERS d",
        "SDIFFSTORE d a b",
        "SMEMBERS d",
        "SUNIONSTORE d2 c",
        "sort: SMEMBERS d2",
        "cairn=listpack: OBJECT ENCODING d2",
        "EXPIRE d 100",
        "SUNIONSTORE d a",
        "TTL d",
        "SINTERSTORE d a missing",
        "EXISTS d",
        "SET d plain",
        "SDIFFSTORE d a",
        "TYPE d",
        "SINTERSTORE d missing",
        "EXISTS d",
        // SINTERCARD's arguments
        "SINTERCARD 0 a",
        "SINTERCARD -1 a",
        "SINTERCARD x a",
        "SINTERCARD 3 a b",
        "SINTERCARD 1 a LIMIT -1",
        "SINTERCARD 1 a LIMIT x",
        "SINTERCARD 1 a LIMIT",
        "SINTERCARD 1 a BOGUS 1",
        "SINTERCARD 1 a LIMIT 1 LIMIT 2",
        "SINTERCARD 1",
        // arity and syntax
        "SADD s",
        "SREM s",
        "SCARD",
        "SCARD s extra",
        "SISMEMBER s",
        "SMISMEMBER s",
        "SMEMBERS",
        "SRANDMEMBER",
        "SPOP",
        "SMOVE a b",
        "SINTER",
        "SINTERSTORE d",
        "SUNIONSTORE d",
        "SDIFFSTORE d",
        "SSCAN s",
        "SSCAN s x",
        "SSCAN s 0 COUNT 0",
        "SSCAN s 0 COUNT x",
        "SSCAN s 0 BOGUS",
        "SSCAN s 0 MATCH",
        "SSCAN s 0 NOVALUES",
        // types
        "HSET h f v",
        "SADD str x",
        "SADD h x",
        "SREM str x",
        "SCARD str",
        "SISMEMBER h x",
        "SMISMEMBER str x",
        "SMEMBERS h",
        "SRANDMEMBER str",
        "SRANDMEMBER str 2",
        "SPOP str",
        "SPOP h 2",
        "SSCAN str 0",
        "SINTER a str",
        "SINTER missing str",
        "SUNION a h",
        "SDIFF missing str",
        "SDIFF a str",
        "SINTERCARD 2 a str",
        "SINTERSTORE d a str",
        "SUNIONSTORE d h",
        "SDIFFSTORE d a h",
        "GET a",
        "STRLEN a",
        "APPEND a x",
        "INCR a",
        "GETRANGE a 0 1",
        "SETRANGE a 0 x",
        "GETSET a v",
        "GETDEL a",
        "SET a v GET",
        "MGET a str",
        "HSET a f v",
        "HGET a f",
        "HLEN a",
        "SCARD a",
        // encodings at the thresholds
        "SADD big INTS",
        "SCARD big",
        "OBJECT ENCODING big",
        "SMEMBERS big",
        "SADD big 1000",
        "OBJECT ENCODING big",
        "SCARD big",
        "SADD bigi INTS 1000",
        "OBJECT ENCODING bigi",
        "SADD mix 1 2 3",
        "SADD mix LONG",
        "OBJECT ENCODING mix",
        "SADD mix2 1 2 3",
        "SADD mix2 EDGE",
        "cairn=listpack: OBJECT ENCODING mix2",
        "SADD strs STRS",
        "cairn=listpack: OBJECT ENCODING strs",
        "SADD strs m127",
        "cairn=listpack: OBJECT ENCODING strs",
        "SADD strs m128",
        "OBJECT ENCODING strs",
        "SCARD strs",
        "sort: SMEMBERS strs",
        "SREM strs m0 m1 m2",
        "OBJECT ENCODING strs",
        "SADD strs2 STRS extra",
        "OBJECT ENCODING strs2",
        "SADD e EDGE",
        "cairn=listpack: OBJECT ENCODING e",
        "SADD e LONG",
        "OBJECT ENCODING e",
        "SADD l LONG",
        "OBJECT ENCODING l",
        "SADD manyints INTS",
        "SADD manyints x",
        "OBJECT ENCODING manyints",
        "SUNIONSTORE u big strs",
        "OBJECT ENCODING u",
        "SCARD u",
        "SINTERSTORE u2 big bigi",
        "OBJECT ENCODING u2",
        "SCARD u2",
        "sort: SMEMBERS u2",
        "SDIFFSTORE u3 bigi big",
        "SMEMBERS u3",
        "OBJECT ENCODING u3",
        "SINTERCARD 2 big bigi",
        "SINTERCARD 2 big bigi LIMIT 10",
        "sort: CONFIG GET set-max-intset-entries",
        // key positions (what routing and CROSSSLOT use)
        "COMMAND GETKEYS SINTERCARD 2 a b LIMIT 1",
        "COMMAND GETKEYS SUNIONSTORE d a b",
        "COMMAND GETKEYS SMOVE a b m",
        "COMMAND GETKEYS SINTER a b c",
        // key commands on sets
        "COPY a a2",
        "SADD a2 99",
        "SISMEMBER a 99",
        "RENAME a2 a3",
        "SMEMBERS a3",
        "EXPIRE a3 100",
        "TTL a3",
        "PERSIST a3",
        "EXISTS a a3 nothing",
        "SCAN 0 TYPE set COUNT 1000 MATCH a3",
        "SCAN 0 TYPE string COUNT 1000 MATCH a3",
        "TYPE a3",
        "DEL a3",
        "EXISTS a3",
        "SET a plain",
        "GET a",
        // transactions read and write sets
        "MULTI",
        "SADD t 1 2 3",
        "SISMEMBER t 2",
        "SMEMBERS t",
        "SREM t 2",
        "SCARD t",
        "SINTER t t",
        "SPOP t 5",
        "EXISTS t",
        "EXEC",
        // random draws with counts: how many
        "SADD r a b c d e 1 2 3",
        "len: SRANDMEMBER r 3",
        "len: SRANDMEMBER r -20",
        "len: SRANDMEMBER r 8",
        "len: SPOP r 3",
        "SCARD r",
        "len: SPOP r 6",
        "EXISTS r",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    for l in s.iter_mut() {
        *l = l
            .replace("LONG", &long)
            .replace("EDGE", &edge)
            .replace("INTS", &ints.join(" "))
            .replace("STRS", &strs.join(" "));
    }
    s
}

#[test]
fn set_commands_answer_like_redis() {
    let reference = Reference::start();
    let cairn = Server::start();
    let script = script();
    let want = play(&reference.url(), &script, true);
    let got = play(&cairn.url(), &script, false);
    assert_same_replies(&want, &got);
}

/// The same script in RESP3: sets where Redis answers a set (`~`),
/// arrays where it answers an array, nulls of RESP3's kind.
#[test]
fn set_commands_answer_like_redis_in_resp3() {
    let reference = Reference::start();
    let cairn = Server::start();
    let script = script();
    let resp3 = |url: String| format!("{url}?protocol=resp3");
    let want = play(&resp3(reference.url()), &script, true);
    let got = play(&resp3(cairn.url()), &script, false);
    assert!(
        want.iter().any(|(_, r)| matches!(r, Ok(Value::Set(_)))),
        "the reference speaks RESP3"
    );
    assert_same_replies(&want, &got);
}

#[test]
fn a_big_set_scans_completely_in_several_calls() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let added: i64 = redis::cmd("SADD")
        .arg("big")
        .arg(&members)
        .query(&mut c)
        .expect("sadd");
    assert_eq!(added, 1000);
    let (seen, calls) = scan_all(&mut c, "SSCAN", "big", 100, &[]);
    assert_eq!(seen.len(), 1000);
    assert!(calls >= 10, "{calls} calls");
    let usage = memory_usage(&mut c, "big");
    assert!(usage > 1000 * 32, "{usage}");
}
