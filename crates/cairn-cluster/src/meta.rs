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
//! | `META.WEIGHT id weight [zone]` | member `id`'s placement weight (0 drains it) and zone |
//! | `META.PLACE base-epoch replicas...` | store the placement (one `id,id,...` per data group), only if the state is still at `base-epoch` |
//! | `META.DOWN id` / `META.UP id` | member `id` was not heard from for `replica-repair-timeout` (placed as weight 0) / is back |
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
/// holds it and the [`AuditChain`], 3 adds weights, zones and the stored
/// placement to the state (versions 1 and 2 still load).
const SNAPSHOT_VERSION_1: u8 = 1;
const SNAPSHOT_VERSION_2: u8 = 2;
const SNAPSHOT_VERSION: u8 = 3;
/// The setting that holds the replication factor: a positive integer, or
/// `all` (the default: every group on every member).
pub const REPLICATION_FACTOR: &str = "replication-factor";
/// Most data groups a stored placement covers, and most bytes of a zone
/// label.
pub const MAX_PLACED_GROUPS: usize = 16384;
pub const MAX_ZONE_LEN: usize = 64;
/// Heaviest placement weight.
pub const MAX_WEIGHT: u32 = 1000;
/// The setting: seconds a member may go unheard before the meta leader
/// marks it down and its replicas are placed elsewhere (0: never).
pub const REPAIR_TIMEOUT: &str = "replica-repair-timeout";
/// Its default, in seconds.
pub const REPAIR_TIMEOUT_DEFAULT: u64 = 30;
/// The setting: `yes` holds back new replica moves (membership changes
/// towards the stored placement, and leadership moves); moves under way
/// finish. `no` (the default) resumes.
pub const REBALANCE_PAUSED: &str = "rebalance-paused";
/// The setting: bytes per second of data-group snapshots each node sends
/// (Redis memory units: `10mb`), `0` (the default) for no limit.
pub const REBALANCE_THROTTLE: &str = "rebalance-throttle";
/// The setting: groups changing membership at once, 1 to 64 (default 8).
pub const REBALANCE_MAX_MOVES: &str = "rebalance-max-moves";
pub const REBALANCE_MAX_MOVES_DEFAULT: usize = 8;

/// A byte count in Redis' memory units (`100`, `10k` = 10,000, `10kb` =
/// 10,240, `m`/`mb`, `g`/`gb`), as `CONFIG SET maxmemory` reads it.
pub fn parse_bytes(v: &str) -> Option<u64> {
    let l = v.trim().to_ascii_lowercase();
    let split = l.find(|c: char| !c.is_ascii_digit()).unwrap_or(l.len());
    let (digits, unit) = l.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

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
    /// Placement weight and zone per member (absent: weight 1, no zone).
    pub weights: BTreeMap<u64, (u32, Option<String>)>,
    /// The stored placement (docs/design/sharding.md): each data group's
    /// replicas, the preferred leader first. Empty: none stored yet, every
    /// group on every member.
    pub placement: Vec<Vec<u64>>,
    /// Members the meta leader has not heard from for
    /// `replica-repair-timeout`: placed as if of weight 0 until they are
    /// back, so their groups get their replicas elsewhere.
    pub down: std::collections::BTreeSet<u64>,
}

/// The state as snapshot versions 1 and 2 hold it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MetaStateV2 {
    members: BTreeMap<u64, NodeInfo>,
    joined: std::collections::BTreeSet<u64>,
    settings: BTreeMap<String, String>,
    epoch: u64,
}

impl From<MetaStateV2> for MetaState {
    fn from(v: MetaStateV2) -> MetaState {
        MetaState {
            members: v.members,
            joined: v.joined,
            settings: v.settings,
            epoch: v.epoch,
            ..MetaState::default()
        }
    }
}

