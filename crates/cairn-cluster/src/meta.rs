//! The meta group: the cluster's own replicated state — its members,
//! where each data group is placed, and cluster-wide settings.
//!
//! It is one more Raft group (index = the number of data groups), stored
//! in the same log and snapshot directory as the data groups and
//! replicated on every member. Its state machine is not the engine's
//! keyspace but [`MetaState`], reached through [`HostMux`], which hands
//! every other group to the server's [`Host`].
//!
//! Membership changes are *desired state* here: `CLUSTER ADDNODE` and
//! `DELNODE` commit a change of [`MetaState::members`], and every node
//! reconciles the Raft membership of each group it leads towards it (see
//! `node.rs`). A node crash in the middle of a change therefore leaves
//! nothing half-done: the next leader of each group picks it up.
//!
//! Commands (argument lists in the meta group's log):
//!
//! | command | effect |
//! |---|---|
//! | `META.MEMBER id resp-addr peer-addr` | add or update member `id` |
//! | `META.FORGET id` | remove member `id` (refused for the last one) |
//! | `META.JOINED id` | member `id` has stored Raft state (votes, log) |
//! | `META.SET name value` | set a cluster-wide setting |
//! | `META.UNSET name` | remove a setting |
//! | `META.AUDIT node boot batch fragment...` | append audit records to the cluster's chain |
//!
//! The audit chain ([`AuditChain`], docs/design/audit.md) lives beside
//! [`MetaState`], not in it: it changes often and is not a setting, so it
//! neither bumps the epoch nor wakes the subscribers of the meta state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::host::{BoxFuture, Forward, Host, Stamp};
use crate::types::NodeInfo;

/// Version byte of a meta snapshot: 1 held the [`MetaState`] only, 2
/// holds it and the [`AuditChain`] (version 1 still loads).
const SNAPSHOT_VERSION_1: u8 = 1;
const SNAPSHOT_VERSION: u8 = 2;
/// Settings: at most this many, names and values at most this long (a
/// hostile or buggy proposal cannot grow the meta state without bound).
pub const MAX_SETTINGS: usize = 256;
pub const MAX_SETTING_LEN: usize = 4096;
/// Members at most (the meta group is on every member).
pub const MAX_MEMBERS: usize = 64;

/// The meta group's state: identical on every member at the same index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// The cluster's members: every group is reconciled to have exactly
    /// these voters.
    pub members: BTreeMap<u64, NodeInfo>,
    /// Members that have stored Raft state. One of them restarting with
    /// an empty data directory forgot votes and acknowledged entries, and
    /// is refused (it must be removed and added back).
    pub joined: std::collections::BTreeSet<u64>,
    /// Cluster-wide settings (`CONFIG SET` of a cluster-wide parameter).
    pub settings: BTreeMap<String, String>,
    /// Bumped by every applied change (a config epoch, as Redis Cluster
    /// names it).
    pub epoch: u64,
}

