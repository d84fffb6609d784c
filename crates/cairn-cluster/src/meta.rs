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

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::host::{BoxFuture, Forward, Host, Stamp};
use crate::types::NodeInfo;

/// Version byte of a meta snapshot.
const SNAPSHOT_VERSION: u8 = 1;
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

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        // Serializing plain maps and strings into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    fn decode(data: &[u8]) -> Result<MetaState, String> {
        if data.is_empty() {
            // A group never written to snapshots as empty.
            return Ok(MetaState::default());
        }
        match data.split_first() {
            Some((&SNAPSHOT_VERSION, rest)) => {
                let st: MetaState = postcard::from_bytes(rest)
                    .map_err(|e| format!("meta snapshot does not decode: {e}"))?;
                if st.members.len() > MAX_MEMBERS
                    || st.joined.len() > MAX_MEMBERS
                    || st.settings.len() > MAX_SETTINGS
                {
                    return Err("meta snapshot exceeds the limits".into());
                }
                Ok(st)
            }
            Some((v, _)) => Err(format!("meta snapshot version {v} is not supported")),
            None => Ok(MetaState::default()),
        }
    }
}

/// The meta group's state machine plus a watch that tells the server
/// (settings) and the reconciler (members) about every change.
pub(crate) struct Meta {
    state: Mutex<MetaState>,
    tx: watch::Sender<MetaState>,
}

impl Meta {
    pub fn new() -> Arc<Meta> {
        let (tx, _) = watch::channel(MetaState::default());
        Arc::new(Meta {
            state: Mutex::new(MetaState::default()),
            tx,
        })
    }

    pub fn get(&self) -> MetaState {
        self.state.lock().clone()
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
        match st.apply(argv) {
            Ok(()) => self.meta.publish(&st),
            Err(e) => {
                out.push(META_REFUSED);
                out.extend_from_slice(e.as_bytes());
            }
        }
    }

    fn snapshot(&self, group: u16) -> Vec<u8> {
        if group != self.meta_group {
            return self.host.snapshot(group);
        }
        self.meta.state.lock().encode()
    }

    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String> {
        if group != self.meta_group {
            return self.host.restore(group, data);
        }
        let new = MetaState::decode(data)?;
        let mut st = self.meta.state.lock();
        *st = new;
        self.meta.publish(&st);
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
        let bytes = st.encode();
        assert_eq!(MetaState::decode(&bytes).unwrap(), st);
        assert_eq!(MetaState::decode(&[]).unwrap(), MetaState::default());
        assert!(MetaState::decode(&[9, 1, 2]).is_err(), "unknown version");
        assert!(MetaState::decode(&[SNAPSHOT_VERSION, 0xff, 0xff]).is_err());
        for cut in 1..bytes.len() {
            // Truncations either fail or decode to something else; never panic.
            let _ = MetaState::decode(&bytes[..cut]);
        }
    }
}