impl MetaState {
    /// Where data group `g` is placed: the stored placement's replicas
    /// that are still members, the preferred leader first. Every member
    /// when no placement is stored, or when none of the stored replicas
    /// is a member any more (a moment before the controller places again;
    /// hosting everywhere loses nothing).
    pub fn placement(&self, group: u16) -> Vec<u64> {
        let placed: Vec<u64> = self
            .placement
            .get(group as usize)
            .map(|r| {
                r.iter()
                    .copied()
                    .filter(|id| self.members.contains_key(id))
                    .collect()
            })
            .unwrap_or_default();
        if placed.is_empty() {
            self.members.keys().copied().collect()
        } else {
            placed
        }
    }

    /// The voters group `g` is reconciled to: the meta group (index
    /// `groups`) on every member, a data group on its placement.
    pub fn target_voters(&self, g: u16, groups: u16) -> std::collections::BTreeSet<u64> {
        if g >= groups {
            self.members.keys().copied().collect()
        } else {
            self.placement(g).into_iter().collect()
        }
    }

    /// The placement's preferred leader of data group `g`, when a
    /// replication factor is set (with `all`, leaders keep the `g mod n`
    /// rule they started with: no transfers after an upgrade).
    pub fn preferred_leader(&self, g: u16) -> Option<u64> {
        self.replication_factor()?;
        self.placement
            .get(g as usize)?
            .first()
            .copied()
            .filter(|id| self.members.contains_key(id))
    }

    /// The `replica-repair-timeout` setting: `None` for 0 (never).
    pub fn repair_timeout(&self) -> Option<std::time::Duration> {
        let secs = self
            .settings
            .get(REPAIR_TIMEOUT)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(REPAIR_TIMEOUT_DEFAULT);
        (secs > 0).then(|| std::time::Duration::from_secs(secs))
    }

    /// The `rebalance-paused` setting.
    pub fn rebalance_paused(&self) -> bool {
        self.settings
            .get(REBALANCE_PAUSED)
            .is_some_and(|v| v == "yes")
    }

    /// The `rebalance-throttle` setting in bytes/s (0: none).
    pub fn rebalance_throttle(&self) -> u64 {
        self.settings
            .get(REBALANCE_THROTTLE)
            .and_then(|v| parse_bytes(v))
            .unwrap_or(0)
    }

    /// The `rebalance-max-moves` setting.
    pub fn rebalance_max_moves(&self) -> usize {
        self.settings
            .get(REBALANCE_MAX_MOVES)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(REBALANCE_MAX_MOVES_DEFAULT)
    }

    /// The `replication-factor` setting: `None` for `all` (or unset, or
    /// unreadable), else the count.
    pub fn replication_factor(&self) -> Option<usize> {
        self.settings
            .get(REPLICATION_FACTOR)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
    }

    /// The members as placement sees them (weights and zones; a member
    /// that is down counts as weight 0 while enough others are up to hold
    /// the replication factor).
    pub fn placement_members(&self) -> Vec<crate::placement::Member> {
        let repair = self
            .replication_factor()
            .is_some_and(|rf| self.members.len().saturating_sub(self.down.len()) >= rf);
        self.members
            .keys()
            .map(|&id| {
                let (weight, zone) = self.weights.get(&id).cloned().unwrap_or((1, None));
                let weight = if repair && self.down.contains(&id) {
                    0
                } else {
                    weight
                };
                crate::placement::Member { id, weight, zone }
            })
            .collect()
    }

