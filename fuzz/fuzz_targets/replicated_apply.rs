//! Fuzzes `replicated::apply_argv`, what every replica runs on each log
//! entry (a hostile or buggy peer could put anything there), CAIRN.EXEC
//! transactions included.
//!
//! Input: commands separated by 0xFF bytes, arguments by 0xFE; a first
//! byte picks the apply time. Checked: no panic, and applying the same
//! commands to a second keyspace gives the same state and the same
//! replies (apply is deterministic).

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
    for (i, entry) in rest.split(|&c| c == 0xff).take(64).enumerate() {
        let argv: Vec<&[u8]> = entry.split(|&c| c == 0xfe).collect();
        let now = u64::from(t) * 1000 + i as u64;
        a.set_stamp(i as u64 + 1, 0);
        b.set_stamp(i as u64 + 1, 0);
        let (mut ra, mut rb) = (FrameReply::new(), FrameReply::new());
        apply_argv(&mut a, &argv, now, &mut ra);
        apply_argv(&mut b, &argv, now, &mut rb);
        assert_eq!(ra.take(), rb.take(), "replies differ for {argv:?}");
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), b.len());
});
