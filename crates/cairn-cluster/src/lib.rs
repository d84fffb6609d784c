//! cairn's cluster layer. Today: the framing of messages between nodes
//! ([`frame`]); the Raft groups, log storage and placement described in
//! docs/design/replication.md will live here, behind an API that never
//! exposes openraft types to the server.
//!
//! The one thing not to get wrong: every byte from a peer is untrusted —
//! lengths are checked against a limit before anything is allocated, and
//! every frame carries a version and a checksum.

pub mod frame;

pub use frame::{PeerFrame, PeerFrameError, FRAME_VERSION};
