//! Fuzzes `wire::decode_batch`, the decoder of the Raft message batches
//! peers send (one frame per peer per loop iteration), and the decoders of
//! what a batch carries onward: entry data and log entries.
//!
//! Checked: no panic, no allocation beyond the input; a decoded batch
//! re-encodes to a batch that decodes to the same messages.

#![no_main]

use cairn_cluster::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = wire::decode_batch(data) {
        let mut again = Vec::new();
        for (g, m) in &msgs {
            wire::put_message(&mut again, *g, m);
        }
        if !msgs.is_empty() {
            assert_eq!(wire::decode_batch(&again).as_ref(), Ok(&msgs));
        }
    }
    let _ = wire::decode_entry_data(data);
    cairn_cluster::fuzz_peer_bodies(data);
});
