//! Fuzzes `snapshot::read` (restoring a keyspace snapshot) and `write`.
//!
//! The first input byte chooses the mode. Even: the rest is a whole
//! snapshot stream, as it would come from disk or a peer (header, chunk
//! framing, checksums). Odd: the rest is record bytes, which `seal` wraps
//! in a header, chunks of `ctl / 2 + 1` bytes and a trailer with valid
//! checksums, so the fuzzer reaches the record decoder; the trailer's key
//! count is the first of those bytes. Checked:
//!
//! * no panic (and, through libFuzzer's -rss_limit_mb / -malloc_limit_mb,
//!   no allocation beyond what the input can justify);
//! * an accepted snapshot re-encodes to a stream that reads back to the
//!   same state: same digest and length, and encoding it again gives the
//!   same bytes (the encoding covers everything a snapshot carries);
//! * `SnapshotInfo` agrees with the bytes read and the keys restored.

#![no_main]

use cairn_engine::snapshot::{read, seal, write};
use libfuzzer_sys::fuzz_target;

const SEED: u64 = 0x5eed;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let sealed;
    let stream = if ctl % 2 == 0 {
        input
    } else {
        let (keys, records) = input.split_first().map_or((0, input), |(&k, r)| (k, r));
        sealed = seal(1, records, u64::from(keys), usize::from(ctl / 2) + 1);
        &sealed[..]
    };
    let mut r = stream;
    let Ok((ks, info)) = read(&mut r, SEED) else {
        return;
    };
    assert_eq!(info.keys, ks.len() as u64);
    assert_eq!(info.bytes, (stream.len() - r.len()) as u64, "bytes read");

    let mut first = Vec::new();
    let info = write(&ks, &mut first).expect("a restored keyspace writes");
    assert_eq!(info.bytes, first.len() as u64);
    let (again, info) = match read(&mut &first[..], SEED) {
        Ok(ok) => ok,
        Err(e) => panic!("re-encoded snapshot does not read back: {e}"),
    };
    assert_eq!(info.keys, ks.len() as u64);
    assert_eq!(again.len(), ks.len());
    assert_eq!(again.digest(), ks.digest());
    let mut second = Vec::new();
    write(&again, &mut second).expect("a restored keyspace writes");
    assert!(first == second, "re-encoding is not a fixed point");
});
