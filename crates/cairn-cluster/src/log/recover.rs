//! Replay at open: read every segment in order, apply its records, cut a
//! torn tail off the last segment, refuse anything else that is damaged.
//!
//! The one thing not to get wrong: only bytes that were never fsynced may
//! be dropped. The writer issues one write per batch and only writes the
//! next batch after the previous one's fsync returned, and it flags the
//! first record of each batch (BATCH_START). So damage at offset X of the
//! last segment is a torn tail only if no complete BATCH_START record
//! follows X; if one does, the damaged bytes had been fsynced, and opening
//! anyway would silently lose acknowledged entries.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use bytes::Bytes;

use super::record::{self, Body, HeaderError, Record, RecordError};
use super::segment::{self, GroupMeta, SegmentInfo};
use super::{GroupRecovered, Recovered};

/// Bytes the torn-tail check may checksum while looking for a later
/// batch (it only checksums candidates with a plausible header, so real
/// torn tails, mostly zeros or a cut-off batch, cost far less).
const TAIL_SCAN_BUDGET_BYTES: usize = 1 << 30;

pub(crate) struct Replayed {
    pub recovered: Recovered,
    pub segments: VecDeque<SegmentInfo>,
    pub meta: BTreeMap<u16, GroupMeta>,
}

#[derive(Default)]
struct GroupState {
    meta: GroupMeta,
    entries: BTreeMap<u64, Bytes>,
}

fn corrupt(path: &Path, msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("log segment {}: {msg}", path.display()),
    )
}

/// Creates `dir` and any missing ancestors, fsyncing each new entry's
/// parent: acknowledged appends must not vanish with a directory entry.
fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        p = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        let parent = d.parent().filter(|p| !p.as_os_str().is_empty());
        segment::fsync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

pub(crate) fn replay(dir: &Path) -> io::Result<Replayed> {
    create_dir_durably(dir)?;
    let files = segment::list_segments(dir)?;
    for w in files.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(corrupt(
                &w[1].1,
                format!("segment {} is missing before it", w[0].0 + 1),
            ));
        }
    }
    let mut groups: BTreeMap<u16, GroupState> = BTreeMap::new();
    let mut segments = VecDeque::with_capacity(files.len());
    for (i, (seq, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        if let Some(info) = replay_segment(dir, *seq, path, last, &mut groups)? {
            segments.push_back(info);
        }
    }
    let mut recovered = Recovered::default();
    let mut meta = BTreeMap::new();
    for (g, st) in groups {
        let entries = contiguous_prefix(g, st.entries, st.meta.purged_upto());
        if st.meta.is_empty() && entries.is_empty() {
            continue;
        }
        recovered.groups.insert(
            g,
            GroupRecovered {
                vote: st.meta.vote.clone(),
                committed: st.meta.committed.clone(),
                purged: st.meta.purged.clone(),
                entries,
            },
        );
        meta.insert(g, st.meta);
    }
    Ok(Replayed {
        recovered,
        segments,
        meta,
    })
}

/// Replays one segment into `groups`. Returns `None` when the segment was
/// the last one and held nothing but a torn header (it is removed).
fn replay_segment(
    dir: &Path,
    seq: u64,
    path: &Path,
    last: bool,
    groups: &mut BTreeMap<u16, GroupState>,
) -> io::Result<Option<SegmentInfo>> {
    let bytes = std::fs::read(path)?;
    match record::decode_segment_header(&bytes) {
        Ok(s) if s == seq => {}
        Ok(s) => return Err(corrupt(path, format!("header names segment {s}"))),
        Err(e @ HeaderError::Version(_)) => return Err(corrupt(path, e)),
        Err(e) => {
            if last && record::find_batch_start(&bytes, 0, TAIL_SCAN_BUDGET_BYTES).is_none() {
                // A crash while the segment was being created: its
                // header and checkpoint were never fsynced, and the
                // segments before it are complete.
                tracing::warn!(file = %path.display(), error = %e, "removing a torn new log segment");
                std::fs::remove_file(path)?;
                segment::fsync_dir(dir)?;
                return Ok(None);
            }
            return Err(corrupt(path, e));
        }
    }
    let mut info = SegmentInfo::new(seq, path.to_path_buf());
    let mut at = record::SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        match record::decode_record(&bytes[at..]) {
            Ok((rec, used)) => {
                apply(rec, groups, &mut info);
                at += used;
            }
            Err(_) if last && bytes[at..].iter().all(|&b| b == 0) => {
                // The zeros the writer writes ahead of its data: the log
                // ends here (a crash kept them from being trimmed).
                tracing::debug!(file = %path.display(), offset = at, "trimming the zeros after the log's end");
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(at as u64)?;
                f.sync_all()?;
                break;
            }
            Err(e) => {
                check_torn_tail(path, &bytes, at, last, &e)?;
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = bytes.len() - at,
                    error = %e,
                    "cutting a torn tail off the log (a write the crash interrupted)"
                );
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(at as u64)?;
                f.sync_all()?;
                break;
            }
        }
    }
    Ok(Some(info))
}

