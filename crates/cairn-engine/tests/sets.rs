//! Set behaviour the side-by-side test cannot show: what replicas agree
//! on (SPOP's draws), WATCH versions, memory accounting. Commands run the
//! way a replica or a transaction runs them, through the replicated and
//! transaction tables.

use cairn_engine::replicated::{apply_argv, apply_in_tx};
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;

mod common;

fn run(ks: &mut Keyspace, line: &str) -> Frame {
    let argv: Vec<&[u8]> = line.split(' ').map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &argv, 1_000, &mut out);
    out.take().pop().expect("one reply")
}

/// Applies `line` as the replicated entry at log `index`.
fn replicate(ks: &mut Keyspace, index: u64, line: &str) -> Frame {
    let argv: Vec<&[u8]> = line.split(' ').map(|a| a.as_bytes()).collect();
    let mut out = FrameReply::new();
    ks.set_stamp(index, 0);
    apply_argv(ks, &argv, 1_000, &mut out);
    out.take().pop().expect("one reply")
}

#[test]
fn spop_draws_the_same_members_on_replicas_whatever_they_read() {
    // Replicas have different secret seeds, and the leader alone serves
    // reads that advance its sampling generator.
    let mut leader = Keyspace::new(1);
    let mut follower = Keyspace::new(0xdead_beef);
    let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let small: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let script = [
        format!("SADD big {}", members.join(" ")),
        format!("SADD small {}", small.join(" ")),
        "SADD ints 1 2 3 4 5 6 7 8 9".to_string(),
        "SPOP big".into(),
        "SPOP big 17".into(),
        "SPOP small 5".into(),
        "SPOP small".into(),
        "SPOP ints 3".into(),
        "SPOP ints".into(),
    ];
    let mut popped = Vec::new();
    for (i, line) in script.iter().enumerate() {
        run(&mut leader, "SRANDMEMBER big -7");
        run(&mut leader, "SRANDMEMBER small");
        let a = replicate(&mut leader, i as u64 + 1, line);
        let b = replicate(&mut follower, i as u64 + 1, line);
        assert_eq!(a, b, "{line}");
        popped.push(a);
        assert_eq!(leader.digest(), follower.digest(), "after {line}");
    }
    // Draws that are not all the same member: the generator moved.
    assert_ne!(popped[3], popped[6]);
    assert_eq!(run(&mut leader, "SCARD big"), Frame::Integer(300 - 18));
    assert_eq!(run(&mut leader, "SCARD ints"), Frame::Integer(5));
}

