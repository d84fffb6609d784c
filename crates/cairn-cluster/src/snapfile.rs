//! The file holding a group's latest snapshot:
//!
//! ```text
//! magic "CAIRNSNF" | version u8 = 3 | meta_len u32 LE | meta (postcard)
//! | data_len u64 LE | data (a payload) | crc32c u32 LE of all before
//! payload: version u8 = 1 | ts_ms u64 LE | keyspace snapshot (the host's)
//! ```
//!
//! The payload is also what a leader sends a follower in a Raft snapshot
//! message. `ts_ms` is the leader time of the last entry applied in it:
//! apply never lets a group's time run backwards (`Stamp`), and a replica
//! restored from a snapshot must clamp the next entries exactly as the
//! replicas that applied them one by one. Version 2 files (no payload
//! header; the data is the keyspace snapshot) still load, with time 0.
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
const VERSION: u8 = 3;
const PAYLOAD_VERSION: u8 = 1;
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
/// A snapshot payload: the last applied entry's leader time and the
/// host's keyspace snapshot.
pub fn payload(ts_ms: u64, keyspace: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + keyspace.len());
    out.push(PAYLOAD_VERSION);
    out.extend_from_slice(&ts_ms.to_le_bytes());
    out.extend_from_slice(keyspace);
    out
}

/// Splits a payload (from a file or a peer: untrusted) into its time and
/// keyspace snapshot.
pub fn split_payload(buf: &[u8]) -> std::io::Result<(u64, &[u8])> {
    match buf.split_first() {
        Some((&PAYLOAD_VERSION, rest)) if rest.len() >= 8 => {
            let (ts, ks) = rest.split_at(8);
            let mut n = [0u8; 8];
            n.copy_from_slice(ts);
            Ok((u64::from_le_bytes(n), ks))
        }
        Some((&v, _)) if v != PAYLOAD_VERSION => Err(bad(format!(
            "unsupported snapshot payload version {v} (this release reads {PAYLOAD_VERSION})"
        ))),
        _ => Err(bad("snapshot payload truncated")),
    }
}

/// Decodes a file: its metadata and payload (a version 2 file's data is
/// returned as a payload with time 0).
pub fn decode(buf: &[u8]) -> std::io::Result<(SnapshotMeta, Vec<u8>)> {
    if buf.len() < 8 + 1 + 4 + 8 + 4 || &buf[..8] != MAGIC {
        return Err(bad("not a cairn snapshot file"));
    }
    let version = buf[8];
    if version != VERSION && version != 2 {
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
    if version == 2 {
        return Ok((meta, payload(0, &body[pos..])));
    }
    split_payload(&body[pos..])?;
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
        let data = payload(1_700_000_000_123, b"keyspace bytes");
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
    fn a_payload_carries_its_time_and_a_version_2_file_loads_with_time_0() {
        let p = payload(42, b"ks");
        assert_eq!(split_payload(&p).unwrap(), (42, &b"ks"[..]));
        for n in 0..9 {
            assert!(
                split_payload(&p[..n]).is_err(),
                "truncation at {n} accepted"
            );
        }
        let mut v = p.clone();
        v[0] = 7;
        assert!(split_payload(&v)
            .unwrap_err()
            .to_string()
            .contains("version 7"));
        // A file written before payloads existed: version 2, raw keyspace.
        let mut old = encode(&meta(), b"old keyspace").unwrap();
        old[8] = 2;
        let body = old.len() - 4;
        let crc = CRC32C.checksum(&old[..body]);
        old[body..].copy_from_slice(&crc.to_le_bytes());
        let (m, d) = decode(&old).unwrap();
        assert_eq!(m, meta());
        assert_eq!(split_payload(&d).unwrap(), (0, &b"old keyspace"[..]));
    }

    #[test]
    fn file_replace_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g1.snap");
        assert!(read(&p).unwrap().is_none());
        write(&p, &meta(), &payload(1, b"one")).unwrap();
        write(&p, &meta(), &payload(2, b"two")).unwrap();
        assert_eq!(read(&p).unwrap().unwrap().1, payload(2, b"two"));
        assert!(!p.with_extension("tmp").exists());
    }
}