impl MetaState {
    /// Where data group `g` is placed. This release replicates every
    /// group on every member (the sharding work spreads them), so the
    /// placement is the member set; kept as a function so callers do not
    /// assume it.
    pub fn placement(&self, _group: u16) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    fn apply(&mut self, argv: &[&[u8]]) -> Result<(), String> {
        let name = argv
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let text = |i: usize| -> Result<&str, String> {
            let a = argv.get(i).ok_or("wrong number of arguments")?;
            if a.len() > MAX_SETTING_LEN {
                return Err("argument too long".into());
            }
            std::str::from_utf8(a).map_err(|_| "argument is not UTF-8".to_string())
        };
        let id = |i: usize| -> Result<u64, String> {
            text(i)?
                .parse::<u64>()
                .ok()
                .filter(|&id| id > 0)
                .ok_or_else(|| "node id must be a positive integer".to_string())
        };
        match (&name[..], argv.len()) {
            (b"META.MEMBER", 4) => {
                let (id, resp, peer) = (id(1)?, text(2)?, text(3)?);
                if !self.members.contains_key(&id) && self.members.len() >= MAX_MEMBERS {
                    return Err(format!("at most {MAX_MEMBERS} members"));
                }
                self.members.insert(
                    id,
                    NodeInfo {
                        peer: peer.to_string(),
                        resp: resp.to_string(),
                    },
                );
            }
            (b"META.FORGET", 2) => {
                let id = id(1)?;
                if !self.members.contains_key(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                if self.members.len() == 1 {
                    return Err("cannot remove the last member".into());
                }
                self.members.remove(&id);
                self.joined.remove(&id);
            }
            (b"META.JOINED", 2) => {
                let id = id(1)?;
                if !self.members.contains_key(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                self.joined.insert(id);
            }
            (b"META.SET", 3) => {
                let (k, v) = (text(1)?.to_ascii_lowercase(), text(2)?);
                if !self.settings.contains_key(&k) && self.settings.len() >= MAX_SETTINGS {
                    return Err(format!("at most {MAX_SETTINGS} settings"));
                }
                self.settings.insert(k, v.to_string());
            }
            (b"META.UNSET", 2) => {
                let k = text(1)?.to_ascii_lowercase();
                self.settings.remove(&k);
            }
            _ => return Err("unknown meta command or wrong number of arguments".into()),
        }
        self.epoch += 1;
        Ok(())
    }

    fn encode(&self, audit: &AuditChain) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        // Serializing plain maps and strings into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&(self, audit)).unwrap_or_default());
        out
    }

    fn decode(data: &[u8]) -> Result<(MetaState, AuditChain), String> {
        let bad = |e: postcard::Error| format!("meta snapshot does not decode: {e}");
        let (st, audit) = match data.split_first() {
            // A group never written to snapshots as empty.
            None => return Ok(Default::default()),
            Some((&SNAPSHOT_VERSION_1, rest)) => (
                postcard::from_bytes::<MetaState>(rest).map_err(bad)?,
                AuditChain::default(),
            ),
            Some((&SNAPSHOT_VERSION, rest)) => {
                postcard::from_bytes::<(MetaState, AuditChain)>(rest).map_err(bad)?
            }
            Some((v, _)) => return Err(format!("meta snapshot version {v} is not supported")),
        };
        if st.members.len() > MAX_MEMBERS
            || st.joined.len() > MAX_MEMBERS
            || st.settings.len() > MAX_SETTINGS
            || !audit.well_formed()
        {
            return Err("meta snapshot exceeds the limits".into());
        }
        Ok((st, audit))
    }
}

/// Records in one `META.AUDIT` at most, and bytes per record fragment.
pub const AUDIT_BATCH_MAX: usize = 1024;
pub const AUDIT_FRAGMENT_MAX: usize = 8192;
/// Records the chain keeps in memory (and in every meta snapshot) at
/// most, and their bytes: a node that catches up by snapshot finds its
/// missing records here, unless it missed more than this.
pub const AUDIT_TAIL_RECORDS: usize = 16_384;
pub const AUDIT_TAIL_BYTES: usize = 4 << 20;
/// Senders whose last batch number is remembered at most (dedup state).
const AUDIT_SENDERS_MAX: usize = 1024;
/// The `prev` of the first record of a chain.
pub const AUDIT_ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One audit record as stored: `{"seq":N,<fragment>,"prev":"<prev>",
/// "hash":"<h>"}` (no newline) and its hash `h`, the SHA-256 of the line
/// up to `,"hash":`. The fragment holds the record's own fields (`"ts_ms":
/// ...,"node":...,"event":...`). Standalone and cluster logs alike are
/// made here, so `cairn audit verify` reads both.
pub fn audit_line(seq: u64, fragment: &str, prev: &str) -> (String, String) {
    let mut line = format!("{{\"seq\":{seq},{fragment},\"prev\":\"{prev}\"");
    let h = sha256_hex(line.as_bytes());
    line.push_str(",\"hash\":\"");
    line.push_str(&h);
    line.push_str("\"}");
    (line, h)
}

/// Whether `f` may be a record's fragment: bounded, starts with the
/// timestamp, one line of printable text (JSON escapes control bytes).
fn fragment_ok(f: &[u8]) -> bool {
    f.len() <= AUDIT_FRAGMENT_MAX
        && f.starts_with(b"\"ts_ms\":")
        && std::str::from_utf8(f).is_ok()
        && !f.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// The cluster's audit log as a hash chain, appended to through the meta
/// group: every member applies the same records in the same order and
/// so computes the same chain; each node writes it to its own file
/// (cairn-server's audit.rs). Only the last records are kept here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChain {
    /// Records in the chain; the last one's hash.
    pub seq: u64,
    pub last: String,
    /// The last records' lines, `seq - tail.len() + 1 ..= seq`.
    tail: VecDeque<String>,
    tail_bytes: usize,
    /// Per sending node, the last batch applied (`boot`, `batch`): a batch
    /// resent after a lost answer is not appended twice.
    sent: BTreeMap<u64, (u64, u64)>,
}

impl Default for AuditChain {
    fn default() -> Self {
        AuditChain {
            seq: 0,
            last: AUDIT_ZERO.to_string(),
            tail: VecDeque::new(),
            tail_bytes: 0,
            sent: BTreeMap::new(),
        }
    }
}

/// Lines of the chain from a given record on ([`AuditChain::since`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AuditSlice {
    /// The sequence number of `lines[0]`.
    pub first: u64,
    pub lines: Vec<String>,
    /// Records in the chain.
    pub seq: u64,
}

