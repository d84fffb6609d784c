//! openraft's log storage for one group: an in-memory cache of the
//! group's entries in front of the node-wide [`LogStore`], which makes
//! them durable (one writer, one fsync per batch for all groups).
//!
//! The thing not to get wrong: openraft may only hear that an append is
//! flushed after the fsync — `LogFlushed` is completed from the store's
//! writer thread after `fdatasync` returned.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;

use crate::log::{GroupRecovered, LogStore, MetaKey};
use crate::types::{Entry, LogId, StorageError, Vote, C};

#[derive(Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    purged: Option<LogId>,
}

/// The log of one group. Cheap to clone: the reader handed to openraft
/// shares the cache.
#[derive(Clone)]
pub struct GroupLog {
    group: u16,
    store: LogStore,
    inner: Arc<Mutex<Inner>>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl GroupLog {
    /// Builds the group's log from what the store recovered. A record
    /// that does not decode is an error: the store checksums every
    /// record, so this means a bug or a format from another version.
    pub fn new(group: u16, store: LogStore, rec: GroupRecovered) -> std::io::Result<GroupLog> {
        let mut inner = Inner::default();
        if let Some(v) = rec.vote {
            inner.vote = Some(postcard::from_bytes(&v).map_err(io_err)?);
        }
        if let Some((_, id)) = rec.purged {
            inner.purged = Some(postcard::from_bytes(&id).map_err(io_err)?);
        }
        for (index, bytes) in rec.entries {
            let e: Entry = postcard::from_bytes(&bytes).map_err(io_err)?;
            if e.log_id.index != index {
                return Err(io_err(format!(
                    "group {group}: log record at index {index} holds entry {}",
                    e.log_id
                )));
            }
            inner.entries.insert(index, e);
        }
        Ok(GroupLog {
            group,
            store,
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Entries held in memory (for metrics and tests).
    pub fn cached(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// The index of the last entry this log holds (or purged), 0 if none.
    /// Read at start-up it is the read fence: openraft 0.9 may restore a
    /// restarted node as leader of its old term at once, before it
    /// re-applied the entries it had committed before the crash, so no
    /// read may be served until the state machine has applied this far.
    pub fn last_index(&self) -> u64 {
        let inner = self.inner.lock();
        inner
            .entries
            .keys()
            .next_back()
            .copied()
            .or(inner.purged.map(|p| p.index))
            .unwrap_or(0)
    }
}

impl RaftLogReader<C> for GroupLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<C> for GroupLog {
    type LogReader = GroupLog;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.store
            .save_meta(self.group, MetaKey::Vote, Bytes::from(bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.inner.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        {
            let mut inner = self.inner.lock();
            for e in entries {
                let bytes = postcard::to_allocvec(&e).map_err(|err| {
                    StorageError::from(StorageIOError::write_log_entry(e.log_id, &err))
                })?;
                batch.push((e.log_id.index, Bytes::from(bytes)));
                inner.entries.insert(e.log_id.index, e);
            }
        }
        self.store.append(
            self.group,
            batch,
            Box::new(move |r| callback.log_io_completed(r)),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        let _ = inner.entries.split_off(&log_id.index);
        self.store.truncate(self.group, log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        let mut inner = self.inner.lock();
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.purged = Some(log_id);
        self.store
            .purge(self.group, log_id.index, Bytes::from(bytes));
        Ok(())
    }
}