/// Ok when the bad record at `at` may be cut off as a torn tail; an error
/// naming the file and offset otherwise.
fn check_torn_tail(
    path: &Path,
    bytes: &[u8],
    at: usize,
    last: bool,
    e: &RecordError,
) -> io::Result<()> {
    if !last {
        return Err(corrupt(path, format!("bad record at offset {at}: {e}")));
    }
    if e.checksum_verified() {
        return Err(corrupt(
            path,
            format!("record at offset {at} has a valid checksum but cannot be read: {e}"),
        ));
    }
    if let Some(next) = record::find_batch_start(bytes, at + 1, TAIL_SCAN_BUDGET_BYTES) {
        return Err(corrupt(
            path,
            format!(
                "bad record at offset {at} ({e}) is followed by a complete batch at \
                 offset {next}, so it was durable: refusing to drop it"
            ),
        ));
    }
    Ok(())
}

/// Removes every entry at or below `upto`.
fn drop_through(entries: &mut BTreeMap<u64, Bytes>, upto: u64) {
    match upto.checked_add(1) {
        Some(keep_from) => *entries = entries.split_off(&keep_from),
        None => entries.clear(),
    }
}

fn apply(rec: Record<'_>, groups: &mut BTreeMap<u16, GroupState>, info: &mut SegmentInfo) {
    let st = groups.entry(rec.group).or_default();
    match rec.body {
        Body::Entries { first, entries } => {
            // The decoder guarantees at least one entry and no overflow.
            info.saw_entries(rec.group, first + (entries.len() as u64 - 1));
            // An append replaces the log from its first index on.
            st.entries.split_off(&first);
            let purged = st.meta.purged_upto();
            for (index, e) in (first..).zip(entries) {
                if purged.is_none_or(|p| index > p) {
                    st.entries.insert(index, Bytes::copy_from_slice(e));
                }
            }
        }
        Body::Truncate { from } => {
            st.entries.split_off(&from);
        }
        Body::Purge { upto, id } => {
            if st.meta.purge(upto, Bytes::copy_from_slice(id)) {
                drop_through(&mut st.entries, upto);
            }
        }
        Body::Meta { key, value } => st.meta.set(key, Bytes::copy_from_slice(value)),
        Body::Checkpoint(cp) => {
            if let Some(v) = cp.vote {
                st.meta.vote = Some(Bytes::copy_from_slice(v));
            }
            if let Some(c) = cp.committed {
                st.meta.committed = Some(Bytes::copy_from_slice(c));
            }
            if let Some((upto, id)) = cp.purged {
                if st.meta.purge(upto, Bytes::copy_from_slice(id)) {
                    drop_through(&mut st.entries, upto);
                }
            }
        }
    }
}

/// The entries Raft can use: a run of consecutive indices starting
/// right after the purge point (or anywhere when nothing was purged).
///
/// Records are replayed in write order and a crash only cuts a suffix, so
/// a correctly used store never has a gap. One appears only if the caller
/// appended past its last index (say 10 after 5) and never overwrote that
/// stretch: keeping the prefix gives Raft a consistent log, and it
/// fetches the rest from the leader (whose append at 6 then replaces the
/// stray entries on disk as well).
pub(crate) fn contiguous_prefix(
    group: u16,
    entries: BTreeMap<u64, Bytes>,
    purged: Option<u64>,
) -> Vec<(u64, Bytes)> {
    let total = entries.len();
    let mut expect = purged.map(|p| p.wrapping_add(1));
    let mut out = Vec::with_capacity(total);
    for (index, e) in entries {
        if expect.is_some_and(|x| x != index) {
            break;
        }
        out.push((index, e));
        expect = Some(index.wrapping_add(1));
    }
    if out.len() < total {
        tracing::warn!(
            group,
            kept = out.len(),
            dropped = total - out.len(),
            "log entries after a gap were dropped at recovery"
        );
    }
    out
}
