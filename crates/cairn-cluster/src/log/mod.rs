//! The durable Raft log of a node: every group's entries, truncations,
//! purges, votes and commit points in one segmented, append-only log,
//! written by one thread with one `fdatasync` per batch (group commit).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use bytes::Bytes;
//! use cairn_cluster::log::{LogOptions, LogStore, MetaKey};
//! let (store, recovered) = LogStore::open("/var/lib/cairn/log".as_ref(), LogOptions::default())?;
//! for (group, state) in &recovered.groups { /* rebuild each group's cache */ }
//! store.append(3, vec![(1, Bytes::from_static(b"entry"))], Box::new(|r| { /* durable now */ }));
//! store.save_meta(3, MetaKey::Vote, Bytes::from_static(b"vote")).await?;
//! # Ok(()) }
//! ```
//!
//! The one thing not to get wrong: nothing is acknowledged before it is
//! on disk. `append` callbacks fire and `save_meta` resolves only after
//! the `fdatasync` covering their bytes returned; after any write or sync
//! error the store fails every later operation instead of retrying (a
//! failed fsync may have dropped dirty pages the kernel then marks clean).
//!
//! Layout: [`record`] is the byte format (pure, fuzzed), `recover` replays
//! segments at open, `writer` is the thread that owns the files. See
//! docs/design/log-store.md for the format, recovery rules and figures.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;

pub mod record;
mod recover;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

pub use record::{decode_record, encode_record, Body, Checkpoint, Record, RecordError};
use writer::{Done, Op, Writer};

/// Tuning of a durable store. Every field bounds something.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is closed and a new one started once it holds this many
    /// bytes (it may exceed it by one batch).
    pub segment_bytes: u64,
    /// The writer stops draining the queue into a batch at this many
    /// payload bytes (one op bigger than this is a batch of its own).
    pub max_batch_bytes: usize,
    /// Capacity of the queue to the writer, in operations; callers block
    /// while it is full.
    pub queue_ops: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            max_batch_bytes: 4 << 20,
            queue_ops: 16384,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaKey {
    Vote,
    Committed,
}

/// What survived on disk, per group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub groups: BTreeMap<u16, GroupRecovered>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecovered {
    pub vote: Option<Bytes>,
    pub committed: Option<Bytes>,
    /// Index purged up to (inclusive) and the opaque id given to `purge`.
    pub purged: Option<(u64, Bytes)>,
    /// Ascending, contiguous, all above the purged index.
    pub entries: Vec<(u64, Bytes)>,
}

/// Counters since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// `append` calls made durable.
    pub appends: u64,
    /// `fdatasync`/`fsync` calls on segment files.
    pub fsyncs: u64,
    /// Bytes written to segment files.
    pub bytes: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    appends: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
}

