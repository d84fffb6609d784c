//! cairn's cluster layer: Raft shard groups on openraft, the peer
//! transport, and log and snapshot storage. The server uses [`Cluster`]
//! and implements [`Host`]; no openraft type crosses this crate's API.
//!
//! The one thing not to get wrong: every byte from a peer or the disk is
//! untrusted — lengths are checked against a limit before anything is
//! allocated, and every frame and record carries a version and a checksum.

pub mod frame;
pub mod host;
mod lease;
pub mod log;
pub mod meta;
mod net;
mod node;
mod raftlog;
mod raftnet;
/// Deterministic simulation of the Raft layer (feature `sim`; see
/// docs/design/simulation.md).
#[cfg(feature = "sim")]
pub mod sim;
mod sm;
pub mod snapfile;
pub mod types;

pub use frame::{PeerFrame, PeerFrameError, FRAME_VERSION};
pub use host::{BoxFuture, Forward, Host};
pub use meta::MetaState;
pub use node::{
    Cluster, ClusterConfig, ClusterError, ClusterStats, GroupStatus, SLOTS, WIPED_MEMBER_ERROR,
};
pub use types::{decode_argvs, encode_argv, NodeInfo};

/// Decodes `data` as every kind of peer message body a node accepts from
/// the network (AppendEntries, Vote, InstallSnapshot, forwarded request,
/// membership change). For fuzzing: must never panic.
#[doc(hidden)]
pub fn fuzz_peer_bodies(data: &[u8]) {
    node::fuzz_bodies(data);
}
