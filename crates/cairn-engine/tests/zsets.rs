//! Sorted-set behaviour the side-by-side test cannot show: what replicas
//! agree on, WATCH versions, memory accounting, blocking pops as
//! attempts. Commands run the way a replica or a transaction runs them,
//! through the replicated and transaction tables.

use cairn_engine::replicated::{apply_argv, apply_in_tx};
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;

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

fn pairs(n: usize, score: impl Fn(usize) -> f64) -> String {
    (0..n)
        .map(|i| format!("{} m{i}", score(i)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn replicas_agree_whatever_reads_each_serves() {
    // Replicas have different secret seeds; the leader alone serves the
    // reads, which advance its sampling generator (ZRANDMEMBER).
    let mut leader = Keyspace::new(1);
    let mut follower = Keyspace::new(0xdead_beef);
    let script = [
        format!("ZADD big {}", pairs(500, |i| (i % 37) as f64 / 4.0)),
        format!("ZADD small {}", pairs(20, |i| i as f64)),
        "ZADD big 1e300 top -inf bottom".to_string(),
        "ZINCRBY big 2.5 m7".into(),
        "ZREM big m8 m9 nope".into(),
        "ZPOPMIN big 3".into(),
        "ZPOPMAX small".into(),
        "ZMPOP 2 none big MAX COUNT 4".into(),
        "BZPOPMIN none small 0".into(),
        "BZMPOP 0 1 none MIN".into(),
        "ZUNIONSTORE u 2 big small WEIGHTS 2 3 AGGREGATE MAX".into(),
        "ZINTERSTORE i 2 big small".into(),
        "ZDIFFSTORE d 2 big small".into(),
        "ZRANGESTORE r big 10 200".into(),
        "ZRANGESTORE r2 big 2 5 BYSCORE LIMIT 3 50".into(),
        "ZREMRANGEBYRANK big 0 9".into(),
        "ZREMRANGEBYSCORE big (3 4".into(),
        "ZREMRANGEBYLEX small - +".into(),
        "CAIRN.EXEC big 0 4 ZADD big 5 tx 3 ZPOPMIN big 4 4 ZRANGE big 0 2".into(),
    ];
    for (i, line) in script.iter().enumerate() {
        run(&mut leader, "ZRANDMEMBER big -7 WITHSCORES");
        run(&mut leader, "ZRANDMEMBER small");
        let a = replicate(&mut leader, i as u64 + 1, line);
        let b = replicate(&mut follower, i as u64 + 1, line);
        assert_eq!(a, b, "{line}");
        assert!(!matches!(a, Frame::Error(_)), "{line}: {a:?}");
        assert_eq!(leader.digest(), follower.digest(), "after {line}");
    }
    // The table order (what ZSCAN walks) is the same on both.
    for key in ["big", "u", "d", "r"] {
        let line = format!("ZSCAN {key} 0 COUNT 50");
        assert_eq!(run(&mut leader, &line), run(&mut follower, &line), "{key}");
        let line = format!("OBJECT ENCODING {key}");
        let argv: Vec<&[u8]> = line.split(' ').map(|a| a.as_bytes()).collect();
        use cairn_engine::cmd::Command;
        let enc = |ks: &mut Keyspace| {
            let mut out = FrameReply::new();
            cairn_engine::cmd::object::Object::parse(&argv)
                .expect("parse")
                .apply(ks, 1_000, &mut out);
            out.take()
        };
        assert_eq!(enc(&mut leader), enc(&mut follower), "{key}");
    }
}

#[test]
fn blocking_pops_are_attempts_here() {
    let mut ks = Keyspace::new(5);
    assert_eq!(run(&mut ks, "BZPOPMIN z 0"), Frame::Null);
    assert_eq!(run(&mut ks, "BZMPOP 0 1 z MAX"), Frame::Null);
    run(&mut ks, "ZADD z 1 a 2 b");
    assert_eq!(
        run(&mut ks, "BZPOPMAX x z 0"),
        Frame::Array(vec![
            Frame::Bulk(b"z".to_vec()),
            Frame::Bulk(b"b".to_vec()),
            Frame::Double(2.0)
        ])
    );
    // Inside a transaction too: no waiting, a null when empty.
    run(&mut ks, "DEL z");
    assert_eq!(
        replicate(&mut ks, 1, "CAIRN.EXEC z 0 3 BZPOPMIN z 0"),
        Frame::Array(vec![Frame::Null])
    );
}

#[test]
fn writes_that_change_nothing_keep_the_watch_version() {
    let mut ks = Keyspace::new(3);
    run(&mut ks, "ZADD z 1 a 2 b 3 c");
    let (v0, alive) = ks.key_version(b"z", 1_000);
    assert!(alive);
    for noop in [
        "ZADD z 1 a",
        "ZADD z NX 5 a",
        "ZADD z XX 5 nope",
        "ZADD z GT 0 b",
        "ZADD z LT 9 b",
        "ZADD z -0 x0",
        "ZREM z -0",
        "ZADD z INCR XX 1 nope",
        "ZINCRBY z 0 a",
        "ZREM z nope",
        "ZREMRANGEBYSCORE z 10 20",
        "ZREMRANGEBYRANK z 5 9",
        "ZREMRANGEBYLEX z (z +",
        "ZPOPMIN z 0",
        "ZRANGESTORE z2 missing 0 -1",
    ] {
        let before = ks.key_version(b"z", 1_000).0;
        run(&mut ks, noop);
        if noop.contains("x0") {
            // A real add (of x0) moves it; take it out again below.
            assert_ne!(ks.key_version(b"z", 1_000).0, before, "{noop}");
            continue;
        }
        assert_eq!(ks.key_version(b"z", 1_000).0, before, "{noop}");
    }
    let v1 = ks.key_version(b"z", 1_000).0;
    assert_ne!(v1, v0);
    // A WRONGTYPE write of another type changes nothing either.
    for wrong in ["HSET z f v", "SADD z x", "LPUSH z x", "APPEND z x"] {
        assert!(matches!(run(&mut ks, wrong), Frame::Error(_)), "{wrong}");
        assert_eq!(ks.key_version(b"z", 1_000).0, v1, "{wrong}");
    }
    run(&mut ks, "HSET h f v");
    let h0 = ks.key_version(b"h", 1_000).0;
    for wrong in [
        "ZADD h 1 x",
        "ZREM h f",
        "ZPOPMIN h",
        "ZINCRBY h 1 f",
        "ZREMRANGEBYRANK h 0 -1",
        "ZRANGESTORE h2 h 0 -1",
        "ZUNIONSTORE h2 1 h",
    ] {
        assert!(matches!(run(&mut ks, wrong), Frame::Error(_)), "{wrong}");
        assert_eq!(ks.key_version(b"h", 1_000).0, h0, "{wrong}");
    }
    run(&mut ks, "ZADD z 4 d");
    assert_ne!(ks.key_version(b"z", 1_000).0, v1);
}

#[test]
fn memory_is_counted_and_returned() {
    let mut ks = Keyspace::new(9);
    // The keyspace's own index grows with its first key: count from there.
    run(&mut ks, "SET pad 1");
    let empty = ks.bytes_used();
    // A skiplist: members, their table and index, the ordered blocks.
    let big = pairs(2000, |i| (i % 100) as f64);
    run(&mut ks, &format!("ZADD z {big}"));
    let full = ks.bytes_used();
    let per = (full - empty) / 2000;
    assert!((40..120).contains(&per), "{per} bytes a member");
    // Churn, then removal in every way: back to where it started.
    run(&mut ks, "ZINCRBY z 1000 m5");
    run(&mut ks, "ZREMRANGEBYRANK z 0 99");
    run(&mut ks, "ZREMRANGEBYSCORE z 50 60");
    run(&mut ks, "ZPOPMAX z 300");
    run(&mut ks, "ZREMRANGEBYLEX z - +");
    assert_eq!(run(&mut ks, "EXISTS z"), Frame::Integer(0));
    assert_eq!(ks.bytes_used(), empty);
    // A listpack: a few bytes a member.
    run(&mut ks, &format!("ZADD l {}", pairs(100, |i| i as f64)));
    let l = ks.bytes_used() - empty;
    assert!(l < 100 * 24, "{l}");
    run(&mut ks, "ZREMRANGEBYRANK l 0 -1");
    assert_eq!(ks.bytes_used(), empty);
    // MEMORY USAGE's view (the key's own bytes) agrees with the total.
    run(&mut ks, &format!("ZADD z2 {big}"));
    let total = ks.bytes_used() - empty;
    let pos = ks.find(b"z2", 1_000).expect("stored");
    let usage = ks.usage_at(pos);
    assert!(
        usage <= total + 256 && total <= usage + 256,
        "{usage} vs {total}"
    );
}
