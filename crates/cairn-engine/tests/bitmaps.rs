//! Bitmap commands and LCS in the engine: what a node checks before it
//! proposes a write agrees with what apply answers, WATCH versions move
//! only on real changes, memory accounting returns to its start, the
//! string length limit bounds every growth, and LCS's work is bounded.

use cairn_engine::replicated::{apply_argv, apply_in_tx, check_argv};
use cairn_engine::{FrameReply, Keyspace};
use cairn_proto::Frame;

fn run(ks: &mut Keyspace, line: &str) -> Frame {
    let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    let mut out = FrameReply::new();
    apply_in_tx(ks, &argv, 1, &mut out);
    out.take().pop().unwrap_or(Frame::Null)
}

fn err(f: &Frame) -> String {
    match f {
        Frame::Error(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn check_refuses_what_apply_refuses_and_defers_only_limit_errors() {
    let bad = [
        "SETBIT k -1 1",
        "SETBIT k x 1",
        "SETBIT k 1 2",
        "SETBIT k 1 x",
        "BITOP NOT d a b",
        "BITOP NAND d a",
        "BITFIELD k GET u64 0",
        "BITFIELD k SET i8 0 x",
        "BITFIELD k GET i8 -1",
        "BITFIELD k OVERFLOW BAD",
        "BITFIELD k GET i8 0 FOO",
        "BITFIELD k SET i8 #-1 1",
    ];
    for line in bad {
        let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let mut ks = Keyspace::new(1);
        let Err(checked) = check_argv(&argv, 1) else {
            panic!("{line} passed the check")
        };
        let mut out = FrameReply::new();
        apply_argv(&mut ks, &argv, 1, &mut out);
        let applied = out.take().pop().expect("a reply");
        assert_eq!(err(&applied), checked, "{line}");
        assert!(ks.is_empty(), "{line} wrote");
    }
    // An offset past the smallest limit a server accepts may be fine
    // where it applies: left to apply, which answers Redis' error (the
    // offset's, even with a bad bit after it, as Redis checks it first).
    for line in [
        "SETBIT k 99999999999 2",
        "BITFIELD k GET i8 99999999999 GET x 0",
    ] {
        let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        assert!(check_argv(&argv, 1).is_ok(), "{line}");
        let mut ks = Keyspace::new(1);
        assert_eq!(
            err(&run(&mut ks, line)),
            "ERR bit offset is not an integer or out of range"
        );
    }
    // A bad argument after an offset in the smallest limit is refused.
    let argv: Vec<&[u8]> = "BITFIELD k GET i8 8191 GET x 0"
        .split(' ')
        .map(str::as_bytes)
        .collect();
    assert!(check_argv(&argv, 1)
        .unwrap_err()
        .contains("Invalid bitfield type"));
    for ok in [
        "SETBIT k 8 1",
        "BITOP AND d a b c",
        "BITFIELD k",
        "BITFIELD k GET i8 0",
    ] {
        let argv: Vec<&[u8]> = ok.split(' ').map(str::as_bytes).collect();
        assert!(check_argv(&argv, 1).is_ok(), "{ok}");
    }
}

#[test]
fn watch_versions_move_only_when_a_bit_changes() {
    let mut ks = Keyspace::new(1);
    let version = |ks: &mut Keyspace| ks.key_version(b"k", 1).0;
    assert_eq!(run(&mut ks, "SETBIT k 3 1"), Frame::Integer(0));
    let v = version(&mut ks);
    for same in [
        "SETBIT k 3 1",
        "SETBIT k 4 0",
        "BITFIELD k GET u8 0",
        "BITFIELD k SET u4 0 1",
        "BITFIELD k OVERFLOW FAIL INCRBY u4 0 100",
        "BITFIELD_RO k GET u8 0",
        "GETBIT k 3",
        "BITCOUNT k",
        "BITPOS k 1",
        "LCS k k",
    ] {
        run(&mut ks, same);
        assert_eq!(version(&mut ks), v, "{same} moved the version");
    }
    for changes in [
        "SETBIT k 3 0",
        "SETBIT k 100 0",
        "BITFIELD k INCRBY u4 0 1",
        "BITFIELD k SET u8 200 0",
        "BITOP NOT k k",
    ] {
        let before = version(&mut ks);
        run(&mut ks, changes);
        assert_ne!(version(&mut ks), before, "{changes} kept the version");
    }
    // A hash is left alone (WRONGTYPE changes nothing).
    run(&mut ks, "HSET h f v");
    let (vh, _) = ks.key_version(b"h", 1);
    assert!(err(&run(&mut ks, "SETBIT h 1 1")).starts_with("WRONGTYPE"));
    assert!(err(&run(&mut ks, "BITFIELD h SET u8 0 1")).starts_with("WRONGTYPE"));
    assert_eq!(ks.key_version(b"h", 1).0, vh);
}

#[test]
fn memory_accounting_follows_every_growth_and_returns_to_its_start() {
    let mut ks = Keyspace::new(1);
    // The index keeps its capacity: grow it first.
    let keys = ["n", "e", "big", "o", "o2", "new"];
    for k in keys {
        run(&mut ks, &format!("SET {k} 1"));
    }
    for k in keys {
        run(&mut ks, &format!("DEL {k}"));
    }
    let empty = ks.bytes_used();
    for line in [
        "SET n 12345",
        "SETBIT n 1 1",
        "SET e abc",
        "BITFIELD e SET u8 4000 7",
        "SETBIT big 80000 1",
        "SETBIT big 800000 1",
        "BITOP OR o big e n",
        "BITOP NOT o2 big",
        "BITFIELD new OVERFLOW FAIL INCRBY u2 0 9",
    ] {
        run(&mut ks, line);
    }
    assert!(ks.bytes_used() > empty + 100_000 + 100_000 + 500);
    // A raw string's usage counts its buffer.
    let pos = ks.find(b"big", 1).expect("stored");
    assert!(ks.usage_at(pos) >= 100_001);
    for k in keys {
        assert!(ks.remove(k.as_bytes(), 1).is_some(), "{k}");
    }
    assert_eq!(ks.bytes_used(), empty);
}

#[test]
fn growth_stops_at_the_string_length_limit() {
    let mut ks = Keyspace::new(1);
    ks.set_string_len_max(1024);
    assert_eq!(run(&mut ks, "SETBIT k 8191 1"), Frame::Integer(0));
    assert!(err(&run(&mut ks, "SETBIT k 8192 1")).contains("bit offset"));
    assert!(err(&run(&mut ks, "GETBIT k 8192")).contains("bit offset"));
    // A field from the last byte on: past the limit.
    let e = err(&run(&mut ks, "BITFIELD k SET u16 8184 1"));
    assert_eq!(
        e,
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    let e = err(&run(&mut ks, "BITFIELD fresh SET u16 8184 1"));
    assert!(e.contains("maximum allowed size"));
    assert!(!ks.contains(b"fresh", 1));
    assert_eq!(
        run(&mut ks, "BITFIELD k SET u8 8184 1"),
        Frame::Array(vec![Frame::Integer(1)])
    );
    assert_eq!(run(&mut ks, "STRLEN k"), Frame::Integer(1024));
    // LCS: Redis' rule, 4 bytes a cell against the limit.
    // (11 * 11 * 4 = 484 bytes; then 41 * 11 * 4 = 1804.)
    let a = "x".repeat(10);
    run(&mut ks, &format!("SET a {a}"));
    run(&mut ks, &format!("SET b {a}"));
    assert_eq!(run(&mut ks, "LCS a b LEN"), Frame::Integer(10));
    run(&mut ks, &format!("SET a {}", "x".repeat(40)));
    assert!(err(&run(&mut ks, "LCS a b LEN")).contains("exceeds proto-max-bulk-len"));
}

#[test]
fn lcs_work_is_bounded_whatever_the_limit() {
    let mut ks = Keyspace::new(1);
    ks.set_string_len_max(usize::MAX / 2);
    let long = "ab".repeat(8193);
    run(&mut ks, &format!("SET a {long}"));
    run(&mut ks, &format!("SET b {long}"));
    // 16387^2 > 2^27 cells.
    let e = err(&run(&mut ks, "LCS a b LEN"));
    assert!(e.contains("134217728"), "{e}");
    assert!(err(&run(&mut ks, "LCS a b IDX")).contains("134217728"));
    run(&mut ks, "SET b abba");
    assert_eq!(run(&mut ks, "LCS a b LEN"), Frame::Integer(4));
}

#[test]
fn replicas_applying_the_same_bit_writes_agree() {
    let lines = [
        "SET n -12",
        "SETBIT n 0 1",
        "BITFIELD n OVERFLOW SAT INCRBY i5 3 100 SET u7 #2 200",
        "BITOP XOR x n missing n",
        "SETBIT x 1000 1",
        "BITFIELD y OVERFLOW FAIL INCRBY u1 0 2",
        "SET h v EX 1",
        "BITOP OR h x",
    ];
    let (mut a, mut b) = (Keyspace::new(1), Keyspace::new(2));
    b.set_lazy_expire(false);
    for (i, line) in lines.iter().enumerate() {
        a.set_stamp(i as u64 + 1, 0);
        b.set_stamp(i as u64 + 1, 0);
        assert_eq!(run(&mut a, line), run(&mut b, line), "{line}");
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(
        run(&mut a, "GET y"),
        Frame::Bulk(vec![0]),
        "created by a failed write"
    );
}

/// The `replicated_apply` fuzz target's check, on its committed seeds
/// (fuzz/seeds/replicated_apply, bit commands among them): no panic,
/// and two keyspaces applying the same entries agree (in state always, in
/// replies unless the entry has a random read, whose replies depend on
/// each keyspace's own seed, as the target says).
#[test]
fn fuzz_seeds_apply_alike_on_two_replicas() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/seeds/replicated_apply"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/seeds/replicated_apply exists") {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        let Some((&t, rest)) = data.split_first() else {
            continue;
        };
        let (mut a, mut b) = (Keyspace::new(1), Keyspace::new(2));
        a.set_lazy_expire(false);
        b.set_lazy_expire(false);
        for (i, cmd) in rest.split(|&c| c == 0xff).take(64).enumerate() {
            let argv: Vec<&[u8]> = cmd.split(|&c| c == 0xfe).collect();
            let now = u64::from(t) * 1000 + i as u64;
            a.set_stamp(i as u64 + 1, 0);
            b.set_stamp(i as u64 + 1, 0);
            let (mut ra, mut rb) = (FrameReply::new(), FrameReply::new());
            apply_argv(&mut a, &argv, now, &mut ra);
            apply_argv(&mut b, &argv, now, &mut rb);
            let random = argv.iter().any(|a| {
                [
                    &b"SRANDMEMBER"[..],
                    b"HRANDFIELD",
                    b"ZRANDMEMBER",
                    b"RANDOMKEY",
                ]
                .iter()
                .any(|name| a.eq_ignore_ascii_case(name))
            });
            let (ra, rb) = (ra.take(), rb.take());
            if !random {
                assert_eq!(ra, rb, "{argv:?}");
            }
        }
        assert_eq!(a.digest(), b.digest());
        seen += 1;
    }
    assert!(seen >= 6, "{seen} seeds");
}

/// How long LCS takes at its bound (about 2^27 cells). Run in release:
/// `cargo test --release -p cairn-engine --test bitmaps -- --ignored`.
#[test]
#[ignore = "measurement; run in release"]
fn lcs_at_the_bound() {
    let mut ks = Keyspace::new(1);
    let n = 11_580; // (n+1)^2 just under 2^27
    let a: String = (0..n)
        .map(|i| (b'a' + (i * 7 % 13) as u8) as char)
        .collect();
    let b: String = (0..n)
        .map(|i| (b'a' + (i * 5 % 11) as u8) as char)
        .collect();
    run(&mut ks, &format!("SET a {a}"));
    run(&mut ks, &format!("SET b {b}"));
    for opt in ["LEN", "IDX"] {
        let t = std::time::Instant::now();
        let r = run(&mut ks, &format!("LCS a b {opt}"));
        assert!(!matches!(r, Frame::Error(_)), "{r:?}");
        eprintln!(
            "LCS {opt} of {} cells: {:?}",
            (n + 1) * (n + 1),
            t.elapsed()
        );
    }
}
