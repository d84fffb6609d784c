//! openraft's state machine for one group: the engine keyspace, reached
//! through the [`Host`] the server provides, plus the group's applied
//! position, membership and latest snapshot.
//!
//! Snapshots are built while openraft holds the state machine (between
//! two applies), so the keyspace dump and `last_applied` always agree.
//! Durable groups keep the latest snapshot in a file written as
//! tmp → fsync → rename → fsync(dir); see [`crate::snapfile`].

// openraft's StorageError is large by design; its trait methods return it.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;

use crate::host::Host;
use crate::snapfile;
use crate::types::{
    decode_argvs, Entry, LogId, Replies, SnapshotMeta, StorageError, StoredMembership, C,
};

#[derive(Clone)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub data: Arc<Vec<u8>>,
}

pub(crate) struct SmState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub current: Option<StoredSnapshot>,
    pub snapshots_built: u64,
}

#[derive(Clone)]
pub struct GroupSm {
    group: u16,
    host: Arc<dyn Host>,
    pub(crate) state: Arc<Mutex<SmState>>,
    /// Where the latest snapshot is kept; None for volatile groups.
    snap_path: Option<PathBuf>,
}

impl GroupSm {
    /// Opens the group's state machine, restoring the latest snapshot
    /// file if there is one.
    pub fn open(
        group: u16,
        host: Arc<dyn Host>,
        snap_path: Option<PathBuf>,
    ) -> std::io::Result<GroupSm> {
        let mut state = SmState {
            last_applied: None,
            membership: StoredMembership::default(),
            current: None,
            snapshots_built: 0,
        };
        if let Some(p) = &snap_path {
            if let Some((meta, data)) = snapfile::read(p)? {
                host.restore(group, &data)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", p.display())))?;
                state.last_applied = meta.last_log_id;
                state.membership = meta.last_membership.clone();
                state.current = Some(StoredSnapshot {
                    meta,
                    data: Arc::new(data),
                });
            }
        }
        Ok(GroupSm {
            group,
            host,
            state: Arc::new(Mutex::new(state)),
            snap_path,
        })
    }

    fn persist(&self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        if let Some(p) = &self.snap_path {
            let sig = Some(snap.meta.signature());
            snapfile::write(p, &snap.meta, &snap.data)
                .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        }
        Ok(())
    }
}

pub struct Builder {
    sm: GroupSm,
    snap: StoredSnapshot,
}

impl RaftSnapshotBuilder<C> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError> {
        self.sm.persist(&self.snap)?;
        let mut st = self.sm.state.lock();
        st.current = Some(self.snap.clone());
        st.snapshots_built += 1;
        Ok(Snapshot {
            meta: self.snap.meta.clone(),
            snapshot: Box::new(Cursor::new(self.snap.data.to_vec())),
        })
    }
}

impl RaftStateMachine<C> for GroupSm {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = self.state.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Replies>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut st = self.state.lock();
        for e in entries {
            st.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Replies::default()),
                EntryPayload::Normal(batch) => {
                    let mut r = Replies::default();
                    let (host, group) = (&self.host, self.group);
                    let decoded = decode_argvs(&batch.cmds, |argv| {
                        host.apply(group, batch.ts_ms, argv, &mut r.resp3);
                        r.ends.push(r.resp3.len() as u32);
                    });
                    if let Err(e) = decoded {
                        // Checksummed on disk and on the wire: only a bug
                        // gets here. Every replica sees the same bytes and
                        // skips the same commands, so they stay identical.
                        tracing::error!(group, log = %e, "undecodable log entry; rest skipped");
                    }
                    out.push(r);
                }
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Replies::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let st = self.state.lock();
        let data = self.host.snapshot(self.group);
        let last = st.last_applied;
        let id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, st.snapshots_built),
            None => format!("none-{}", st.snapshots_built),
        };
        Builder {
            sm: self.clone(),
            snap: StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: last,
                    last_membership: st.membership.clone(),
                    snapshot_id: id,
                },
                data: Arc::new(data),
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: Arc::new(data),
        };
        // Restore first: a snapshot that does not decode leaves the old
        // state in place and fails the install.
        self.host
            .restore(self.group, &snap.data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io(e)))?;
        self.persist(&snap)?;
        let mut st = self.state.lock();
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.current = Some(snap);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError> {
        let st = self.state.lock();
        Ok(st.current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.to_vec())),
        }))
    }
}

fn io(e: String) -> std::io::Error {
    std::io::Error::other(e)
}