impl Stats {
    pub(crate) fn add(&self, appends: u64, fsyncs: u64, bytes: u64) {
        self.appends.fetch_add(appends, Ordering::Relaxed);
        self.fsyncs.fetch_add(fsyncs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LogStats {
        LogStats {
            appends: self.appends.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Log operations of several groups gathered to be queued as one
/// ([`LogStore::submit`]): the Raft loop's writes of one iteration.
#[derive(Default)]
pub struct LogBatch {
    ops: Vec<Op>,
    appends: u64,
    /// Holds something that must be durable before `done`.
    waited: bool,
    /// The first error of a part (a malformed append, a meta value too
    /// long), reported by the batch's `done`.
    failed: Arc<parking_lot::Mutex<Option<io::Error>>>,
}

impl LogBatch {
    pub fn new() -> LogBatch {
        LogBatch::default()
    }

    /// As [`LogStore::append`].
    pub fn append(&mut self, group: u16, entries: Vec<(u64, Bytes)>) {
        let failed = self.failed.clone();
        self.ops.push(Op::Append {
            group,
            entries,
            done: Box::new(move |r| {
                if let Err(e) = r {
                    failed.lock().get_or_insert(e);
                }
            }),
        });
        self.appends += 1;
        self.waited = true;
    }

    /// As [`LogStore::save_meta`]: durable before the batch's `done`.
    pub fn save_meta(&mut self, group: u16, key: MetaKey, value: Bytes) {
        let failed = self.failed.clone();
        self.ops.push(Op::Meta {
            group,
            key,
            value,
            done: Some(Done::Callback(Box::new(move |r| {
                if let Err(e) = r {
                    failed.lock().get_or_insert(e);
                }
            }))),
        });
        self.waited = true;
    }

    /// As [`LogStore::save_meta_lazy`]: never the reason for an fsync.
    pub fn save_meta_lazy(&mut self, group: u16, key: MetaKey, value: Bytes) {
        self.ops.push(Op::Meta {
            group,
            key,
            value,
            done: None,
        });
    }

    /// As [`LogStore::truncate`].
    pub fn truncate(&mut self, group: u16, from: u64) {
        self.ops.push(Op::Truncate { group, from });
    }

    /// As [`LogStore::purge`].
    pub fn purge(&mut self, group: u16, upto: u64, purged_id: Bytes) {
        self.ops.push(Op::Purge {
            group,
            upto,
            id: purged_id,
        });
    }

    /// Whether `done` will wait for an fsync.
    pub fn is_waited(&self) -> bool {
        self.waited
    }
}

/// Handle to the node's log. Cheap to clone; the writer thread stops (after
/// draining its queue) when the last clone is dropped.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for a volatile store.
    writer: Option<WriterHandle>,
    stats: Arc<Stats>,
    #[cfg(test)]
    hooks: Arc<writer::TestHooks>,
}

struct WriterHandle {
    tx: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    /// The writer itself, shared by its thread and [`LogStore::commit_now`];
    /// `None` once closed.
    shared: Arc<parking_lot::Mutex<Option<Writer>>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it is drained.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // The last handle may be dropped inside a callback, on the
            // writer thread itself: joining there would wait forever.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn writer_stopped() -> io::Error {
    io::Error::other("log writer thread has stopped")
}

impl LogStore {
    /// Durable store in `dir` (created if missing). Replays all segments
    /// and returns what survived.
    pub fn open(dir: &Path, opts: LogOptions) -> io::Result<(LogStore, Recovered)> {
        if opts.segment_bytes == 0 || opts.max_batch_bytes == 0 || opts.queue_ops == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log options must all be positive: {opts:?}"),
            ));
        }
        let stats = Arc::new(Stats::default());
        #[cfg(test)]
        let hooks = Arc::new(writer::TestHooks::default());
        let replayed = recover::replay(dir)?;
        let writer = Writer::start(
            dir,
            opts.clone(),
            replayed.segments,
            replayed.meta,
            stats.clone(),
            #[cfg(test)]
            hooks.clone(),
        )?;
        let (tx, rx) = sync_channel(opts.queue_ops);
        let shared = Arc::new(parking_lot::Mutex::new(Some(writer)));
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("cairn-log".into())
                .spawn(move || Writer::run(shared, rx))?
        };
        let store = LogStore {
            inner: Arc::new(Inner {
                writer: Some(WriterHandle {
                    tx: Some(tx),
                    thread: Some(thread),
                    shared,
                }),
                stats,
                #[cfg(test)]
                hooks,
            }),
        };
        Ok((store, replayed.recovered))
    }

    /// Memory-only store (volatile mode): every operation succeeds at
    /// once, nothing is written, callbacks fire immediately.
    pub fn volatile() -> LogStore {
        LogStore {
            inner: Arc::new(Inner {
                writer: None,
                stats: Arc::new(Stats::default()),
                #[cfg(test)]
                hooks: Arc::new(writer::TestHooks::default()),
            }),
        }
    }

    /// Queues entries `(index, encoded entry)` of one group; indices must
    /// be consecutive. `done` is called exactly once, from the writer
    /// thread, after the bytes are written and fdatasync'ed, or with the
    /// error (on the caller's thread only if the writer is gone). An
    /// append at or below the group's last index replaces the log from
    /// its first index on. Blocks while the queue is full.
    pub fn append(
        &self,
        group: u16,
        entries: Vec<(u64, Bytes)>,
        done: Box<dyn FnOnce(io::Result<()>) + Send + 'static>,
    ) {
        if self.inner.writer.is_none() {
            self.inner.stats.add(1, 0, 0);
            return done(Ok(()));
        }
        self.send(Op::Append {
            group,
            entries,
            done,
        });
    }

    /// Queues a whole [`LogBatch`] as one operation: the writer takes it
    /// into one write and, when it holds anything to wait for (entries or
    /// a waited meta value), one fdatasync, then calls `done` once — with
    /// the first error of any of its parts. A batch of lazy values only is
    /// never waited for: `done` is called at once. One queue message per
    /// batch, so the writer never starts its fsync with half of it.
    pub fn submit(&self, batch: LogBatch, done: Box<dyn FnOnce(io::Result<()>) + Send + 'static>) {
        if self.inner.writer.is_none() {
            self.inner.stats.add(batch.appends, 0, 0);
            return done(Ok(()));
        }
        let LogBatch {
            mut ops,
            failed,
            waited,
            ..
        } = batch;
        if !waited {
            if !ops.is_empty() {
                self.send(Op::Batch(ops));
            }
            return done(Ok(()));
        }
        ops.push(Op::Sync {
            done: Done::Callback(Box::new(move |r| {
                done(match failed.lock().take() {
                    Some(e) => Err(e),
                    None => r,
                })
            })),
        });
        self.send(Op::Batch(ops));
    }