#[test]
fn spop_in_standalone_mode_draws_from_the_generator() {
    let mut ks = Keyspace::new(7);
    run(&mut ks, "SADD s a b c d e f g h");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        match run(&mut ks, "SPOP s") {
            Frame::Bulk(m) => assert!(seen.insert(m)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(run(&mut ks, "EXISTS s"), Frame::Integer(0));
    assert_eq!(run(&mut ks, "SPOP s"), Frame::Null);
}

#[test]
fn writes_that_change_nothing_keep_the_watch_version() {
    let mut ks = Keyspace::new(3);
    run(&mut ks, "SADD s a b 1");
    let (v0, alive) = ks.key_version(b"s", 1_000);
    assert!(alive);
    run(&mut ks, "SADD s a b");
    run(&mut ks, "SREM s nope");
    run(&mut ks, "SMOVE s s a");
    run(&mut ks, "SMOVE s t nope");
    assert_eq!(ks.key_version(b"s", 1_000).0, v0);
    // A WRONGTYPE write of another type changes nothing either.
    for wrong in ["HSET s f v", "HDEL s f", "HINCRBY s f 1", "APPEND s x"] {
        assert!(matches!(run(&mut ks, wrong), Frame::Error(_)), "{wrong}");
        assert_eq!(ks.key_version(b"s", 1_000).0, v0, "{wrong}");
    }
    run(&mut ks, "HSET h f v");
    let h0 = ks.key_version(b"h", 1_000).0;
    for wrong in ["SADD h x", "SREM h f", "SPOP h", "SMOVE h s f"] {
        assert!(matches!(run(&mut ks, wrong), Frame::Error(_)), "{wrong}");
        assert_eq!(ks.key_version(b"h", 1_000).0, h0, "{wrong}");
    }
    run(&mut ks, "SADD s c");
    assert_ne!(ks.key_version(b"s", 1_000).0, v0);
}

#[test]
fn memory_is_counted_and_returned() {
    let mut ks = Keyspace::new(9);
    // The keyspace's own index grows with its first key: count from there.
    run(&mut ks, "SET pad 1");
    let empty = ks.bytes_used();
    let members: Vec<String> = (0..1000).map(|i| format!("member-{i}")).collect();
    run(&mut ks, &format!("SADD s {}", members.join(" ")));
    let full = ks.bytes_used();
    assert!(full - empty > 1000 * 32, "{}", full - empty);
    for chunk in members.chunks(100) {
        run(&mut ks, &format!("SREM s {}", chunk.join(" ")));
    }
    assert_eq!(ks.bytes_used(), empty);
    run(&mut ks, "SADD i 1 2 3");
    let ints = ks.bytes_used() - empty;
    run(&mut ks, "SADD l a b c");
    assert!(ints < 200 && ks.bytes_used() - empty - ints < 200);
}

#[test]
fn a_small_set_costs_its_buffer_and_nothing_more() {
    let mut ks = Keyspace::new(1);
    let ints: Vec<String> = (0..16).map(|i| i.to_string()).collect();
    run(&mut ks, &format!("SADD ints {}", ints.join(" ")));
    assert_eq!(enc(&mut ks, b"ints"), "intset");
    // A width byte and sixteen 2-byte members: 33, the 48 class.
    assert_eq!(common::value_cost(&mut ks, "ints"), 48);
    // A wider member widens every one: 1 + 17 * 4 = 69, the 80 class.
    run(&mut ks, "SADD ints 70000");
    assert_eq!(common::value_cost(&mut ks, "ints"), 80);
    run(&mut ks, "SREM ints 70000 15");
    assert_eq!(common::value_cost(&mut ks, "ints"), malloc(1 + 15 * 4));
    // A string turns it into a listpack: a marker and a count byte, then
    // (len, member) for each.
    run(&mut ks, "SADD ints x");
    assert_eq!(enc(&mut ks, b"ints"), "listpack");
    let digits = 10 + 5 * 2;
    assert_eq!(
        common::value_cost(&mut ks, "ints"),
        malloc(2 + 16 + digits + 1)
    );
    assert_eq!(run(&mut ks, "SISMEMBER ints 14"), Frame::Integer(1));
    assert_eq!(run(&mut ks, "SCARD ints"), Frame::Integer(16));
    // A listpack from the start takes integers as strings, and stays one.
    run(&mut ks, "SADD s a 1");
    assert_eq!(enc(&mut ks, b"s"), "listpack");
    assert_eq!(common::value_cost(&mut ks, "s"), malloc(2 + 2 + 2));
    run(&mut ks, "SREM s a");
    assert_eq!(enc(&mut ks, b"s"), "listpack");
    assert_eq!(common::value_cost(&mut ks, "s"), malloc(2 + 2));
    run(&mut ks, "COPY s s2");
    assert_eq!(common::value_cost(&mut ks, "s2"), malloc(2 + 2));
    assert_eq!(run(&mut ks, "TYPE s2"), Frame::Simple("set".into()));
    // Every member of an intset removed: the key goes, as in Redis.
    run(&mut ks, "SADD gone 1 2");
    run(&mut ks, "SREM gone 1 2");
    assert_eq!(run(&mut ks, "EXISTS gone"), Frame::Integer(0));
}

fn enc(ks: &mut Keyspace, key: &[u8]) -> &'static str {
    ks.get(key, 0).unwrap().encoding()
}

/// jemalloc's size class for `n` bytes, up to 128.
fn malloc(n: usize) -> usize {
    assert!(n <= 128);
    if n <= 8 {
        8
    } else {
        n.div_ceil(16) * 16
    }
}