    /// What the placement controller wants stored for `groups` data
    /// groups: `None` when the stored placement is right (or nothing can
    /// be placed), else the new table. Deterministic: the same state gives
    /// the same answer on every node.
    pub fn wanted_placement(&self, groups: u16) -> Option<Vec<Vec<u64>>> {
        if self.members.is_empty() {
            return None;
        }
        let rf = self.replication_factor().unwrap_or(self.members.len());
        let current =
            (self.placement.len() == groups as usize).then(|| crate::placement::Placement {
                groups: self.placement.clone(),
            });
        let want = crate::placement::place(&self.placement_members(), groups, rf, current.as_ref())
            .ok()?;
        if want.groups.iter().any(Vec::is_empty) || want.groups == self.placement {
            return None;
        }
        Some(want.groups)
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
                // Adding a member again is a no-op (a retried ADDNODE);
                // with other addresses it is a mistake, not a move.
                if let Some(n) = self.members.get(&id) {
                    if n.resp != resp || n.peer != peer {
                        return Err(format!(
                            "node {id} is already a member at {}@{}; remove it first to change its address",
                            n.resp, n.peer
                        ));
                    }
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
                self.weights.remove(&id);
                self.down.remove(&id);
            }
            (b"META.DOWN", 2) => {
                let id = id(1)?;
                if !self.members.contains_key(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                if self.down.len() + 1 >= self.members.len() && !self.down.contains(&id) {
                    return Err("at least one member stays up".into());
                }
                self.down.insert(id);
            }
            (b"META.UP", 2) => {
                let id = id(1)?;
                if !self.down.remove(&id) {
                    return Err(format!("node {id} is not down"));
                }
            }
            (b"META.WEIGHT", 3 | 4) => {
                let id = id(1)?;
                if !self.members.contains_key(&id) {
                    return Err(format!("node {id} is not a member"));
                }
                let weight = text(2)?
                    .parse::<u32>()
                    .ok()
                    .filter(|&w| w <= MAX_WEIGHT)
                    .ok_or_else(|| format!("weight must be an integer from 0 to {MAX_WEIGHT}"))?;
                let zone = match argv.len() {
                    4 => {
                        let z = text(3)?;
                        if z.is_empty() || z.len() > MAX_ZONE_LEN {
                            return Err(format!("zone must be 1 to {MAX_ZONE_LEN} bytes"));
                        }
                        Some(z.to_string())
                    }
                    _ => None,
                };
                // A drain must leave enough nodes to hold each group's
                // replicas (and some node to hold anything).
                let positive = self
                    .members
                    .keys()
                    .filter(|&&m| m != id && self.weights.get(&m).is_none_or(|w| w.0 > 0))
                    .count()
                    + usize::from(weight > 0);
                let need = self
                    .replication_factor()
                    .unwrap_or(1)
                    .min(self.members.len());
                if positive < need {
                    return Err(format!(
                        "weight {weight} for node {id} would leave {positive} node(s) of positive weight for {need} replicas of each group; add a node or lower replication-factor first"
                    ));
                }
                self.weights.insert(id, (weight, zone));
            }
            (b"META.PLACE", n) if n >= 3 && n - 2 <= MAX_PLACED_GROUPS => {
                let base = text(1)?
                    .parse::<u64>()
                    .map_err(|_| "base epoch must be an integer".to_string())?;
                if base != self.epoch {
                    return Err(format!(
                        "placement computed at epoch {base}, the state is at {}",
                        self.epoch
                    ));
                }
                let mut table = Vec::with_capacity(n - 2);
                for g in 2..n {
                    let mut replicas: Vec<u64> = Vec::new();
                    for part in text(g)?.split(',') {
                        let r = part
                            .parse::<u64>()
                            .ok()
                            .filter(|r| self.members.contains_key(r))
                            .ok_or_else(|| format!("group {}: {part:?} is not a member", g - 2))?;
                        if replicas.contains(&r) {
                            return Err(format!("group {}: node {r} listed twice", g - 2));
                        }
                        replicas.push(r);
                    }
                    table.push(replicas);
                }
                self.placement = table;
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
                postcard::from_bytes::<MetaStateV2>(rest)
                    .map_err(bad)?
                    .into(),
                AuditChain::default(),
            ),
            Some((&SNAPSHOT_VERSION_2, rest)) => {
                let (st, audit) =
                    postcard::from_bytes::<(MetaStateV2, AuditChain)>(rest).map_err(bad)?;
                (st.into(), audit)
            }
            Some((&SNAPSHOT_VERSION, rest)) => {
                postcard::from_bytes::<(MetaState, AuditChain)>(rest).map_err(bad)?
            }
            Some((v, _)) => return Err(format!("meta snapshot version {v} is not supported")),
        };
        if st.members.len() > MAX_MEMBERS
            || st.joined.len() > MAX_MEMBERS
            || st.weights.len() > MAX_MEMBERS
            || st.down.len() > MAX_MEMBERS
            || st.placement.len() > MAX_PLACED_GROUPS
            || st.placement.iter().any(|r| r.len() > MAX_MEMBERS)
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

    fn prefetch(&self, group: u16, keys: &[&[u8]]) {
        if group != self.meta_group {
            self.host.prefetch(group, keys);
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

    fn clear(&self, group: u16) {
        // The meta group is on every member: never retired.
        if group != self.meta_group {
            self.host.clear(group);
        }
    }

    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        self.host.forward(reqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_redis_memory_units() {
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("1500"), Some(1500));
        assert_eq!(parse_bytes("10k"), Some(10_000));
        assert_eq!(parse_bytes("10KB"), Some(10_240));
        assert_eq!(parse_bytes("2mb"), Some(2 << 20));
        assert_eq!(parse_bytes("1g"), Some(1_000_000_000));
        for bad in ["", "-1", "1.5mb", "10 tb", "mb", "99999999999999999999gb"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn members_are_not_moved_by_a_second_add_and_drains_keep_enough_nodes() {
        let mut st = MetaState::default();
        for i in 1..=3 {
            let (r, p) = (format!("h{i}:6379"), format!("h{i}:7379"));
            apply(&mut st, &["META.MEMBER", &i.to_string(), &r, &p]).unwrap();
        }
        let before = st.clone();
        // The same add again: fine, nothing changes but the epoch.
        apply(&mut st, &["META.MEMBER", "2", "h2:6379", "h2:7379"]).unwrap();
        assert_eq!(st.members, before.members);
        let e = apply(&mut st, &["META.MEMBER", "2", "h9:6379", "h9:7379"]).unwrap_err();
        assert!(e.contains("already a member at h2:6379@h2:7379"), "{e}");
        assert_eq!(st.members, before.members);
        // Replication factor 3 on 3 nodes: no drain; 2: one drain.
        apply(&mut st, &["META.SET", REPLICATION_FACTOR, "3"]).unwrap();
        let e = apply(&mut st, &["META.WEIGHT", "3", "0"]).unwrap_err();
        assert!(
            e.contains("would leave 2 node(s) of positive weight for 3 replicas"),
            "{e}"
        );
        apply(&mut st, &["META.SET", REPLICATION_FACTOR, "2"]).unwrap();
        apply(&mut st, &["META.WEIGHT", "3", "0"]).unwrap();
        assert!(apply(&mut st, &["META.WEIGHT", "2", "0"]).is_err());
        apply(&mut st, &["META.WEIGHT", "3", "2"]).unwrap();
        for bad in ["-1", "1001", "x", ""] {
            let e = apply(&mut st, &["META.WEIGHT", "3", bad]).unwrap_err();
            assert!(e.contains("weight must be an integer"), "{bad}: {e}");
        }
        assert!(apply(&mut st, &["META.WEIGHT", "9", "1"])
            .unwrap_err()
            .contains("not a member"));
        // Every group on every member (`all`): never every node at 0.
        apply(&mut st, &["META.UNSET", REPLICATION_FACTOR]).unwrap();
        apply(&mut st, &["META.WEIGHT", "1", "0"]).unwrap();
        apply(&mut st, &["META.WEIGHT", "2", "0"]).unwrap();
        let e = apply(&mut st, &["META.WEIGHT", "3", "0"]).unwrap_err();
        assert!(e.contains("would leave 0 node(s)"), "{e}");
    }

    #[test]
    fn rebalance_settings_have_defaults_and_ignore_garbage() {
        let mut st = MetaState::default();
        assert!(!st.rebalance_paused());
        assert_eq!(st.rebalance_throttle(), 0);
        assert_eq!(st.rebalance_max_moves(), REBALANCE_MAX_MOVES_DEFAULT);
        apply(&mut st, &["META.SET", REBALANCE_PAUSED, "yes"]).unwrap();
        apply(&mut st, &["META.SET", REBALANCE_THROTTLE, "4mb"]).unwrap();
        apply(&mut st, &["META.SET", REBALANCE_MAX_MOVES, "2"]).unwrap();
        assert!(st.rebalance_paused());
        assert_eq!(st.rebalance_throttle(), 4 << 20);
        assert_eq!(st.rebalance_max_moves(), 2);
        apply(&mut st, &["META.SET", REBALANCE_MAX_MOVES, "0"]).unwrap();
        apply(&mut st, &["META.SET", REBALANCE_THROTTLE, "fast"]).unwrap();
        assert_eq!(st.rebalance_max_moves(), REBALANCE_MAX_MOVES_DEFAULT);
        assert_eq!(st.rebalance_throttle(), 0);
    }

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
        assert_eq!(
            MetaState::decode(&bytes).unwrap(),
            (st.clone(), chain.clone())
        );
        assert_eq!(MetaState::decode(&[]).unwrap(), Default::default());
        // Version 1 (no audit chain) and 2 (no weights or placement)
        // snapshots still load.
        let old = MetaStateV2 {
            members: st.members.clone(),
            joined: st.joined.clone(),
            settings: st.settings.clone(),
            epoch: st.epoch,
        };
        let mut v1 = vec![SNAPSHOT_VERSION_1];
        v1.extend(postcard::to_allocvec(&old).unwrap());
        assert_eq!(
            MetaState::decode(&v1).unwrap(),
            (st.clone(), AuditChain::default())
        );
        let mut v2 = vec![SNAPSHOT_VERSION_2];
        v2.extend(postcard::to_allocvec(&(&old, &chain)).unwrap());
        assert_eq!(MetaState::decode(&v2).unwrap(), (st.clone(), chain.clone()));
        // Version 3 keeps weights, zones and the placement.
        apply(&mut st, &["META.WEIGHT", "7", "2", "zone-a"]).unwrap();
        let e = st.epoch.to_string();
        apply(&mut st, &["META.PLACE", &e, "7", "7"]).unwrap();
        let bytes = st.encode(&chain);
        assert_eq!(MetaState::decode(&bytes).unwrap(), (st.clone(), chain));
        assert!(MetaState::decode(&[9, 1, 2]).is_err(), "unknown version");
        assert!(MetaState::decode(&[SNAPSHOT_VERSION, 0xff, 0xff]).is_err());
        for cut in 1..bytes.len() {
            // Truncations either fail or decode to something else; never panic.
            let _ = MetaState::decode(&bytes[..cut]);
        }
    }

    #[test]
    fn weights_and_placements_are_checked_and_a_stale_placement_is_refused() {
        let mut st = MetaState::default();
        for id in ["1", "2", "3"] {
            apply(&mut st, &["META.MEMBER", id, "h:1", "h:2"]).unwrap();
        }
        assert_eq!(st.placement(0), vec![1, 2, 3], "none stored: everywhere");
        apply(&mut st, &["META.WEIGHT", "2", "5"]).unwrap();
        apply(&mut st, &["META.WEIGHT", "3", "0", "z1"]).unwrap();
        assert_eq!(st.weights[&3], (0, Some("z1".to_string())));
        let before = st.clone();
        let e = st.epoch.to_string();
        let long_zone = "z".repeat(MAX_ZONE_LEN + 1);
        for argv in [
            &["META.WEIGHT", "9", "1"][..],
            &["META.WEIGHT", "1", "1001"],
            &["META.WEIGHT", "1", "-1"],
            &["META.WEIGHT", "1", "1", ""],
            &["META.WEIGHT", "1", "1", &long_zone],
            &["META.PLACE", &e],
            &["META.PLACE", "0", "1,2", "2,3"],
            &["META.PLACE", &e, "1,9"],
            &["META.PLACE", &e, "1,1"],
            &["META.PLACE", &e, "1,x"],
            &["META.PLACE", &e, ""],
        ] {
            assert!(apply(&mut st, argv).is_err(), "{argv:?}");
        }
        assert_eq!(st, before, "refused commands change nothing");
        apply(&mut st, &["META.PLACE", &e, "2,1", "3,2"]).unwrap();
        assert_eq!(st.placement(0), vec![2, 1]);
        assert_eq!(st.placement(1), vec![3, 2]);
        assert_eq!(
            st.placement(2),
            vec![1, 2, 3],
            "beyond the table: everywhere"
        );
        // A forgotten member leaves the placement at once.
        apply(&mut st, &["META.FORGET", "3"]).unwrap();
        assert_eq!(st.placement(1), vec![2]);
        assert!(!st.weights.contains_key(&3));
    }

    #[test]
    fn the_controller_places_by_the_replication_factor_and_then_rests() {
        let mut st = MetaState::default();
        for id in 1..=5 {
            let id = id.to_string();
            apply(&mut st, &["META.MEMBER", &id, "h:1", "h:2"]).unwrap();
        }
        let place = |st: &mut MetaState| {
            let want = st.wanted_placement(64).expect("a new placement");
            let mut argv = vec!["META.PLACE".to_string(), st.epoch.to_string()];
            argv.extend(
                want.iter()
                    .map(|r| r.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
            );
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            apply(st, &refs).unwrap();
            assert_eq!(st.wanted_placement(64), None, "placed: nothing more to do");
        };
        // Default `all`: every group on every member.
        place(&mut st);
        assert!((0..64).all(|g| st.placement(g).len() == 5));
        // Replication factor 3: 192 replicas, 38 or 39 per node.
        apply(&mut st, &["META.SET", REPLICATION_FACTOR, "3"]).unwrap();
        place(&mut st);
        let mut per = BTreeMap::new();
        for g in 0..64 {
            let r = st.placement(g);
            assert_eq!(r.len(), 3);
            for id in r {
                *per.entry(id).or_insert(0) += 1;
            }
        }
        assert!(per.values().all(|&n| n == 38 || n == 39), "{per:?}");
        // A drained node (weight 0) is placed nowhere.
        apply(&mut st, &["META.WEIGHT", "5", "0"]).unwrap();
        place(&mut st);
        assert!((0..64).all(|g| !st.placement(g).contains(&5)));
    }

    #[test]
    fn down_members_are_placed_elsewhere_only_while_others_can_hold_the_factor() {
        let mut st = MetaState::default();
        for id in ["1", "2", "3", "4"] {
            apply(&mut st, &["META.MEMBER", id, "h:1", "h:2"]).unwrap();
        }
        for argv in [
            &["META.DOWN", "9"][..],
            &["META.UP", "1"],
            &["META.DOWN", "x"],
        ] {
            assert!(apply(&mut st, argv).is_err(), "{argv:?}");
        }
        apply(&mut st, &["META.DOWN", "4"]).unwrap();
        let weight = |st: &MetaState, id: u64| {
            st.placement_members()
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.weight)
        };
        // No replication factor: every group is on every member anyway.
        assert_eq!(weight(&st, 4), Some(1));
        apply(&mut st, &["META.SET", REPLICATION_FACTOR, "3"]).unwrap();
        assert_eq!(weight(&st, 4), Some(0), "three others hold the factor");
        apply(&mut st, &["META.DOWN", "3"]).unwrap();
        assert_eq!(weight(&st, 4), Some(1), "two up cannot hold three replicas");
        apply(&mut st, &["META.DOWN", "2"]).unwrap();
        assert!(
            apply(&mut st, &["META.DOWN", "1"]).is_err(),
            "one member stays up"
        );
        apply(&mut st, &["META.UP", "2"]).unwrap();
        apply(&mut st, &["META.FORGET", "3"]).unwrap();
        assert_eq!(st.down.iter().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(
            st.repair_timeout(),
            Some(std::time::Duration::from_secs(30))
        );
        apply(&mut st, &["META.SET", REPAIR_TIMEOUT, "0"]).unwrap();
        assert_eq!(st.repair_timeout(), None);
    }
}
