//! One group's Raft log as raft-rs sees it ([`raft::Storage`]): the
//! entries since the last compaction, the hard state and the conf state,
//! all in memory. The raft loop makes them durable through the node's
//! [`crate::log::LogStore`] before it lets raft-rs act on them.
//!
//! The thing not to get wrong: `snapshot()` dumps the keyspace *as
//! applied now*, so its index must be the applied index — the loop owns
//! both the keyspace's applies and this storage, and updates `applied`
//! after every entry it applies.

use std::sync::Arc;

use prost::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::host::Host;
use crate::throttle::SnapThrottle;

/// Where a new group's log starts (TiKV's RAFT_INIT_LOG_INDEX/TERM): the
/// initial conf state is an "initial snapshot" at this index, so a node
/// added later (empty log) is always sent a snapshot, which carries the
/// conf state, never entries it could not place.
pub const INIT_INDEX: u64 = 5;
pub const INIT_TERM: u64 = 5;

/// Version byte of the hard state record in the log store.
const HARD_STATE_VERSION: u8 = 2;

pub(crate) struct GroupStorage {
    group: u16,
    host: Arc<dyn Host>,
    pub hs: HardState,
    /// The conf state as of `applied` (kept current by the loop).
    pub cs: ConfState,
    /// The entry before the first one held: index and term.
    pub base: (u64, u64),
    pub entries: Vec<Entry>,
    /// Last entry applied to the keyspace.
    pub applied: u64,
    /// Leader time of the last entry applied (apply's clamp: time never
    /// runs backwards in a group); travels with snapshots.
    pub applied_ts: u64,
    /// The node's rebalance throttle (data groups only): snapshots for
    /// peers wait while it is in debt, and are charged to it.
    pub throttle: Option<Arc<SnapThrottle>>,
}

impl GroupStorage {
    pub fn new(group: u16, host: Arc<dyn Host>) -> GroupStorage {
        GroupStorage {
            group,
            host,
            hs: HardState::default(),
            cs: ConfState::default(),
            base: (0, 0),
            entries: Vec::new(),
            applied: 0,
            applied_ts: 0,
            throttle: None,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.base.0 + 1
    }

    pub fn last_index(&self) -> u64 {
        self.base.0 + self.entries.len() as u64
    }

    /// Appends entries raft-rs produced; an entry at or below the last
    /// index replaces the log from there on.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        let first_idx = first.index;
        assert!(
            first_idx > self.base.0,
            "group {}: append at {first_idx} below the compacted index {}",
            self.group,
            self.base.0
        );
        assert!(
            first_idx <= self.last_index() + 1,
            "group {}: append at {first_idx} leaves a gap after {}",
            self.group,
            self.last_index()
        );
        self.entries
            .truncate((first_idx - self.first_index()) as usize);
        self.entries.extend_from_slice(ents);
    }