    /// Commits a whole [`LogBatch`] on the calling thread: one write and,
    /// when it holds anything to wait for, one fdatasync; returns once it
    /// is durable (or the first error of any part). Ordered with the queued
    /// operations as a whole (it takes the writer's lock between batches),
    /// so one caller must not mix it with queued operations whose order it
    /// relies on. Saves the two thread hand-offs of a queued batch for a
    /// caller that would only wait for it: the Raft loop.
    pub fn commit_now(&self, batch: LogBatch) -> io::Result<()> {
        let Some(w) = &self.inner.writer else {
            self.inner.stats.add(batch.appends, 0, 0);
            return Ok(());
        };
        let LogBatch {
            mut ops,
            failed,
            waited,
            ..
        } = batch;
        if ops.is_empty() {
            return Ok(());
        }
        if waited {
            let f = failed.clone();
            ops.push(Op::Sync {
                done: Done::Callback(Box::new(move |r| {
                    if let Err(e) = r {
                        f.lock().get_or_insert(e);
                    }
                })),
            });
        }
        Writer::commit_now(&w.shared, ops);
        let first_error = failed.lock().take();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Logically deletes entries with index >= `from` of this group.
    /// Ordered with the appends; durable with the next fsync.
    pub fn truncate(&self, group: u16, from: u64) {
        self.send(Op::Truncate { group, from });
    }

    /// Logically deletes entries with index <= `upto`; `purged_id` comes
    /// back in [`GroupRecovered::purged`]. A purge below an earlier one is
    /// ignored. Durable with the next fsync; segments whose entries are
    /// all purged are deleted after that.
    pub fn purge(&self, group: u16, upto: u64, purged_id: Bytes) {
        self.send(Op::Purge {
            group,
            upto,
            id: purged_id,
        });
    }

    /// Stores the vote or the commit point of a group; resolves once it
    /// is durable. The queue send may block briefly when it is full.
    pub async fn save_meta(&self, group: u16, key: MetaKey, value: Bytes) -> io::Result<()> {
        self.round_trip(|done| Op::Meta {
            group,
            key,
            value,
            done: Some(done),
        })
        .await
    }

    /// Like [`LogStore::save_meta`], but `done` is called (from the writer
    /// thread) once the value is durable, for callers outside async code.
    pub fn save_meta_cb(
        &self,
        group: u16,
        key: MetaKey,
        value: Bytes,
        done: Box<dyn FnOnce(io::Result<()>) + Send + 'static>,
    ) {
        if self.inner.writer.is_none() {
            return done(Ok(()));
        }
        self.send(Op::Meta {
            group,
            key,
            value,
            done: Some(Done::Callback(done)),
        });
    }

    /// Stores a meta value that nobody waits for: ordered with everything
    /// else and durable with the next fsync, but never the cause of one.
    /// For a group's commit point, which Raft does not need durable (a
    /// restarted node learns it again from the leader; recovery clamps it
    /// to the log it finds), as etcd syncs its WAL only for new entries or
    /// a new term or vote.
    pub fn save_meta_lazy(&self, group: u16, key: MetaKey, value: Bytes) {
        if self.inner.writer.is_none() {
            return;
        }
        self.send(Op::Meta {
            group,
            key,
            value,
            done: None,
        });
    }

    /// Resolves once everything queued before this call is durable.
    pub async fn sync(&self) -> io::Result<()> {
        self.round_trip(|done| Op::Sync { done }).await
    }

    /// Makes everything queued before it durable, then closes the log
    /// files and unlocks the directory, even while clones of this handle
    /// live on (say, in tasks that have not finished yet); every later
    /// operation on any clone fails. Call it at shutdown before the same
    /// directory is opened again in this process.
    pub async fn close(&self) -> io::Result<()> {
        self.round_trip(|done| Op::Close { done }).await
    }

    pub fn stats(&self) -> LogStats {
        self.inner.stats.snapshot()
    }

    async fn round_trip(&self, op: impl FnOnce(Done) -> Op) -> io::Result<()> {
        if self.inner.writer.is_none() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(op(Done::Waiter(tx)));
        rx.await.map_err(|_| writer_stopped())?
    }

    fn send(&self, op: Op) {
        let Some(w) = &self.inner.writer else {
            return op.complete(Ok(()));
        };
        let Some(tx) = &w.tx else {
            return op.complete(Err(writer_stopped()));
        };
        if let Err(e) = tx.send(op) {
            e.0.complete(Err(writer_stopped()));
        }
    }

    #[cfg(test)]
    fn hooks(&self) -> &writer::TestHooks {
        &self.inner.hooks
    }
}
