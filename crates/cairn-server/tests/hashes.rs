//! Hash commands side by side with redis-server: the same sequence,
//! error cases included, must give identical replies (docs/design/
//! datatypes.md, docs/COMPATIBILITY.md). Replies whose order is the
//! encoding's own (a hashtable's HKEYS, HGETALL, HSCAN) are compared
//! sorted; small (listpack) hashes keep Redis' insertion order exactly.

use redis::Value;

mod common;

use common::{
    assert_same_replies, connect, memory_usage, scan_all, send as cmd, Played, Reference, Server,
};

/// A reply with the items of every array sorted (for encodings whose
/// order is their own); pairs of HGETALL/HSCAN stay pairs.
fn sorted(v: Value, pairs: bool) -> Value {
    match v {
        Value::Array(items) if items.len() == 2 && matches!(items[1], Value::Array(_)) => {
            // HSCAN: [cursor, items]
            let mut it = items.into_iter();
            let cursor = it.next().unwrap_or(Value::Nil);
            Value::Array(vec![cursor, sorted(it.next().unwrap_or(Value::Nil), pairs)])
        }
        Value::Array(items) if pairs => {
            let mut ps: Vec<Vec<Value>> = items.chunks(2).map(|c| c.to_vec()).collect();
            ps.sort_by_key(|p| format!("{p:?}"));
            Value::Array(ps.into_iter().flatten().collect())
        }
        Value::Array(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Array(items)
        }
        other => other,
    }
}

/// `sort:` before a line: compare sorted; `pairs:`: sorted by pairs.
fn play(url: &str, script: &[String]) -> Played {
    let mut c = connect(url);
    cmd(&mut c, &["FLUSHALL".into()]).expect("flush");
    script
        .iter()
        .map(|line| {
            let (mode, text) = match line.split_once(": ") {
                Some((m @ ("sort" | "pairs"), t)) => (m, t),
                _ => ("", line.as_str()),
            };
            let args: Vec<String> = text.split(' ').map(String::from).collect();
            let r = cmd(&mut c, &args).map(|v| match mode {
                "sort" => sorted(v, false),
                "pairs" => sorted(v, true),
                _ => v,
            });
            (line.clone(), r)
        })
        .collect()
}