    /// Replaces everything with a snapshot's position and conf state.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata) {
        self.entries.clear();
        self.base = (meta.index, meta.term);
        self.hs.commit = self.hs.commit.max(meta.index);
        self.hs.term = self.hs.term.max(meta.term);
        self.cs = meta.conf_state.clone().unwrap_or_default();
        self.applied = meta.index;
    }

    /// Drops entries up to `upto` (which must be applied).
    pub fn compact(&mut self, upto: u64) {
        if upto <= self.base.0 {
            return;
        }
        let upto = upto.min(self.applied).min(self.last_index());
        let Ok(term) = self.term_of(upto) else {
            return;
        };
        let n = (upto - self.base.0) as usize;
        self.entries.drain(..n);
        self.base = (upto, term);
    }

    fn term_of(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.base.0 {
            return Ok(self.base.1);
        }
        if idx < self.base.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - self.first_index()) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    /// The metadata a snapshot taken now would carry.
    pub fn snapshot_meta(&self) -> SnapshotMetadata {
        SnapshotMetadata {
            conf_state: Some(self.cs.clone()),
            index: self.applied,
            term: self.term_of(self.applied).unwrap_or(self.base.1),
        }
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hs.clone(), self.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first_index()) as usize;
        let to = (high - self.first_index()) as usize;
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(to - from);
        let mut size = 0u64;
        for e in &self.entries[from..to] {
            size += e.encoded_len() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(GroupStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(GroupStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.applied < request_index || self.applied < self.base.0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        if self.throttle.as_ref().is_some_and(|t| !t.admit()) {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let data = crate::snapfile::payload(self.applied_ts, &self.host.snapshot(self.group));
        if let Some(t) = &self.throttle {
            t.charge(data.len() as u64);
        }
        Ok(Snapshot {
            data,
            metadata: Some(self.snapshot_meta()),
        })
    }
}

/// The hard state as stored under `MetaKey::Vote`.
pub fn encode_hard_state(hs: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(HARD_STATE_VERSION);
    for v in [hs.term, hs.vote, hs.commit] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn decode_hard_state(b: &[u8]) -> Result<HardState, String> {
    if b.len() != 25 {
        return Err(format!("hard state record of {} bytes", b.len()));
    }
    if b[0] != HARD_STATE_VERSION {
        return Err(format!(
            "hard state record version {} (this engine writes {HARD_STATE_VERSION}; a data \
             directory of the openraft engine cannot be read)",
            b[0]
        ));
    }
    let u = |i: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[1 + 8 * i..9 + 8 * i]);
        u64::from_le_bytes(n)
    };
    Ok(HardState {
        term: u(0),
        vote: u(1),
        commit: u(2),
    })
}

pub fn encode_entry(e: &Entry) -> Vec<u8> {
    e.encode_to_vec()
}

pub fn decode_entry(b: &[u8]) -> Result<Entry, String> {
    Entry::decode(b).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    struct NoHost;
    impl Host for NoHost {
        fn apply(&self, _: u16, _: crate::Stamp, _: &[&[u8]], _: &mut Vec<u8>) {}
        fn snapshot(&self, _: u16) -> Vec<u8> {
            b"dump".to_vec()
        }
        fn restore(&self, _: u16, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn clear(&self, _: u16) {}
        fn forward(&self, _: Vec<crate::host::Forward>) -> crate::host::BoxFuture<Vec<Vec<u8>>> {
            Box::pin(async { Vec::new() })
        }
    }

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8],
            ..Default::default()
        }
    }

    fn store() -> GroupStorage {
        let mut s = GroupStorage::new(1, Arc::new(NoHost));
        s.base = (INIT_INDEX, INIT_TERM);
        s.append(&[ent(6, 5), ent(7, 5), ent(8, 6)]);
        s
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut s = store();
        s.append(&[ent(7, 7)]);
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(7).unwrap(), 7);
        assert_eq!(s.term(6).unwrap(), 5);
        assert_eq!(s.term(5).unwrap(), 5);
        assert!(s.term(4).is_err());
        assert!(s.term(8).is_err());
    }

    #[test]
    fn entries_are_bounded_by_the_log_and_the_size_limit() {
        let s = store();
        let ctx = || GetEntriesContext::empty(false);
        assert_eq!(s.entries(6, 9, None, ctx()).unwrap().len(), 3);
        assert_eq!(s.entries(6, 9, 1, ctx()).unwrap().len(), 1, "at least one");
        assert!(s.entries(5, 7, None, ctx()).is_err(), "compacted");
        assert!(s.entries(6, 10, None, ctx()).is_err(), "beyond the last");
    }

    #[test]
    fn compaction_keeps_the_term_of_the_new_base_and_never_passes_applied() {
        let mut s = store();
        s.applied = 7;
        s.compact(8);
        assert_eq!(s.base, (7, 5));
        assert_eq!(s.first_index(), 8);
        assert_eq!(s.term(7).unwrap(), 5);
        assert_eq!(
            s.entries(8, 9, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_snapshot_is_taken_at_the_applied_index() {
        let mut s = store();
        s.applied = 7;
        s.cs.voters = vec![1, 2, 3];
        let snap = s.snapshot(0, 2).unwrap();
        let m = snap.metadata.unwrap();
        assert_eq!((m.index, m.term), (7, 5));
        assert_eq!(m.conf_state.unwrap().voters, vec![1, 2, 3]);
        assert!(s.snapshot(8, 2).is_err(), "not applied that far yet");
        let mut t = GroupStorage::new(1, Arc::new(NoHost));
        t.apply_snapshot(&s.snapshot_meta());
        assert_eq!((t.first_index(), t.last_index(), t.applied), (8, 7, 7));
    }

    #[test]
    fn hard_state_round_trips_and_bad_records_are_refused() {
        let hs = HardState {
            term: 9,
            vote: 2,
            commit: 41,
        };
        assert_eq!(decode_hard_state(&encode_hard_state(&hs)).unwrap(), hs);
        assert!(decode_hard_state(&[1; 25])
            .unwrap_err()
            .contains("openraft"));
        assert!(decode_hard_state(&[2; 3]).is_err());
    }
}
