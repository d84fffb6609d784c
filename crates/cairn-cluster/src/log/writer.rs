//! The writer thread: owns the segment files, turns queued operations into
//! one write and one fdatasync per batch, then completes them.
//!
//! The one thing not to get wrong: completion only after the fsync of the
//! batch returned, and after any write or sync error, never again a
//! success (the store is failed for good; reopen to recover).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;

#[cfg(not(test))]
use super::record::PAYLOAD_LEN_MAX;
use super::record::{self, ENTRY_LEN_MAX, VALUE_LEN_MAX};
use super::segment::{self, GroupMeta, SegmentInfo};
use super::{LogOptions, MetaKey, Stats};

pub(crate) type Callback = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Who hears that an operation is durable.
pub(crate) enum Done {
    Callback(Callback),
    Waiter(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl Done {
    fn complete(self, r: io::Result<()>) {
        match self {
            Done::Callback(f) => f(r),
            Done::Waiter(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

pub(crate) enum Op {
    Append {
        group: u16,
        entries: Vec<(u64, Bytes)>,
        done: Callback,
    },
    Truncate {
        group: u16,
        from: u64,
    },
    Purge {
        group: u16,
        upto: u64,
        id: Bytes,
    },
    /// `done: None` is a lazy value nobody waits for: written with the
    /// batch it lands in, durable with the next fsync, and never the
    /// reason for one (a group's commit point: see `save_meta_lazy`).
    Meta {
        group: u16,
        key: MetaKey,
        value: Bytes,
        done: Option<Done>,
    },
    Sync {
        done: Done,
    },
    /// Ends the writer's use of the directory (see `LogStore::close`).
    Close {
        done: Done,
    },
    /// Several ops queued as one message, taken whole into one batch
    /// (`LogStore::submit`). Never holds `Close` or another `Batch`.
    Batch(Vec<Op>),
}

/// Entries records are cut at this payload size (a single larger entry
/// gets a record of its own, up to the format's limit). Small in tests so
/// that every test exercises the split.
#[cfg(not(test))]
const SPLIT_PAYLOAD_BYTES: usize = PAYLOAD_LEN_MAX;
#[cfg(test)]
const SPLIT_PAYLOAD_BYTES: usize = 2048;

/// Zeros written ahead of the data each time the data reaches the end of
/// the segment file (small in tests, so that tests cross it often).
#[cfg(not(test))]
const PREALLOC_BYTES: u64 = 1 << 20;
#[cfg(test)]
pub(crate) const PREALLOC_BYTES: u64 = 3000;

/// Smallest cost of an op, so a batch of tiny ops is bounded in count too.
const OP_COST_MIN_BYTES: usize = 64;

impl Op {
    /// Completes the op without writing it (volatile store, failure).
    pub(crate) fn complete(self, r: io::Result<()>) {
        match self {
            Op::Append { done, .. } => done(r),
            Op::Meta {
                done: Some(done), ..
            }
            | Op::Sync { done }
            | Op::Close { done } => done.complete(r),
            Op::Truncate { .. } | Op::Purge { .. } | Op::Meta { done: None, .. } => {}
            Op::Batch(ops) => {
                for op in ops {
                    op.complete(r.as_ref().map(|_| ()).map_err(clone_error));
                }
            }
        }
    }

    fn cost_bytes(&self) -> usize {
        let payload = match self {
            Op::Append { entries, .. } => entries.iter().map(|(_, e)| e.len() + 16).sum(),
            Op::Purge { id, .. } => id.len(),
            Op::Meta { value, .. } => value.len(),
            Op::Truncate { .. } | Op::Sync { .. } | Op::Close { .. } => 0,
            Op::Batch(ops) => return ops.iter().map(Op::cost_bytes).sum(),
        };
        payload.max(OP_COST_MIN_BYTES)
    }
}

/// Adds an op to the batch being gathered, a `Batch` as its parts (in
/// order); returns its cost.
fn take(batch: &mut Vec<Op>, op: Op) -> usize {
    let cost = op.cost_bytes();
    match op {
        Op::Batch(ops) => batch.extend(ops),
        op => batch.push(op),
    }
    cost
}

fn closed() -> io::Error {
    io::Error::other("log store is closed")
}

fn clone_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// Fault injection for tests: fail the next write or fsync, or hold the
/// writer just before it fsyncs.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    pub fail_write: std::sync::atomic::AtomicBool,
    pub fail_fsync: std::sync::atomic::AtomicBool,
    pub fsync_gate: parking_lot::Mutex<()>,
}

#[cfg(test)]
impl TestHooks {
    fn injected(flag: &std::sync::atomic::AtomicBool, what: &str) -> io::Result<()> {
        if flag.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        Ok(())
    }
}

pub(crate) struct Writer {
    dir: PathBuf,
    opts: LogOptions,
    /// The newest segment, open for appending.
    file: File,
    /// Where the next batch goes: the end of what was written.
    file_len: u64,
    /// The file's size: zeros past `file_len` written ahead of the data
    /// (see [`PREALLOC_BYTES`]).
    alloc_len: u64,
    /// Oldest first; the last one is `file`.
    segments: VecDeque<SegmentInfo>,
    meta: BTreeMap<u16, GroupMeta>,
    /// Encoding buffer of the current batch, reused.
    buf: Vec<u8>,
    /// Completions of the current batch, reused.
    pending: Vec<Done>,
    /// Bytes were written since the last fsync (lazy meta values).
    unsynced: bool,
    /// Set by the first write, sync or rotation error: (kind, message).
    failed: Option<(io::ErrorKind, String)>,
    stats: Arc<Stats>,
    _lock: File,
    #[cfg(test)]
    hooks: Arc<TestHooks>,
}

impl Drop for Writer {
    /// A store closed or dropped leaves its last segment as long as its
    /// data; a crash leaves the zeros, which recovery cuts off.
    fn drop(&mut self) {
        if let Err(e) = self.trim() {
            tracing::warn!(error = %e, "cannot trim the zeros ahead of the log's end");
        }
    }
}

impl Writer {
    /// Takes over the replayed segments, starts a fresh segment headed by
    /// a checkpoint of `meta`, and deletes what is already purged.
    pub(crate) fn start(
        dir: &Path,
        opts: LogOptions,
        segments: VecDeque<SegmentInfo>,
        meta: BTreeMap<u16, GroupMeta>,
        stats: Arc<Stats>,
        #[cfg(test)] hooks: Arc<TestHooks>,
    ) -> io::Result<Writer> {
        let lock = segment::lock_dir(dir)?;
        let seq = segments.back().map_or(0, |s| s.seq + 1);
        let mut buf = Vec::new();
        let (file, file_len) = segment::create_segment(dir, seq, &meta, &mut buf)?;
        stats.add(0, 1, file_len);
        let mut segments = segments;
        segments.push_back(SegmentInfo::new(seq, segment::segment_path(dir, seq)));
        let mut w = Writer {
            dir: dir.to_path_buf(),
            opts,
            file,
            file_len,
            alloc_len: file_len,
            segments,
            meta,
            buf,
            pending: Vec::new(),
            unsynced: false,
            failed: None,
            stats,
            _lock: lock,
            #[cfg(test)]
            hooks,
        };
        w.delete_purged_segments();
        Ok(w)
    }

    /// The writer thread: takes what is queued (up to a batch's worth) and
    /// commits it under the lock, so commits made directly by a caller
    /// ([`Writer::commit_now`]) interleave whole. After `Close` the writer
    /// is gone from `shared` and every later op fails.
    pub(crate) fn run(shared: Arc<Mutex<Option<Writer>>>, rx: Receiver<Op>) {
        let max_batch = shared
            .lock()
            .as_ref()
            .map_or(usize::MAX, |w| w.opts.max_batch_bytes);
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut cost = take(&mut batch, first);
            while cost < max_batch {
                match rx.try_recv() {
                    Ok(op) => cost += take(&mut batch, op),
                    Err(_) => break,
                }
            }
            let mut guard = shared.lock();
            let Some(w) = guard.as_mut() else {
                for op in batch.drain(..) {
                    op.complete(Err(closed()));
                }
                continue;
            };
            if let Some(at) = batch.iter().position(|op| matches!(op, Op::Close { .. })) {
                let after = batch.split_off(at);
                w.commit(&mut batch);
                let w = guard.take();
                drop(guard);
                if let Some(w) = w {
                    w.close(after);
                }
                continue;
            }
            w.commit(&mut batch);
        }
    }

    /// Commits `ops` on the caller's thread (the Raft loop's, which would
    /// only wait for the writer thread otherwise): one write and, unless
    /// everything is lazy, one fdatasync; every op is completed before it
    /// returns.
    pub(crate) fn commit_now(shared: &Mutex<Option<Writer>>, mut ops: Vec<Op>) {
        let mut guard = shared.lock();
        match guard.as_mut() {
            Some(w) => w.commit(&mut ops),
            None => {
                for op in ops {
                    op.complete(Err(closed()));
                }
            }
        }
    }

    /// Closes the segment and releases the directory lock, answers the
    /// `Close` at the head of `after`, then fails the rest.
    fn close(self, after: Vec<Op>) {
        let result = match self.failed {
            None => Ok(()),
            Some(_) => Err(self.failure()),
        };
        drop(self);
        let mut after = after.into_iter();
        if let Some(op) = after.next() {
            op.complete(result);
        }
        for op in after {
            op.complete(Err(closed()));
        }
    }

    /// The error every operation gets once the store has failed.
    fn failure(&self) -> io::Error {
        match &self.failed {
            Some((kind, msg)) => io::Error::new(*kind, format!("log store failed earlier: {msg}")),
            None => io::Error::other("log store failed earlier"),
        }
    }

    fn commit(&mut self, batch: &mut Vec<Op>) {
        if self.failed.is_some() {
            for op in batch.drain(..) {
                op.complete(Err(self.failure()));
            }
            return;
        }
        self.buf.clear();
        let mut appends = 0;
        let sync = batch
            .iter()
            .any(|op| !matches!(op, Op::Meta { done: None, .. }));
        for op in batch.drain(..) {
            appends += self.encode(op);
        }
        let written = self.buf.len() as u64;
        let result = if !self.buf.is_empty() {
            self.write(sync)
        } else if sync && self.unsynced {
            // A bare Sync (or Close) after lazy values: make them durable.
            self.sync()
        } else {
            Ok(())
        };
        match result {
            Ok(()) => {
                self.stats.add(appends, 0, written);
                for d in self.pending.drain(..) {
                    d.complete(Ok(()));
                }
                self.after_commit();
            }
            Err(e) => {
                tracing::error!(error = %e, "log write failed; the store now fails every operation");
                let (kind, msg) = (e.kind(), e.to_string());
                for d in self.pending.drain(..) {
                    d.complete(Err(io::Error::new(kind, msg.clone())));
                }
                self.failed = Some((kind, msg));
            }
        }
        // A jumbo op may have grown the buffer far past a normal batch.
        if self.buf.capacity() > 2 * self.opts.max_batch_bytes.max(1 << 20) {
            self.buf = Vec::new();
        }
    }

    /// Encodes one op into the batch buffer and updates the state it
    /// changes; a malformed op is refused on its own, nothing written.
    /// Returns the number of accepted appends.
    fn encode(&mut self, op: Op) -> u64 {
        let first = self.buf.is_empty();
        match op {
            Op::Append {
                group,
                entries,
                done,
            } => {
                if let Err(e) = check_append(&entries) {
                    done(Err(e));
                    return 0;
                }
                self.encode_entries(group, &entries);
                self.pending.push(Done::Callback(done));
                return 1;
            }
            Op::Truncate { group, from } => record::put_truncate(&mut self.buf, group, first, from),
            Op::Purge { group, upto, id } => {
                if id.len() > VALUE_LEN_MAX {
                    // No one to tell: keeping the entries is the safe side.
                    tracing::error!(
                        group,
                        upto,
                        id_len = id.len(),
                        "purge id too long; purge ignored"
                    );
                    return 0;
                }
                record::put_purge(&mut self.buf, group, first, upto, &id);
                self.meta.entry(group).or_default().purge(upto, id);
            }
            Op::Meta {
                group,
                key,
                value,
                done,
            } => {
                if value.len() > VALUE_LEN_MAX {
                    let e = invalid(format!(
                        "meta value of {} bytes exceeds {VALUE_LEN_MAX}",
                        value.len()
                    ));
                    match done {
                        Some(done) => done.complete(Err(e)),
                        None => tracing::error!(group, error = %e, "lazy meta value not written"),
                    }
                    return 0;
                }
                record::put_meta(&mut self.buf, group, first, key, &value);
                self.meta.entry(group).or_default().set(key, value);
                self.pending.extend(done);
            }
            // `run` takes `Close` out of the batch before encoding.
            Op::Sync { done } | Op::Close { done } => self.pending.push(done),
            // `run` takes a batch apart as it gathers; this keeps its parts
            // in order if one ever arrives here whole.
            Op::Batch(ops) => return ops.into_iter().map(|op| self.encode(op)).sum(),
        }
        0
    }

    /// Splits the entries over as many records as the payload limit needs.
    fn encode_entries(&mut self, group: u16, entries: &[(u64, Bytes)]) {
        let mut rest = entries;
        while let Some(&(first, _)) = rest.first() {
            let mut payload = record::entries_payload_len([]);
            let n = rest
                .iter()
                .take_while(|(_, e)| {
                    payload += record::entry_cost(e.len());
                    payload <= SPLIT_PAYLOAD_BYTES
                })
                .count()
                .max(1);
            let (now, later) = rest.split_at(n);
            let batch_start = self.buf.is_empty();
            record::put_entries(
                &mut self.buf,
                group,
                batch_start,
                first,
                now.iter().map(|(_, e)| &e[..]),
            );
            rest = later;
        }
        if let Some(&(last, _)) = entries.last() {
            if let Some(seg) = self.segments.back_mut() {
                seg.saw_entries(group, last);
            }
        }
    }

    /// Writes the batch, then fdatasyncs unless `sync` is false (a batch
    /// of lazy meta values only: the next fsync covers it).
    fn write(&mut self, sync: bool) -> io::Result<()> {
        #[cfg(test)]
        TestHooks::injected(&self.hooks.fail_write, "write")?;
        let end = self.file_len + self.buf.len() as u64;
        if end > self.alloc_len {
            self.preallocate(end)?;
        }
        self.file.write_all_at(&self.buf, self.file_len)?;
        self.file_len = end;
        self.unsynced = true;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes zeros from the file's end to past `end`, so that the batches
    /// that follow overwrite blocks the file already has: their fdatasync
    /// then flushes data only, where an append also commits the file's new
    /// size to the filesystem journal (measured on this project's VM: 30%
    /// less time per fsync, docs/design/log-store.md). Made durable by the
    /// fsync of the batch that needed it.
    fn preallocate(&mut self, end: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let target = end + PREALLOC_BYTES;
        while self.alloc_len < target {
            let n = (target - self.alloc_len).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], self.alloc_len)?;
            self.alloc_len += n as u64;
        }
        Ok(())
    }

    /// Cuts the zeros written ahead off the file (at rotation and
    /// shutdown): only the last segment may end in them.
    fn trim(&mut self) -> io::Result<()> {
        if self.alloc_len > self.file_len {
            self.file.set_len(self.file_len)?;
            self.alloc_len = self.file_len;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        {
            drop(self.hooks.fsync_gate.lock());
            TestHooks::injected(&self.hooks.fail_fsync, "fsync")?;
        }
        self.file.sync_data()?;
        self.unsynced = false;
        self.stats.add(0, 1, 0);
        Ok(())
    }

    fn after_commit(&mut self) {
        if self.file_len >= self.opts.segment_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, "log segment rotation failed; the store now fails every operation");
                self.failed = Some((e.kind(), format!("rotating the log segment: {e}")));
                return;
            }
        }
        self.delete_purged_segments();
    }

    /// The old segment is fsynced first (only lazy bytes can be pending:
    /// recovery must find every segment but the newest whole); the new one
    /// is durable with its checkpoint and directory entry before use.
    fn rotate(&mut self) -> io::Result<()> {
        if self.alloc_len > self.file_len {
            // Recovery refuses a damaged record anywhere but at the end of
            // the newest segment: an older one must end with its last
            // record, durably, before the next one exists.
            self.trim()?;
            self.file.sync_all()?;
            self.unsynced = false;
        } else if self.unsynced {
            self.sync()?;
        }
        let seq = self.segments.back().map_or(0, |s| s.seq + 1);
        let (file, len) = segment::create_segment(&self.dir, seq, &self.meta, &mut self.buf)?;
        self.stats.add(0, 1, len);
        self.file = file;
        self.file_len = len;
        self.alloc_len = len;
        self.segments
            .push_back(SegmentInfo::new(seq, segment::segment_path(&self.dir, seq)));
        Ok(())
    }

    /// Deletes the oldest segments while every entry in them is purged.
    /// Oldest first only: a truncation recorded in a segment must not
    /// vanish while entries it cancelled, in older segments, remain. Runs
    /// after the fsync that made the purges durable, and never touches the
    /// newest segment, whose checkpoint (or a later one) restates all the
    /// metadata the deleted segments held.
    fn delete_purged_segments(&mut self) {
        let mut deleted = false;
        while self.segments.len() > 1 && self.segments[0].deletable(&self.meta) {
            let path = self.segments[0].path.clone();
            if let Err(e) = std::fs::remove_file(&path) {
                // Not a durability problem: the file stays and is replayed.
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a purged log segment");
                break;
            }
            self.segments.pop_front();
            deleted = true;
        }
        if deleted {
            if let Err(e) = segment::fsync_dir(&self.dir) {
                tracing::warn!(error = %e, "fsync of the log directory after deleting segments failed");
            }
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// An append's indices must be consecutive and each entry fit in a record.
fn check_append(entries: &[(u64, Bytes)]) -> io::Result<()> {
    for w in entries.windows(2) {
        if w[0].0.checked_add(1) != Some(w[1].0) {
            return Err(invalid(format!(
                "append indices must be consecutive: {} then {}",
                w[0].0, w[1].0
            )));
        }
    }
    if let Some((i, e)) = entries.iter().find(|(_, e)| e.len() > ENTRY_LEN_MAX) {
        return Err(invalid(format!(
            "log entry {i} of {} bytes exceeds {ENTRY_LEN_MAX}",
            e.len()
        )));
    }
    Ok(())
}