impl AuditChain {
    /// `META.AUDIT node boot batch fragment...`: appends one record per
    /// fragment, or nothing when the batch was applied before. Returns
    /// whether the chain grew.
    fn apply(&mut self, argv: &[&[u8]]) -> Result<bool, String> {
        if argv.len() < 5 || argv.len() > 4 + AUDIT_BATCH_MAX {
            return Err("META.AUDIT takes a node, a boot, a batch and 1 to 1024 records".into());
        }
        let num = |a: &[u8]| -> Result<u64, String> {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| "META.AUDIT: node, boot and batch are integers".to_string())
        };
        let (node, at) = (num(argv[1])?, (num(argv[2])?, num(argv[3])?));
        if !argv[4..].iter().all(|f| fragment_ok(f)) {
            return Err("META.AUDIT: malformed record".into());
        }
        if self.sent.get(&node).is_some_and(|&done| done >= at) {
            return Ok(false);
        }
        if !self.sent.contains_key(&node) && self.sent.len() >= AUDIT_SENDERS_MAX {
            // Forget the sender heard from longest ago (by boot time).
            if let Some((&old, _)) = self.sent.iter().min_by_key(|(_, v)| **v) {
                self.sent.remove(&old);
            }
        }
        self.sent.insert(node, at);
        for f in &argv[4..] {
            // Checked by fragment_ok above.
            let f = std::str::from_utf8(f).unwrap_or_default();
            self.seq += 1;
            let (line, h) = audit_line(self.seq, f, &self.last);
            self.last = h;
            self.tail_bytes += line.len();
            self.tail.push_back(line);
            while self.tail.len() > AUDIT_TAIL_RECORDS || self.tail_bytes > AUDIT_TAIL_BYTES {
                match self.tail.pop_front() {
                    Some(l) => self.tail_bytes -= l.len(),
                    None => break,
                }
            }
        }
        Ok(true)
    }

    /// Up to `max` lines after record `after`; from the oldest kept one
    /// when `after` is older than the tail (then `first > after + 1`).
    pub fn since(&self, after: u64, max: usize) -> AuditSlice {
        let oldest = self.seq + 1 - self.tail.len() as u64;
        let first = (after + 1).max(oldest);
        let skip = (first - oldest) as usize;
        AuditSlice {
            first,
            lines: self.tail.iter().skip(skip).take(max).cloned().collect(),
            seq: self.seq,
        }
    }

    /// The last batch applied from `node`, as (`boot`, `batch`).
    pub fn sent_by(&self, node: u64) -> Option<(u64, u64)> {
        self.sent.get(&node).copied()
    }

    fn well_formed(&self) -> bool {
        self.tail.len() as u64 <= self.seq
            && self.tail.len() <= AUDIT_TAIL_RECORDS
            && self.tail_bytes == self.tail.iter().map(String::len).sum::<usize>()
            && self.tail_bytes <= AUDIT_TAIL_BYTES
            && self.sent.len() <= AUDIT_SENDERS_MAX
    }
}

