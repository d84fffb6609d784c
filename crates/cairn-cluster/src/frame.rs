//! Peer messages on the wire: one multiplexed TCP stream per node pair
//! carries frames of every Raft group.
//!
//! ```text
//! len: u32 BE   bytes after this field (version .. crc)
//! version: u8   FRAME_VERSION
//! group: u16 BE Raft group id (0 = meta group)
//! kind: u8      message kind (append, vote, snapshot chunk, ...)
//! payload       len - 8 bytes, the kind's encoding
//! crc: u32 BE   CRC-32C of version .. payload
//! ```

use crc::{Crc, Table, CRC_32_ISCSI};

/// 2: one connection per node pair, opened by HELLO frames (1: one
/// connection per direction, no HELLO).
pub const FRAME_VERSION: u8 = 2;
const HEADER: usize = 4;
/// version + group + kind + crc
const OVERHEAD: usize = 1 + 2 + 1 + 4;
/// Slice-by-16 tables: several times faster than byte-at-a-time on every
/// frame (the same CRC-32C values).
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFrame {
    pub group: u16,
    pub kind: u8,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerFrameError {
    #[error("peer frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("peer frame of {0} bytes is shorter than its fixed fields")]
    TooShort(usize),
    #[error("unsupported peer frame version {0} (this node speaks {FRAME_VERSION})")]
    Version(u8),
    #[error("peer frame checksum mismatch")]
    Checksum,
}

impl PeerFrame {
    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_parts(self.group, self.kind, &[&self.payload], out);
    }
}

/// Appends the encoding of a frame whose payload is `parts` one after
/// another, without first gathering them into one buffer.
pub fn encode_parts(group: u16, kind: u8, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len = OVERHEAD + parts.iter().map(|p| p.len()).sum::<usize>();
    out.reserve(HEADER + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    let body_start = out.len();
    out.push(FRAME_VERSION);
    out.extend_from_slice(&group.to_be_bytes());
    out.push(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    let crc = CRC32C.checksum(&out[body_start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

impl PeerFrame {
    /// Decodes one frame from the front of `buf`: `Ok(None)` when more
    /// bytes are needed, else the frame and the bytes it used. `len_max`
    /// bounds the announced length before any allocation.
    pub fn decode(
        buf: &[u8],
        len_max: usize,
    ) -> Result<Option<(PeerFrame, usize)>, PeerFrameError> {
        let Some(header) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > len_max {
            return Err(PeerFrameError::TooLong { len, max: len_max });
        }
        if len < OVERHEAD {
            return Err(PeerFrameError::TooShort(len));
        }
        let Some(body) = buf.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        let (content, crc) = body.split_at(len - 4);
        let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        // Version first: a newer peer's frame should say so, not "corrupt".
        if content[0] != FRAME_VERSION {
            return Err(PeerFrameError::Version(content[0]));
        }
        if CRC32C.checksum(content) != crc {
            return Err(PeerFrameError::Checksum);
        }
        let frame = PeerFrame {
            group: u16::from_be_bytes([content[1], content[2]]),
            kind: content[3],
            payload: content[4..].to_vec(),
        };
        Ok(Some((frame, HEADER + len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = PeerFrame> {
        (
            any::<u16>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(group, kind, payload)| PeerFrame {
                group,
                kind,
                payload,
            })
    }

    proptest! {
        #[test]
        fn frames_round_trip_back_to_back(frames in proptest::collection::vec(arb_frame(), 1..5)) {
            let mut buf = Vec::new();
            for f in &frames {
                f.encode(&mut buf);
            }
            let mut off = 0;
            for f in &frames {
                let (got, used) = PeerFrame::decode(&buf[off..], 1 << 20).unwrap().unwrap();
                prop_assert_eq!(&got, f);
                off += used;
            }
            prop_assert_eq!(off, buf.len());
        }

        #[test]
        fn every_strict_prefix_is_incomplete(f in arb_frame()) {
            let mut buf = Vec::new();
            f.encode(&mut buf);
            for cut in 0..buf.len() {
                prop_assert_eq!(PeerFrame::decode(&buf[..cut], 1 << 20), Ok(None));
            }
        }

        #[test]
        fn any_flipped_bit_after_the_length_is_detected(f in arb_frame(), bit in any::<usize>()) {
            let mut buf = Vec::new();
            f.encode(&mut buf);
            let at = HEADER * 8 + bit % ((buf.len() - HEADER) * 8);
            buf[at / 8] ^= 1 << (at % 8);
            let r = PeerFrame::decode(&buf, 1 << 20);
            prop_assert!(matches!(r, Err(PeerFrameError::Checksum) | Err(PeerFrameError::Version(_))), "{:?}", r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PeerFrame::decode(&bytes, 1024);
        }
    }

    #[test]
    fn oversized_and_undersized_lengths_are_refused_before_allocating() {
        assert_eq!(
            PeerFrame::decode(&[0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(PeerFrameError::TooLong {
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
        assert_eq!(
            PeerFrame::decode(&[0, 0, 0, 3, 1, 0, 0], 1 << 20),
            Err(PeerFrameError::TooShort(3))
        );
    }

    #[test]
    fn a_payload_in_parts_encodes_as_the_whole_payload() {
        let (a, b) = (
            b"\x00\x00\x00\x00\x00\x00\x00\x07".as_slice(),
            b"body".as_slice(),
        );
        let mut parts = Vec::new();
        super::encode_parts(3, 1, &[a, b], &mut parts);
        let mut whole = Vec::new();
        PeerFrame {
            group: 3,
            kind: 1,
            payload: [a, b].concat(),
        }
        .encode(&mut whole);
        assert_eq!(parts, whole);
    }

    #[test]
    fn other_versions_are_named() {
        let mut buf = Vec::new();
        PeerFrame {
            group: 1,
            kind: 2,
            payload: vec![3],
        }
        .encode(&mut buf);
        buf[HEADER] = 9;
        assert_eq!(
            PeerFrame::decode(&buf, 1 << 20),
            Err(PeerFrameError::Version(9))
        );
    }
}
