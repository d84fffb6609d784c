//! What each simulated node stores: a tiny keyspace [`Host`], and thin
//! wrappers around cairn's own [`GroupLog`] and [`GroupSm`] that
//!
//! - refuse every write once their node has "crashed" (the old openraft
//!   instance may still run a step before it sees the shutdown; a real
//!   process would be gone), and
//! - report every applied entry and the state reached to the checker
//!   ([`Recorder`]), so state machine safety is checked as it happens.

// openraft's StorageError is large by design; its trait methods return it.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{OptionalSend, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;

use crate::host::{BoxFuture, Forward, Host};
use crate::raftlog::GroupLog;
use crate::sm::{Builder, GroupSm};
use crate::types::{Entry, LogId, Replies, SnapshotMeta, StorageError, StoredMembership, Vote, C};

/// FNV-1a, 64 bit: a stable digest (std's hashers are seeded per process).
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The keyspace of one node incarnation: integer registers and counters.
/// Commands: `SET k v` → `+OK`, `CAS k expect new` → `:1`/`:0`,
/// `INCRBY k d` → the new value. Anything else → `-ERR`.
#[derive(Default)]
pub struct SimHost {
    kv: Mutex<BTreeMap<Vec<u8>, i64>>,
    /// Test-only bug: CAS always swaps (see `Sabotage::BrokenCas`).
    pub(crate) broken_cas: bool,
}

fn int(a: &[u8]) -> Option<i64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

impl SimHost {
    pub(crate) fn new(broken_cas: bool) -> SimHost {
        SimHost {
            kv: Mutex::default(),
            broken_cas,
        }
    }

    pub fn get(&self, key: &str) -> Option<i64> {
        self.kv.lock().get(key.as_bytes()).copied()
    }

    /// Digest of the whole keyspace (sorted, so equal states hash equal).
    pub fn digest(&self) -> u64 {
        let kv = self.kv.lock();
        let mut buf = Vec::new();
        for (k, v) in kv.iter() {
            buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
            buf.extend_from_slice(k);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        fnv(&buf)
    }

    pub fn dump(&self) -> BTreeMap<Vec<u8>, i64> {
        self.kv.lock().clone()
    }
}

impl Host for SimHost {
    fn apply(&self, _group: u16, _ts_ms: u64, argv: &[&[u8]], out: &mut Vec<u8>) {
        let mut kv = self.kv.lock();
        match argv {
            [b"SET", k, v] => match int(v) {
                Some(v) => {
                    kv.insert(k.to_vec(), v);
                    out.extend_from_slice(b"+OK\r\n");
                }
                None => out.extend_from_slice(b"-ERR value\r\n"),
            },
            [b"CAS", k, e, n] => match (int(e), int(n)) {
                (Some(e), Some(n)) => {
                    let hit = self.broken_cas || kv.get(*k) == Some(&e);
                    if hit {
                        kv.insert(k.to_vec(), n);
                    }
                    out.extend_from_slice(if hit { b":1\r\n" } else { b":0\r\n" });
                }
                _ => out.extend_from_slice(b"-ERR value\r\n"),
            },
            [b"INCRBY", k, d] => match int(d) {
                Some(d) => {
                    let cur = kv.get(*k).copied().unwrap_or(0);
                    match cur.checked_add(d) {
                        Some(n) => {
                            kv.insert(k.to_vec(), n);
                            out.extend_from_slice(format!(":{n}\r\n").as_bytes());
                        }
                        None => out.extend_from_slice(b"-ERR overflow\r\n"),
                    }
                }
                None => out.extend_from_slice(b"-ERR value\r\n"),
            },
            _ => out.extend_from_slice(b"-ERR unknown command\r\n"),
        }
    }

    fn snapshot(&self, _group: u16) -> Vec<u8> {
        let kv: Vec<(Vec<u8>, i64)> = self
            .kv
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        postcard::to_allocvec(&kv).unwrap_or_default()
    }

    fn restore(&self, _group: u16, data: &[u8]) -> Result<(), String> {
        let kv: Vec<(Vec<u8>, i64)> = postcard::from_bytes(data).map_err(|e| e.to_string())?;
        *self.kv.lock() = kv.into_iter().collect();
        Ok(())
    }

    fn forward(&self, _req: Forward) -> BoxFuture<Vec<u8>> {
        Box::pin(async { b"-ERR no forwarding in the simulation\r\n".to_vec() })
    }
}

/// Where state machines report what they applied; implemented by the
/// simulation's world, which checks the reports against each other.
pub(crate) trait Recorder: Send + Sync + 'static {
    /// `node` applied `entries`, its state machine having been at `before`.
    fn applied(&self, node: u64, before: Option<LogId>, entries: &[Entry]);
    /// `node`'s keyspace has digest `digest` right after applying `at`.
    fn state(&self, node: u64, at: LogId, digest: u64, how: &str);
}

fn crashed() -> std::io::Error {
    std::io::Error::other("node crashed")
}

/// cairn's [`GroupLog`], refusing writes after its node crashed.
pub(crate) struct SimLog {
    pub inner: GroupLog,
    pub dead: Arc<AtomicBool>,
    /// Test-only bug: the vote is not read back after a restart.
    pub forget_vote: bool,
}

impl SimLog {
    fn check(&self) -> Result<(), StorageError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StorageIOError::write_logs(&crashed()).into());
        }
        Ok(())
    }
}

impl RaftLogReader<C> for SimLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<C> for SimLog {
    type LogReader = GroupLog;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> GroupLog {
        self.inner.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.check()?;
        self.inner.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        if self.forget_vote {
            return Ok(None);
        }
        self.inner.read_vote().await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.check()?;
        self.inner.append(entries, callback).await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.check()?;
        self.inner.truncate(log_id).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.check()?;
        self.inner.purge(log_id).await
    }
}

/// cairn's [`GroupSm`] over a [`SimHost`], reporting to a [`Recorder`]
/// and refusing writes after its node crashed.
pub(crate) struct SimSm {
    pub node: u64,
    pub inner: GroupSm,
    pub host: Arc<SimHost>,
    pub dead: Arc<AtomicBool>,
    pub rec: Arc<dyn Recorder>,
}

impl SimSm {
    fn check(&self) -> Result<(), StorageError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StorageIOError::write_state_machine(&crashed()).into());
        }
        Ok(())
    }
}

pub(crate) struct SimBuilder {
    inner: Builder,
    dead: Arc<AtomicBool>,
}

impl RaftSnapshotBuilder<C> for SimBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StorageIOError::write_snapshot(None, &crashed()).into());
        }
        self.inner.build_snapshot().await
    }
}

impl RaftStateMachine<C> for SimSm {
    type SnapshotBuilder = SimBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Replies>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.check()?;
        let entries: Vec<Entry> = entries.into_iter().collect();
        let before = self.inner.state.lock().last_applied;
        self.rec.applied(self.node, before, &entries);
        let last = entries.last().map(|e| e.log_id);
        let out = self.inner.apply(entries).await?;
        if let Some(last) = last {
            self.rec.state(self.node, last, self.host.digest(), "apply");
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SimBuilder {
        SimBuilder {
            inner: self.inner.get_snapshot_builder().await,
            dead: self.dead.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.check()?;
        self.inner.install_snapshot(meta, snapshot).await?;
        if let Some(last) = meta.last_log_id {
            self.rec
                .state(self.node, last, self.host.digest(), "snapshot");
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError> {
        self.inner.get_current_snapshot().await
    }
}
