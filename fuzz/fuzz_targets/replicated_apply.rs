//! Fuzzes `replicated::apply_argv`, what every replica runs on each log
//! entry (a hostile or buggy peer could put anything there), CAIRN.EXEC
//! transactions included.
//!
//! Input: commands separated by 0xFF bytes, arguments by 0xFE; a first
//! byte picks the apply time. Checked: no panic, and applying the same
//! commands to a second keyspace gives the same state and the same
//! replies (apply is deterministic).
//!
//! Strings are capped at 1 MiB here (`proto-max-bulk-len`, 512 MiB by
//! default, is a setting): `SETBIT k 4294967295 1` legitimately allocates
//! 512 MiB, which is the operator's limit to choose, not a bug, and would
//! trip libFuzzer's 256 MiB allocation limit.
//!
//! The two keyspaces have different seeds on purpose (hash order must not
//! leak into the state), so the replies of the random reads (SRANDMEMBER,
//! HRANDFIELD, ZRANDMEMBER, RANDOMKEY, also inside CAIRN.EXEC) differ
//! between them, as between a leader and its followers, where only the
//! leader answers: for an entry that names one, only the states are compared.
//! Such an entry with a count over 4,096 is skipped: a million draws
//! (the documented bound) is a few hundred MiB of captured reply frames
//! under the sanitizer, over libFuzzer's memory limit.

#![no_main]

use cairn_engine::reply::FrameReply;
use cairn_engine::{replicated::apply_argv, Keyspace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&t, rest)) = data.split_first() else {
        return;
    };
    let (mut a, mut b) = (Keyspace::new(1), Keyspace::new(2));
    a.set_lazy_expire(false);
    b.set_lazy_expire(false);
    a.set_string_len_max(1 << 20);
    b.set_string_len_max(1 << 20);
    for (i, entry) in rest.split(|&c| c == 0xff).take(64).enumerate() {
        let argv: Vec<&[u8]> = entry.split(|&c| c == 0xfe).collect();
        let random = argv.iter().any(|a| is_random_read(a));
        if random && argv.iter().any(|a| is_big_count(a)) {
            continue;
        }
        let now = u64::from(t) * 1000 + i as u64;
        a.set_stamp(i as u64 + 1, 0);
        b.set_stamp(i as u64 + 1, 0);
        let (mut ra, mut rb) = (FrameReply::new(), FrameReply::new());
        apply_argv(&mut a, &argv, now, &mut ra);
        apply_argv(&mut b, &argv, now, &mut rb);
        let (ra, rb) = (ra.take(), rb.take());
        if !random {
            assert_eq!(ra, rb, "replies differ for {argv:?}");
        }
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), b.len());
});

fn is_random_read(arg: &[u8]) -> bool {
    [&b"SRANDMEMBER"[..], b"HRANDFIELD", b"ZRANDMEMBER", b"RANDOMKEY"]
        .iter()
        .any(|name| arg.eq_ignore_ascii_case(name))
}

fn is_big_count(arg: &[u8]) -> bool {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|n| n.unsigned_abs() > 4096)
}