/// The meta group's state machine plus a watch that tells the server
/// (settings) and the reconciler (members) about every change.
pub(crate) struct Meta {
    /// The state and the audit chain, changed together under this lock
    /// (a snapshot sees both at the same index).
    state: Mutex<(MetaState, AuditChain)>,
    tx: watch::Sender<MetaState>,
    /// The audit chain's record count, for the audit writer.
    audit_tx: watch::Sender<u64>,
}

impl Meta {
    pub fn new() -> Arc<Meta> {
        let (tx, _) = watch::channel(MetaState::default());
        let (audit_tx, _) = watch::channel(0);
        Arc::new(Meta {
            state: Mutex::new(Default::default()),
            tx,
            audit_tx,
        })
    }

    pub fn get(&self) -> MetaState {
        self.state.lock().0.clone()
    }

    pub fn audit_since(&self, after: u64, max: usize) -> AuditSlice {
        self.state.lock().1.since(after, max)
    }

    pub fn audit_sent_by(&self, node: u64) -> Option<(u64, u64)> {
        self.state.lock().1.sent_by(node)
    }

    pub fn subscribe_audit(&self) -> watch::Receiver<u64> {
        self.audit_tx.subscribe()
    }

    pub fn subscribe(&self) -> watch::Receiver<MetaState> {
        self.tx.subscribe()
    }

    fn publish(&self, st: &MetaState) {
        self.tx.send_replace(st.clone());
    }
}

/// First byte of a meta command's outcome when the state refused it (the
/// reason follows); an accepted command's outcome is empty. The meta
/// group's outcomes go back to the node that proposed the command only,
/// never to a client, so they are not RESP.
const META_REFUSED: u8 = 1;

/// A meta command's outcome as applied (see [`META_REFUSED`]).
pub(crate) fn meta_outcome(out: &[u8]) -> Result<(), String> {
    match out.split_first() {
        None => Ok(()),
        Some((&META_REFUSED, why)) => Err(String::from_utf8_lossy(why).into_owned()),
        Some(_) => Err("malformed meta outcome".into()),
    }
}

/// Routes the meta group to [`Meta`] and every data group to the server.
pub(crate) struct HostMux {
    pub meta_group: u16,
    pub meta: Arc<Meta>,
    pub host: Arc<dyn Host>,
}

