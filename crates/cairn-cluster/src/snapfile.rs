//! The file holding a group's latest snapshot:
//!
//! ```text
//! magic "CAIRNSNF" | version u8 | meta_len u32 LE | meta (postcard)
//! | data_len u64 LE | data (engine snapshot) | crc32c u32 LE of all before
//! ```
//!
//! Written to a temporary name, fsynced, renamed over the old file, and
//! the directory fsynced, so a crash leaves either the old or the new
//! snapshot, never a torn one. Read back, every length is checked against
//! the file size before anything is allocated.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use crc::{Crc, Table, CRC_32_ISCSI};

/// Where a snapshot stands in its group's log, and the group's
/// membership there (raft-rs' `SnapshotMetadata`, in a format of ours).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl SnapshotMeta {
    pub fn from_raft(m: &raft::eraftpb::SnapshotMetadata) -> SnapshotMeta {
        let cs = m.conf_state.clone().unwrap_or_default();
        SnapshotMeta {
            index: m.index,
            term: m.term,
            voters: cs.voters,
            learners: cs.learners,
            voters_outgoing: cs.voters_outgoing,
            learners_next: cs.learners_next,
            auto_leave: cs.auto_leave,
        }
    }

    pub fn to_raft(&self) -> raft::eraftpb::SnapshotMetadata {
        raft::eraftpb::SnapshotMetadata {
            index: self.index,
            term: self.term,
            conf_state: Some(raft::eraftpb::ConfState {
                voters: self.voters.clone(),
                learners: self.learners.clone(),
                voters_outgoing: self.voters_outgoing.clone(),
                learners_next: self.learners_next.clone(),
                auto_leave: self.auto_leave,
            }),
        }
    }
}

const MAGIC: &[u8; 8] = b"CAIRNSNF";
/// 1 was the openraft engine's (refused: its metadata differs).
const VERSION: u8 = 2;
/// Slice-by-16 tables: several times faster than byte-at-a-time on every
/// snapshot (the same CRC-32C values).
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);
const META_MAX: usize = 16 << 20;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

pub fn encode(meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let m = postcard::to_allocvec(meta).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(8 + 1 + 4 + m.len() + 8 + data.len() + 4);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a snapshot file's bytes. Never panics on any input.
pub fn decode(buf: &[u8]) -> std::io::Result<(SnapshotMeta, Vec<u8>)> {
    if buf.len() < 8 + 1 + 4 + 8 + 4 || &buf[..8] != MAGIC {
        return Err(bad("not a cairn snapshot file"));
    }
    if buf[8] != VERSION {
        return Err(bad(format!(
            "unsupported snapshot file version {} (this release reads {VERSION}; version 1 \
             files were written by the openraft engine)",
            buf[8]
        )));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC32C.checksum(body) != crc {
        return Err(bad("snapshot file checksum mismatch"));
    }
    let mut pos = 9;
    let mlen = u32::from_le_bytes([body[9], body[10], body[11], body[12]]) as usize;
    pos += 4;
    if mlen > META_MAX || pos + mlen + 8 > body.len() {
        return Err(bad("snapshot metadata length out of range"));
    }
    let meta: SnapshotMeta =
        postcard::from_bytes(&body[pos..pos + mlen]).map_err(|e| bad(e.to_string()))?;
    pos += mlen;
    let mut n = [0u8; 8];
    n.copy_from_slice(&body[pos..pos + 8]);
    pos += 8;
    let dlen = u64::from_le_bytes(n);
    if dlen != (body.len() - pos) as u64 {
        return Err(bad("snapshot data length does not match the file"));
    }
    Ok((meta, body[pos..].to_vec()))
}

/// Reads the snapshot at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    decode(&buf)
        .map(Some)
        .map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Replaces the snapshot at `path` atomically and durably.
pub fn write(path: &Path, meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<()> {
    let bytes = encode(meta, data)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            index: 42,
            term: 3,
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..Default::default()
        }
    }

    #[test]
    fn metadata_converts_to_raft_and_back() {
        assert_eq!(SnapshotMeta::from_raft(&meta().to_raft()), meta());
    }

    #[test]
    fn a_version_1_file_is_refused_by_name() {
        let mut buf = encode(&meta(), b"x").unwrap();
        buf[8] = 1;
        let e = decode(&buf).unwrap_err().to_string();
        assert!(e.contains("openraft"), "{e}");
    }

    #[test]
    fn round_trip_and_every_flipped_byte_is_rejected() {
        let data = b"keyspace bytes".to_vec();
        let buf = encode(&meta(), &data).unwrap();
        let (m, d) = decode(&buf).unwrap();
        assert_eq!(m, meta());
        assert_eq!(d, data);
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x20;
            assert!(decode(&b).is_err(), "flip at {i} accepted");
        }
        for n in 0..buf.len() {
            assert!(decode(&buf[..n]).is_err(), "truncation at {n} accepted");
        }
    }

    #[test]
    fn file_replace_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g1.snap");
        assert!(read(&p).unwrap().is_none());
        write(&p, &meta(), b"one").unwrap();
        write(&p, &meta(), b"two").unwrap();
        assert_eq!(read(&p).unwrap().unwrap().1, b"two");
        assert!(!p.with_extension("tmp").exists());
    }
}
