//! cairn's cluster layer: Raft shard groups (tikv/raft-rs cores stepped
//! by a few batch loops per node), the peer transport, and log and
//! snapshot storage. The server uses [`Cluster`] and implements [`Host`];
//! no raft-rs type crosses this crate's API.
//!
//! The one thing not to get wrong: every byte from a peer or the disk is
//! untrusted — lengths are checked against a limit before anything is
//! allocated, and every frame and record carries a version and a checksum.

mod balance;
mod driver;
mod forward;
pub mod frame;
pub mod host;
pub mod log;
pub mod meta;
mod net;
mod node;
pub mod placement;
/// Deterministic simulation of the Raft engine (feature `sim`; see
/// docs/design/simulation.md).
#[cfg(feature = "sim")]
pub mod sim;
pub mod snapfile;
mod storage;
mod throttle;
pub mod types;
pub mod wire;

pub use balance::AUTO_REBALANCE;
pub use frame::{PeerFrame, PeerFrameError, FRAME_VERSION};
pub use host::{BoxFuture, Forward, Host, Stamp};
pub use meta::{MetaState, MAX_MEMBERS, REPLICATION_FACTOR};
pub use net::PeerTls;
pub use node::{
    Cluster, ClusterConfig, ClusterError, ClusterStats, GroupStatus, PlacementProgress, PlanReport,
    SLOTS, WIPED_MEMBER_ERROR,
};
pub use types::{decode_argvs, encode_argv, NodeInfo};

/// Peer handshakes refused over the cluster secret since start (INFO).
pub fn peer_auth_failures() -> u64 {
    net::PEER_AUTH_FAILURES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Decodes `data` as every kind of peer message body a node accepts from
/// the network (Raft message batches, log entries and their data, hard
/// states, forwarded requests, admin requests). For fuzzing: must never panic.
#[doc(hidden)]
pub fn fuzz_peer_bodies(data: &[u8]) {
    node::fuzz_bodies(data);
}
