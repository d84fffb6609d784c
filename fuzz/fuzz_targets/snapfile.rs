//! Fuzzes `snapfile::decode`, the reader of a group's snapshot file on
//! disk (a corrupted or hostile file is arbitrary bytes), and the peer
//! message bodies a node decodes from the network: an accepted snapshot
//! file re-encodes to the same bytes.

#![no_main]

use cairn_cluster::snapfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((meta, body)) = snapfile::decode(data) {
        // Version 2 files come back as version 3 payloads.
        if data[8] == 3 {
            let again = snapfile::encode(&meta, &body).expect("re-encode");
            assert_eq!(again, data, "re-encoding differs");
        }
        snapfile::split_payload(&body).expect("a decoded file holds a payload");
    }
    let _ = snapfile::split_payload(data);
    let _ = cairn_cluster::decode_argvs(data, |_| {});
    cairn_cluster::fuzz_peer_bodies(data);
});
