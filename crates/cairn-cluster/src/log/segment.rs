//! Segment files and the per-group state that decides their lifetime:
//! naming, listing, creation (header + checkpoint, fsynced with the
//! directory), and the rule for deleting old ones.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{self, Checkpoint};
use super::MetaKey;

const SUFFIX: &str = ".log";
const SEQ_DIGITS: usize = 20;

/// What a checkpoint restates for one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub vote: Option<Bytes>,
    pub committed: Option<Bytes>,
    pub purged: Option<(u64, Bytes)>,
}

impl GroupMeta {
    pub fn purged_upto(&self) -> Option<u64> {
        self.purged.as_ref().map(|(upto, _)| *upto)
    }

    pub fn set(&mut self, key: MetaKey, value: Bytes) {
        match key {
            MetaKey::Vote => self.vote = Some(value),
            MetaKey::Committed => self.committed = Some(value),
        }
    }

    /// Purges only move forward: returns false (and changes nothing) for a
    /// purge below the current one.
    pub fn purge(&mut self, upto: u64, id: Bytes) -> bool {
        if self.purged_upto().is_some_and(|p| upto < p) {
            return false;
        }
        self.purged = Some((upto, id));
        true
    }

    pub fn is_empty(&self) -> bool {
        self.vote.is_none() && self.committed.is_none() && self.purged.is_none()
    }

    pub fn checkpoint(&self) -> Checkpoint<'_> {
        Checkpoint {
            vote: self.vote.as_deref(),
            committed: self.committed.as_deref(),
            purged: self.purged.as_ref().map(|(u, id)| (*u, &id[..])),
        }
    }
}

/// A segment on disk and the highest entry index each group wrote in it.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    pub seq: u64,
    pub path: PathBuf,
    pub max_index: BTreeMap<u16, u64>,
}

impl SegmentInfo {
    pub fn new(seq: u64, path: PathBuf) -> SegmentInfo {
        SegmentInfo {
            seq,
            path,
            max_index: BTreeMap::new(),
        }
    }

    pub fn saw_entries(&mut self, group: u16, last: u64) {
        let m = self.max_index.entry(group).or_insert(last);
        *m = (*m).max(last);
    }

    /// True when no entry in this segment can still be needed: for every
    /// group that wrote entries here, all of them are at or below its
    /// durable purge point. Only ever applied to the oldest segment, so
    /// the truncations and metadata it holds matter to nothing left
    /// (metadata is restated by the checkpoint heading the next segment).
    pub fn deletable(&self, meta: &BTreeMap<u16, GroupMeta>) -> bool {
        self.max_index.iter().all(|(g, &max)| {
            meta.get(g)
                .and_then(GroupMeta::purged_upto)
                .is_some_and(|p| max <= p)
        })
    }
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:0width$}{SUFFIX}", width = SEQ_DIGITS))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(seq) = e.file_name().to_str().and_then(parse_name) {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates segment `seq` holding its header and a checkpoint of every
/// group's metadata, durable (file and directory entry) on return.
/// Returns the file, positioned at its end, and its length.
pub(crate) fn create_segment(
    dir: &Path,
    seq: u64,
    meta: &BTreeMap<u16, GroupMeta>,
    buf: &mut Vec<u8>,
) -> io::Result<(File, u64)> {
    buf.clear();
    buf.extend_from_slice(&record::encode_segment_header(seq));
    for (&g, m) in meta.iter().filter(|(_, m)| !m.is_empty()) {
        let first = buf.len() == record::SEGMENT_HEADER_LEN;
        record::put_checkpoint(buf, g, first, &m.checkpoint());
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(segment_path(dir, seq))?;
    file.write_all(buf)?;
    file.sync_all()?;
    fsync_dir(dir)?;
    let len = buf.len() as u64;
    buf.clear();
    Ok((file, len))
}

/// An exclusive advisory lock on `dir/LOCK`, held while the file is open,
/// so two stores (or two nodes misconfigured onto one directory) never
/// write the same log.
pub(crate) fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{} is locked by another log store: {e}", path.display()),
        ));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_segment_names_parse() {
        assert_eq!(parse_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_name("0000000000000000042.log"), None);
        assert_eq!(parse_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_name("0000000000000000004x.log"), None);
        assert_eq!(
            parse_name("99999999999999999999.log"),
            None,
            "overflows u64"
        );
        let p = segment_path(Path::new("/d"), 7);
        assert_eq!(p, Path::new("/d/00000000000000000007.log"));
    }

    #[test]
    fn a_segment_is_deletable_only_when_every_group_purged_past_it() {
        let mut s = SegmentInfo::new(1, PathBuf::new());
        s.saw_entries(1, 10);
        s.saw_entries(2, 5);
        s.saw_entries(1, 7);
        let mut meta = BTreeMap::new();
        assert!(!s.deletable(&meta));
        meta.insert(1, GroupMeta::default());
        meta.get_mut(&1).unwrap().purge(10, Bytes::new());
        assert!(!s.deletable(&meta), "group 2 not purged");
        meta.insert(2, GroupMeta::default());
        meta.get_mut(&2).unwrap().purge(4, Bytes::new());
        assert!(!s.deletable(&meta), "group 2 purged short of 5");
        meta.get_mut(&2).unwrap().purge(5, Bytes::new());
        assert!(s.deletable(&meta));
        assert!(SegmentInfo::new(2, PathBuf::new()).deletable(&BTreeMap::new()));
    }

    #[test]
    fn purges_never_move_back() {
        let mut m = GroupMeta::default();
        assert!(m.purge(10, Bytes::from_static(b"a")));
        assert!(!m.purge(9, Bytes::from_static(b"b")));
        assert!(m.purge(10, Bytes::from_static(b"c")));
        assert_eq!(m.purged, Some((10, Bytes::from_static(b"c"))));
    }

    #[test]
    fn a_second_lock_on_a_directory_fails_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let a = lock_dir(d.path()).unwrap();
        assert!(lock_dir(d.path()).is_err());
        drop(a);
        lock_dir(d.path()).unwrap();
    }
}
