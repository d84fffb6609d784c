//! One test per hash command (and the string commands' WRONGTYPE on a
//! hash), run the way a replica or a transaction runs them: through
//! `replicated::apply_in_tx`, so the tables' names and arities are
//! checked too.

use cairn_engine::replicated::apply_in_tx;
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;

mod common;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn run(ks: &mut Keyspace, line: &str) -> Frame {
    let argv: Vec<&[u8]> = line.split(' ').map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &argv, 1_000, &mut out);
    let mut r = out.take();
    assert_eq!(r.len(), 1, "{line}: one reply");
    r.pop().unwrap()
}

fn b(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn arr(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| b(s)).collect())
}

fn err(ks: &mut Keyspace, line: &str) -> String {
    match run(ks, line) {
        Frame::Error(e) => String::from_utf8(e).unwrap(),
        other => panic!("{line}: {other:?}"),
    }
}

fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

fn hash_ks() -> Keyspace {
    let mut ks = Keyspace::new(7);
    assert_eq!(run(&mut ks, "HSET h a 1 b 2 c 3"), int(3));
    ks
}

#[test]
fn hset_counts_new_fields_and_hmset_answers_ok() {
    let mut ks = hash_ks();
    assert_eq!(run(&mut ks, "HSET h a 10 d 4 d 5"), int(1));
    assert_eq!(run(&mut ks, "HGET h a"), b("10"));
    assert_eq!(run(&mut ks, "HGET h d"), b("5"));
    assert_eq!(run(&mut ks, "HMSET h e 6"), ok());
    assert_eq!(run(&mut ks, "HLEN h"), int(5));
    assert_eq!(
        err(&mut ks, "HSET h a 1 b"),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(run(&mut ks, "TYPE h"), Frame::Simple(b"hash".to_vec()));
}

#[test]
fn hsetnx_sets_only_a_new_field_and_keeps_the_watch_version() {
    let mut ks = hash_ks();
    let (v, _) = ks.key_version(b"h", 1_000);
    assert_eq!(run(&mut ks, "HSETNX h a 9"), int(0));
    assert_eq!(ks.key_version(b"h", 1_000).0, v, "no write, no new version");
    assert_eq!(run(&mut ks, "HGET h a"), b("1"));
    assert_eq!(run(&mut ks, "HSETNX h z 9"), int(1));
    assert_ne!(ks.key_version(b"h", 1_000).0, v);
    assert_eq!(run(&mut ks, "HSETNX new f v"), int(1));
    assert_eq!(run(&mut ks, "HGET new f"), b("v"));
}

#[test]
fn hget_and_hmget_answer_null_for_missing() {
    let mut ks = hash_ks();
    assert_eq!(run(&mut ks, "HGET h nope"), Frame::Null);
    assert_eq!(run(&mut ks, "HGET missing a"), Frame::Null);
    assert_eq!(
        run(&mut ks, "HMGET h a nope c"),
        Frame::Array(vec![b("1"), Frame::Null, b("3")])
    );
    assert_eq!(
        run(&mut ks, "HMGET missing a"),
        Frame::Array(vec![Frame::Null])
    );
}

#[test]
fn hdel_counts_removed_fields_and_the_last_one_takes_the_key() {
    let mut ks = hash_ks();
    let (v, _) = ks.key_version(b"h", 1_000);
    assert_eq!(run(&mut ks, "HDEL h x y"), int(0));
    assert_eq!(ks.key_version(b"h", 1_000).0, v);
    assert_eq!(run(&mut ks, "HDEL h a a x"), int(1));
    assert_eq!(run(&mut ks, "HDEL h b c"), int(2));
    assert_eq!(run(&mut ks, "EXISTS h"), int(0));
    assert_eq!(run(&mut ks, "HDEL h b"), int(0));
    assert!(ks.is_empty());
}

#[test]
fn hlen_hstrlen_hexists() {
    let mut ks = hash_ks();
    run(&mut ks, "HSET h long abcdef");
    assert_eq!(run(&mut ks, "HLEN h"), int(4));
    assert_eq!(run(&mut ks, "HLEN missing"), int(0));
    assert_eq!(run(&mut ks, "HSTRLEN h long"), int(6));
    assert_eq!(run(&mut ks, "HSTRLEN h nope"), int(0));
    assert_eq!(run(&mut ks, "HEXISTS h a"), int(1));
    assert_eq!(run(&mut ks, "HEXISTS h nope"), int(0));
    assert_eq!(run(&mut ks, "HEXISTS missing a"), int(0));
}

#[test]
fn hkeys_hvals_hgetall_keep_insertion_order_while_small() {
    let mut ks = hash_ks();
    run(&mut ks, "HSET h b 20");
    run(&mut ks, "HDEL h a");
    run(&mut ks, "HSET h a 1");
    assert_eq!(run(&mut ks, "HKEYS h"), arr(&["b", "c", "a"]));
    assert_eq!(run(&mut ks, "HVALS h"), arr(&["20", "3", "1"]));
    assert_eq!(
        run(&mut ks, "HGETALL h"),
        Frame::Map(vec![(b("b"), b("20")), (b("c"), b("3")), (b("a"), b("1"))])
    );
    assert_eq!(run(&mut ks, "HKEYS missing"), Frame::Array(vec![]));
    assert_eq!(run(&mut ks, "HGETALL missing"), Frame::Map(vec![]));
}

#[test]
fn hincrby_adds_and_refuses_non_integers_and_overflow() {
    let mut ks = hash_ks();
    assert_eq!(run(&mut ks, "HINCRBY h a 41"), int(42));
    assert_eq!(run(&mut ks, "HINCRBY h new -5"), int(-5));
    assert_eq!(run(&mut ks, "HINCRBY fresh f 3"), int(3));
    run(&mut ks, "HSET h s abc");
    run(&mut ks, "HSET h big 9223372036854775807");
    assert_eq!(
        err(&mut ks, "HINCRBY h s 1"),
        "ERR hash value is not an integer"
    );
    assert_eq!(
        err(&mut ks, "HINCRBY h big 1"),
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        err(&mut ks, "HINCRBY h a x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(run(&mut ks, "HGET h big"), b("9223372036854775807"));
}

#[test]
fn hincrbyfloat_adds_and_refuses_non_floats_and_infinity() {
    let mut ks = hash_ks();
    assert_eq!(run(&mut ks, "HINCRBYFLOAT h a 0.5"), b("1.5"));
    assert_eq!(run(&mut ks, "HINCRBYFLOAT h x 2.0e1"), b("20"));
    run(&mut ks, "HSET h s abc");
    run(&mut ks, "HSET h huge 1.7e308");
    assert_eq!(
        err(&mut ks, "HINCRBYFLOAT h s 1"),
        "ERR hash value is not a float"
    );
    assert_eq!(
        err(&mut ks, "HINCRBYFLOAT h a x"),
        "ERR value is not a valid float"
    );
    assert_eq!(
        err(&mut ks, "HINCRBYFLOAT h huge 1.7e308"),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(
        err(&mut ks, "HINCRBYFLOAT h a inf"),
        "ERR value is NaN or Infinity"
    );
    assert_eq!(run(&mut ks, "HGET h a"), b("1.5"));
}

#[test]
fn hrandfield_counts_and_withvalues() {
    let mut ks = hash_ks();
    let fields = ["a", "b", "c"];
    match run(&mut ks, "HRANDFIELD h") {
        Frame::Bulk(f) => assert!(fields.contains(&std::str::from_utf8(&f).unwrap())),
        other => panic!("{other:?}"),
    }
    assert_eq!(run(&mut ks, "HRANDFIELD missing"), Frame::Null);
    assert_eq!(run(&mut ks, "HRANDFIELD missing 3"), Frame::Array(vec![]));
    assert_eq!(run(&mut ks, "HRANDFIELD h 0"), Frame::Array(vec![]));
    assert_eq!(run(&mut ks, "HRANDFIELD h 10"), arr(&["a", "b", "c"]));
    let Frame::Array(two) = run(&mut ks, "HRANDFIELD h 2") else {
        panic!()
    };
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1], "a positive count gives distinct fields");
    let Frame::Array(many) = run(&mut ks, "HRANDFIELD h -20") else {
        panic!()
    };
    assert_eq!(many.len(), 20);
    let Frame::Array(pairs) = run(&mut ks, "HRANDFIELD h -4 WITHVALUES") else {
        panic!()
    };
    assert_eq!(pairs.len(), 4);
    for p in pairs {
        let Frame::Array(p) = p else { panic!() };
        let Frame::Bulk(f) = &p[0] else { panic!() };
        assert_eq!(
            run(&mut ks, &format!("HGET h {}", String::from_utf8_lossy(f))),
            p[1]
        );
    }
    assert_eq!(err(&mut ks, "HRANDFIELD h 1 WITHVALUE"), "ERR syntax error");
    assert_eq!(
        err(&mut ks, "HRANDFIELD h x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut ks, "HRANDFIELD h -9223372036854775807 WITHVALUES"),
        "ERR value is out of range"
    );
    assert!(err(&mut ks, "HRANDFIELD h -1000000000").starts_with("ERR count is out of range"));
}

#[test]
fn hscan_returns_a_listpack_whole_and_walks_a_table() {
    let mut ks = hash_ks();
    assert_eq!(
        run(&mut ks, "HSCAN h 0"),
        Frame::Array(vec![b("0"), arr(&["a", "1", "b", "2", "c", "3"])])
    );
    assert_eq!(
        run(&mut ks, "HSCAN h 0 MATCH [ab] NOVALUES"),
        Frame::Array(vec![b("0"), arr(&["a", "b"])])
    );
    assert_eq!(
        run(&mut ks, "HSCAN missing 0 COUNT 0"),
        Frame::Array(vec![b("0"), Frame::Array(vec![])])
    );
    assert_eq!(err(&mut ks, "HSCAN h 0 COUNT 0"), "ERR syntax error");
    assert_eq!(err(&mut ks, "HSCAN h x"), "ERR invalid cursor");
    for i in 0..300 {
        run(&mut ks, &format!("HSET t f{i} {i}"));
    }
    assert_eq!(ks.get(b"t", 0).unwrap().encoding(), "hashtable");
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let Frame::Array(r) = run(&mut ks, &format!("HSCAN t {cursor} COUNT 50")) else {
            panic!()
        };
        let (Frame::Bulk(c), Frame::Array(items)) = (&r[0], &r[1]) else {
            panic!()
        };
        for pair in items.chunks(2) {
            let (Frame::Bulk(f), Frame::Bulk(v)) = (&pair[0], &pair[1]) else {
                panic!()
            };
            assert_eq!(&f[1..], &v[..]);
            seen.insert(f.clone());
        }
        cursor = String::from_utf8(c.clone()).unwrap();
        calls += 1;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(calls, 6);
}

#[test]
fn encoding_converts_at_redis_thresholds() {
    let mut ks = Keyspace::new(1);
    let enc = |ks: &mut Keyspace, k: &[u8]| ks.get(k, 0).unwrap().encoding();
    run(&mut ks, &format!("HSET a f {}", "x".repeat(64)));
    assert_eq!(enc(&mut ks, b"a"), "listpack");
    run(&mut ks, &format!("HSET a f {}", "x".repeat(65)));
    assert_eq!(enc(&mut ks, b"a"), "hashtable");
    let many: Vec<String> = (0..129).map(|i| format!("f{i} v")).collect();
    run(&mut ks, &format!("HSET b {}", many[..128].join(" ")));
    assert_eq!(enc(&mut ks, b"b"), "listpack");
    run(&mut ks, "HSET b f128 v");
    assert_eq!(enc(&mut ks, b"b"), "hashtable");
    // More than 128 pairs in one HSET: a table at once, duplicates too.
    let dup: Vec<&str> = (0..129).map(|_| "f v").collect();
    run(&mut ks, &format!("HSET c {}", dup.join(" ")));
    assert_eq!(enc(&mut ks, b"c"), "hashtable");
    assert_eq!(run(&mut ks, "HLEN c"), int(1));
}

#[test]
fn string_commands_on_a_hash_are_wrongtype_and_change_nothing() {
    let mut ks = hash_ks();
    for line in [
        "GET h",
        "GETDEL h",
        "GETEX h PERSIST",
        "GETSET h v",
        "GETRANGE h 0 1",
        "STRLEN h",
        "APPEND h x",
        "SETRANGE h 0 x",
        "INCR h",
        "INCRBY h 2",
        "DECR h",
        "INCRBYFLOAT h 1.5",
        "SET h v GET",
        "SET h v IFEQ x",
    ] {
        assert_eq!(err(&mut ks, line), WRONGTYPE, "{line}");
    }
    assert_eq!(run(&mut ks, "HLEN h"), int(3));
    assert_eq!(run(&mut ks, "MGET h"), Frame::Array(vec![Frame::Null]));
    // A plain SET replaces any type.
    assert_eq!(run(&mut ks, "SET h v"), ok());
    assert_eq!(run(&mut ks, "GET h"), b("v"));
}

#[test]
fn hash_commands_on_a_string_are_wrongtype_and_change_nothing() {
    let mut ks = Keyspace::new(1);
    run(&mut ks, "SET s 5");
    for line in [
        "HSET s f v",
        "HMSET s f v",
        "HSETNX s f v",
        "HGET s f",
        "HMGET s f",
        "HDEL s f",
        "HLEN s",
        "HSTRLEN s f",
        "HEXISTS s f",
        "HKEYS s",
        "HVALS s",
        "HGETALL s",
        "HINCRBY s f 1",
        "HINCRBYFLOAT s f 1",
        "HRANDFIELD s",
        "HRANDFIELD s 2",
        "HSCAN s 0",
    ] {
        assert_eq!(err(&mut ks, line), WRONGTYPE, "{line}");
    }
    assert_eq!(run(&mut ks, "GET s"), b("5"));
}

#[test]
fn key_commands_work_on_hashes() {
    let mut ks = hash_ks();
    assert_eq!(run(&mut ks, "COPY h h2"), int(1));
    assert_eq!(run(&mut ks, "HSET h2 a changed"), int(0));
    assert_eq!(run(&mut ks, "HGET h a"), b("1"), "a copy is deep");
    assert_eq!(run(&mut ks, "RENAME h2 h3"), ok());
    assert_eq!(run(&mut ks, "HGET h3 a"), b("changed"));
    assert_eq!(run(&mut ks, "EXPIRE h3 10"), int(1));
    assert_eq!(run(&mut ks, "TTL h3"), int(10));
    assert_eq!(run(&mut ks, "EXISTS h h3 none"), int(2));
    assert_eq!(run(&mut ks, "DEL h h3"), int(2));
    assert!(ks.is_empty());
}

#[test]
fn memory_accounting_counts_hash_bytes_and_returns_to_zero() {
    let mut ks = Keyspace::new(1);
    let empty = ks.bytes_used();
    run(&mut ks, "HSET h f v");
    let small = ks.bytes_used();
    for i in 0..1000 {
        run(&mut ks, &format!("HSET h field:{i} {}", "v".repeat(100)));
    }
    let big = ks.bytes_used();
    // Per field at least: the pair's one allocation (field and a
    // 100-byte value: 112) and its slot (16).
    assert!(big - small > 1000 * 128, "{small} -> {big}");
    let pos = ks.find(b"h", 0).unwrap();
    assert!(ks.usage_at(pos) > 1000 * 128);
    run(&mut ks, "DEL h");
    // The table slots the key used stay allocated; the hash is gone.
    assert!(
        ks.bytes_used() <= small && small > empty,
        "{}",
        ks.bytes_used()
    );
    assert!(ks.is_empty());
}

#[test]
fn a_small_hash_costs_its_buffer_and_nothing_more() {
    let mut ks = Keyspace::new(1);
    run(&mut ks, "HSET h f v");
    // A count byte and one pair (two length bytes, "f", "v"): the 8-byte
    // class, no box beside it.
    assert_eq!(common::value_cost(&mut ks, "h"), 8);
    let pairs: Vec<String> = (0..16).map(|i| format!("field:{i} value:{i}")).collect();
    run(&mut ks, &format!("HSET h16 {}", pairs.join(" ")));
    // 1 + 16 * 2 + 236 bytes of fields and values: 269, in the 320 class.
    assert_eq!(common::value_cost(&mut ks, "h16"), 320);
    // A field deadline boxes the listpack (with its map), HPERSIST of the
    // last one unboxes it: the same bytes and the same value as before.
    let before = ks.get(b"h16", 0).unwrap().clone();
    run(&mut ks, "HEXPIRE h16 100 FIELDS 1 field:3");
    assert_eq!(ks.get(b"h16", 0).unwrap().encoding(), "listpackex");
    assert!(common::value_cost(&mut ks, "h16") > 320 + 32);
    assert_eq!(run(&mut ks, "HPERSIST h16 FIELDS 1 field:3"), arr_int(&[1]));
    assert_eq!(common::value_cost(&mut ks, "h16"), 320);
    assert_eq!(ks.get(b"h16", 0).unwrap(), &before);
    // Shrinking and growing values keep the buffer exact.
    run(&mut ks, "HSET h f a-longer-value-than-before");
    assert_eq!(common::value_cost(&mut ks, "h"), 32);
    run(&mut ks, "HSET h f v");
    assert_eq!(common::value_cost(&mut ks, "h"), 8);
    // COPY and RENAME carry the value as it is.
    run(&mut ks, "COPY h16 h17");
    assert_eq!(common::value_cost(&mut ks, "h17"), 320);
    run(&mut ks, "RENAME h17 h18");
    assert_eq!(common::value_cost(&mut ks, "h18"), 320);
    assert_eq!(run(&mut ks, "TYPE h18"), Frame::Simple("hash".into()));
    assert_eq!(run(&mut ks, "HGET h18 field:15"), b("value:15"));
    // A table is boxed: more than its pairs' allocations alone.
    let many: Vec<String> = (0..200).map(|i| format!("f{i} v")).collect();
    run(&mut ks, &format!("HSET big {}", many.join(" ")));
    assert!(common::value_cost(&mut ks, "big") > 200 * 16);
}

fn arr_int(items: &[i64]) -> Frame {
    Frame::Array(items.iter().map(|&n| int(n)).collect())
}