impl Host for HostMux {
    fn apply(&self, group: u16, at: Stamp, argv: &[&[u8]], out: &mut Vec<u8>) {
        if group != self.meta_group {
            return self.host.apply(group, at, argv, out);
        }
        let mut st = self.meta.state.lock();
        let r = if argv
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(b"META.AUDIT"))
        {
            st.1.apply(argv).map(|grew| {
                if grew {
                    self.meta.audit_tx.send_replace(st.1.seq);
                }
            })
        } else {
            st.0.apply(argv).map(|()| self.meta.publish(&st.0))
        };
        if let Err(e) = r {
            out.push(META_REFUSED);
            out.extend_from_slice(e.as_bytes());
        }
    }

    fn snapshot(&self, group: u16) -> Vec<u8> {
        if group != self.meta_group {
            return self.host.snapshot(group);
        }
        let st = self.meta.state.lock();
        st.0.encode(&st.1)
    }

    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String> {
        if group != self.meta_group {
            return self.host.restore(group, data);
        }
        let new = MetaState::decode(data)?;
        let mut st = self.meta.state.lock();
        *st = new;
        self.meta.publish(&st.0);
        self.meta.audit_tx.send_replace(st.1.seq);
        Ok(())
    }

    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        self.host.forward(reqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_outcomes_are_not_resp_and_round_trip() {
        assert_eq!(meta_outcome(&[]), Ok(()));
        let mut out = vec![META_REFUSED];
        out.extend_from_slice(b"no such member\r\n");
        assert_eq!(meta_outcome(&out), Err("no such member\r\n".into()));
        assert!(meta_outcome(b"+OK\r\n").is_err());
    }

    fn audit(c: &mut AuditChain, boot: u64, batch: u64, frags: &[&str]) -> Result<bool, String> {
        audit_from(c, 1, boot, batch, frags)
    }

    fn audit_from(
        c: &mut AuditChain,
        node: u64,
        boot: u64,
        batch: u64,
        frags: &[&str],
    ) -> Result<bool, String> {
        let head = [
            "META.AUDIT".to_string(),
            node.to_string(),
            boot.to_string(),
            batch.to_string(),
        ];
        let mut v: Vec<&[u8]> = head.iter().map(|a| a.as_bytes()).collect();
        v.extend(frags.iter().map(|f| f.as_bytes()));
        c.apply(&v)
    }

    #[test]
    fn audit_batches_extend_one_chain_once_each() {
        let mut c = AuditChain::default();
        let f = |i: u32| format!("\"ts_ms\":{i},\"node\":1,\"event\":\"auth\"");
        assert!(audit(&mut c, 10, 1, &[&f(1), &f(2)]).unwrap());
        assert!(audit_from(&mut c, 2, 5, 1, &[&f(3)]).unwrap());
        assert_eq!(c.seq, 3);
        // The same batch again (an answer was lost and it was resent), or
        // an older one: nothing appended.
        assert!(!audit(&mut c, 10, 1, &[&f(9)]).unwrap());
        assert!(!audit(&mut c, 9, 7, &[&f(9)]).unwrap());
        assert_eq!(c.seq, 3);
        // A restarted sender (later boot) starts its batches again.
        assert!(audit(&mut c, 11, 1, &[&f(4)]).unwrap());
        let s = c.since(0, 100);
        assert_eq!((s.first, s.seq, s.lines.len()), (1, 4, 4));
        // Every line is what audit_line makes from the one before.
        let mut prev = AUDIT_ZERO.to_string();
        for (i, l) in s.lines.iter().enumerate() {
            let frag = [f(1), f(2), f(3), f(4)];
            let (want, h) = audit_line(i as u64 + 1, &frag[i], &prev);
            assert_eq!(l, &want);
            prev = h;
        }
        assert_eq!(c.last, prev);
        assert_eq!(c.since(2, 1).lines, vec![s.lines[2].clone()]);
        assert!(c.since(4, 10).lines.is_empty());
    }

    #[test]
    fn bad_audit_batches_change_nothing_and_the_tail_is_bounded() {
        let mut c = AuditChain::default();
        let ok = "\"ts_ms\":1,\"event\":\"auth\"";
        let long = format!("\"ts_ms\":1,\"x\":\"{}\"", "y".repeat(AUDIT_FRAGMENT_MAX));
        for frags in [
            &[][..],
            &["\"event\":\"auth\""],
            &[ok, "\"ts_ms\":1,\n\"event\":1"],
            &[long.as_str()],
        ] {
            assert!(audit(&mut c, 1, 1, frags).is_err(), "{frags:?}");
        }
        let mut bad: Vec<&[u8]> = vec![b"META.AUDIT", b"1", b"x", b"1", ok.as_bytes()];
        assert!(c.apply(&bad).is_err());
        bad[2] = b"1";
        bad[4] = b"\"ts_ms\":\xff";
        assert!(c.apply(&bad).is_err());
        let many = vec![ok; AUDIT_BATCH_MAX + 1];
        assert!(audit(&mut c, 1, 1, &many).is_err());
        assert_eq!(c, AuditChain::default());
        // Past the tail's bound the oldest records leave memory (they stay
        // in every node's file); `since` starts at the oldest one kept.
        let batch = vec![ok; AUDIT_BATCH_MAX];
        let rounds = AUDIT_TAIL_RECORDS / AUDIT_BATCH_MAX + 2;
        for b in 0..rounds {
            audit(&mut c, 1, b as u64 + 1, &batch).unwrap();
        }
        let total = (rounds * AUDIT_BATCH_MAX) as u64;
        assert_eq!(c.seq, total);
        assert!(c.well_formed());
        let s = c.since(3, 10);
        assert_eq!(s.first, total - AUDIT_TAIL_RECORDS as u64 + 1);
        assert!(s.lines[0].starts_with(&format!("{{\"seq\":{},", s.first)));
    }

    fn apply(st: &mut MetaState, argv: &[&str]) -> Result<(), String> {
        let v: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        st.apply(&v)
    }

    #[test]
    fn members_and_settings_change_and_bump_the_epoch() {
        let mut st = MetaState::default();
        apply(
            &mut st,
            &["META.MEMBER", "1", "127.0.0.1:7001", "127.0.0.1:17001"],
        )
        .unwrap();
        apply(
            &mut st,
            &["meta.member", "2", "127.0.0.1:7002", "127.0.0.1:17002"],
        )
        .unwrap();
        apply(&mut st, &["META.SET", "MaxMemory", "100mb"]).unwrap();
        assert_eq!(st.epoch, 3);
        assert_eq!(st.placement(5), vec![1, 2]);
        assert_eq!(
            st.settings.get("maxmemory").map(String::as_str),
            Some("100mb")
        );
        apply(&mut st, &["META.JOINED", "1"]).unwrap();
        assert!(
            apply(&mut st, &["META.JOINED", "3"]).is_err(),
            "not a member"
        );
        assert!(st.joined.contains(&1));
        apply(&mut st, &["META.FORGET", "1"]).unwrap();
        assert_eq!(st.members.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(
            st.joined.is_empty(),
            "forgetting a member forgets that it joined"
        );
        assert!(
            apply(&mut st, &["META.FORGET", "2"]).is_err(),
            "last member stays"
        );
        assert!(apply(&mut st, &["META.FORGET", "9"]).is_err());
        apply(&mut st, &["META.UNSET", "maxmemory"]).unwrap();
        assert!(st.settings.is_empty());
        assert_eq!(st.epoch, 6, "refused commands change nothing");
    }

    #[test]
    fn bad_commands_are_refused_without_changing_state() {
        let mut st = MetaState::default();
        for argv in [
            &["META.MEMBER", "0", "a", "b"][..],
            &["META.MEMBER", "x", "a", "b"],
            &["META.MEMBER", "1", "a"],
            &["META.SET", "k"],
            &["SET", "k", "v"],
            &[],
        ] {
            assert!(apply(&mut st, argv).is_err(), "{argv:?}");
        }
        let long = "x".repeat(MAX_SETTING_LEN + 1);
        assert!(apply(&mut st, &["META.SET", "k", &long]).is_err());
        for i in 0..MAX_SETTINGS {
            apply(&mut st, &["META.SET", &format!("k{i}"), "v"]).unwrap();
        }
        assert!(apply(&mut st, &["META.SET", "one-more", "v"]).is_err());
        apply(&mut st, &["META.SET", "k0", "w"]).unwrap();
        assert_eq!(st.settings.len(), MAX_SETTINGS);
    }

    #[test]
    fn snapshots_round_trip_and_garbage_is_refused() {
        let mut st = MetaState::default();
        apply(&mut st, &["META.MEMBER", "7", "h:1", "h:2"]).unwrap();
        apply(&mut st, &["META.SET", "maxmemory-policy", "allkeys-lru"]).unwrap();
        let mut chain = AuditChain::default();
        audit(&mut chain, 1, 1, &["\"ts_ms\":1,\"event\":\"auth\""]).unwrap();
        let bytes = st.encode(&chain);
        assert_eq!(MetaState::decode(&bytes).unwrap(), (st.clone(), chain));
        assert_eq!(MetaState::decode(&[]).unwrap(), Default::default());
        // A version 1 snapshot (no audit chain) still loads.
        let mut v1 = vec![SNAPSHOT_VERSION_1];
        v1.extend(postcard::to_allocvec(&st).unwrap());
        assert_eq!(
            MetaState::decode(&v1).unwrap(),
            (st.clone(), AuditChain::default())
        );
        assert!(MetaState::decode(&[9, 1, 2]).is_err(), "unknown version");
        assert!(MetaState::decode(&[SNAPSHOT_VERSION, 0xff, 0xff]).is_err());
        for cut in 1..bytes.len() {
            // Truncations either fail or decode to something else; never panic.
            let _ = MetaState::decode(&bytes[..cut]);
        }
    }
}