fn script() -> Vec<String> {
    let long = "x".repeat(65);
    let edge = "y".repeat(64);
    let many: Vec<String> = (0..128).map(|i| format!("f{i} {i}")).collect();
    let mut s: Vec<String> = [
        // the basics, listpack order
        "HSET h a 1 b 2 c 3",
        "HSET h b 20 d 4",
        "HGET h b",
        "HGET h nope",
        "HGET missing a",
        "HMGET h a nope d",
        "HMGET missing a",
        "HLEN h",
        "HLEN missing",
        "HSTRLEN h b",
        "HSTRLEN h nope",
        "HEXISTS h a",
        "HEXISTS h nope",
        "HKEYS h",
        "HVALS h",
        "HGETALL h",
        "HKEYS missing",
        "HGETALL missing",
        "HSCAN h 0",
        "HSCAN h 0 MATCH [ab]",
        "HSCAN h 0 COUNT 1",
        "HSCAN missing 0",
        "HSCAN missing 0 COUNT 0",
        "HRANDFIELD h 10",
        "HRANDFIELD h 10 WITHVALUES",
        "HRANDFIELD h 0",
        "HRANDFIELD missing",
        "HRANDFIELD missing 5",
        "TYPE h",
        "OBJECT ENCODING h",
        "HSETNX h a 9",
        "HSETNX h e 5",
        "HSETNX fresh f v",
        "HDEL h a nope",
        "HDEL h nope",
        "HKEYS h",
        "HMSET h x 1 y 2",
        "HINCRBY h x 41",
        "HINCRBY h new -5",
        "HINCRBY counters c 1",
        "HINCRBYFLOAT h x 0.5",
        "HINCRBYFLOAT h f 2.0e1",
        "HINCRBYFLOAT h f -0.25",
        "HSET h s abc big 9223372036854775807",
        "HINCRBY h s 1",
        "HINCRBY h big 1",
        "HINCRBY h x notanumber",
        "HINCRBYFLOAT h s 1",
        "HINCRBYFLOAT h x notafloat",
        // (a sum past f64's range is not tried: Redis adds in long
        // double, cairn in f64, a documented difference)
        "HINCRBYFLOAT h x inf",
        "HINCRBYFLOAT h x -inf",
        "HINCRBYFLOAT h x nan",
        "HGETALL h",
        // arity and syntax
        "HSET h a",
        "HSET h a 1 b",
        "HMSET h a",
        "HGET h",
        "HSETNX h a",
        "HDEL h",
        "HLEN",
        "HINCRBY h a",
        "HRANDFIELD",
        "HRANDFIELD h 1 WITHVALUE",
        "HRANDFIELD h 1 WITHVALUES extra",
        "HRANDFIELD h x",
        "HRANDFIELD h -9223372036854775807 WITHVALUES",
        "HSCAN h",
        "HSCAN h x",
        "HSCAN h 0 COUNT 0",
        "HSCAN h 0 COUNT x",
        "HSCAN h 0 BOGUS",
        "HSCAN h 0 MATCH",
        // types
        "SET str 5",
        "HSET str f v",
        "HGET str f",
        "HGETALL str",
        "HSCAN str 0",
        "HRANDFIELD str",
        "HINCRBY str f 1",
        "HDEL str f",
        "GET h",
        "STRLEN h",
        "APPEND h x",
        "INCR h",
        "INCRBYFLOAT h 1",
        "GETRANGE h 0 1",
        "SETRANGE h 0 x",
        "GETSET h v",
        "GETDEL h",
        "SET h v GET",
        "MGET h str",
        "HLEN h",
        // encodings at the thresholds
        "HSET edge f EDGE",
        "OBJECT ENCODING edge",
        "HSET edge g LONG",
        "OBJECT ENCODING edge",
        "HSET lf LONG v",
        "OBJECT ENCODING lf",
        "HSET many MANY",
        "OBJECT ENCODING many",
        "HSET many f128 x",
        "OBJECT ENCODING many",
        "HLEN many",
        "sort: HKEYS many",
        "sort: HVALS many",
        "pairs: HGETALL many",
        "HDEL many f0 f1",
        "OBJECT ENCODING many",
        "HGET many f5",
        // key commands on hashes
        "COPY h h2",
        "HSET h2 b changed",
        "HGET h b",
        "RENAME h2 h3",
        "HGET h3 b",
        "EXPIRE h3 100",
        "TTL h3",
        "PERSIST h3",
        "EXISTS h h3 nothing",
        "SCAN 0 TYPE hash MATCH h3",
        "SCAN 0 TYPE string MATCH h3",
        "DEL h3",
        "EXISTS h3",
        "HDEL fresh f",
        "EXISTS fresh",
        "SET h plain",
        "GET h",
        // transactions read hashes
        "MULTI",
        "HSET t a 1",
        "HGET t a",
        "HGETALL t",
        "HINCRBY t a 2",
        "HLEN t",
        "EXEC",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    for l in s.iter_mut() {
        *l = l
            .replace("LONG", &long)
            .replace("EDGE", &edge)
            .replace("MANY", &many.join(" "));
    }
    s.push("pairs: CONFIG GET hash-max-listpack-*".into());
    s
}

#[test]
fn hash_commands_answer_like_redis() {
    // redis.conf's value (and cairn's); the default compiled into
    // redis-server is 512.
    let reference = Reference::start_with(&["--hash-max-listpack-entries", "128"]);
    let cairn = Server::start();
    let script = script();
    let want = play(&reference.url(), &script);
    let got = play(&cairn.url(), &script);
    assert_same_replies(&want, &got);
}

#[test]
fn a_big_hash_scans_completely_in_several_calls() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    for i in 0..1000 {
        let _: i64 = redis::cmd("HSET")
            .arg("big")
            .arg(format!("f{i}"))
            .arg(i)
            .query(&mut c)
            .expect("hset");
    }
    let (seen, calls) = scan_all(&mut c, "HSCAN", "big", 100, &["NOVALUES"]);
    assert_eq!(seen.len(), 1000);
    assert!(calls >= 10, "{calls} calls");
    let usage = memory_usage(&mut c, "big");
    assert!(usage > 1000 * 64, "{usage}");
}
