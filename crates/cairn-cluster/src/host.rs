//! What the cluster layer needs from the server: apply replicated
//! commands to a group's keyspace, dump and restore it, and execute a
//! client request another node forwarded here.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A client command a node forwards to the group's leader (plain clients
/// never see -MOVED: the node they talk to proxies).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forward {
    pub group: u16,
    /// Arguments, [`crate::types::encode_argv`] encoding.
    #[serde(with = "serde_bytes")]
    pub argv: Vec<u8>,
}

/// Where a replicated command sits in its group's history: the same on
/// every replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Log index of the entry carrying the command (several commands
    /// batched into one entry share it; it increases from entry to entry
    /// across leader changes and restarts — what a fencing token needs).
    pub index: u64,
    /// The proposing leader's wall-clock time in ms, never below the
    /// previous entry's: time does not run backwards across leader
    /// changes, whatever the new leader's clock says.
    pub ts_ms: u64,
    /// The command's position in its entry (from 0): with `index`, a
    /// position in the group's history unique to this command.
    pub position: u32,
}

pub trait Host: Send + Sync + 'static {
    /// Applies one replicated command at `at` to `group`'s keyspace,
    /// appending its RESP3 reply to `out`. Deterministic: every replica
    /// gets the same state.
    fn apply(&self, group: u16, at: Stamp, argv: &[&[u8]], out: &mut Vec<u8>);
    /// A hint before [`Self::apply`]: these keys of `group` are about to
    /// be written (start loading them). Changes nothing.
    fn prefetch(&self, _group: u16, _keys: &[&[u8]]) {}
    /// The group's keyspace in the engine's snapshot format.
    fn snapshot(&self, group: u16) -> Vec<u8>;
    /// Replaces the group's keyspace with a snapshot; on error the old
    /// state stays.
    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String>;
    /// Empties the group's keyspace: this node no longer holds a replica
    /// of it (docs/design/sharding.md, step 6).
    fn clear(&self, group: u16);
    /// Executes a batch of forwarded client commands as if a client of
    /// this node had pipelined them; returns their RESP3 replies in order.
    /// The future's first poll must hand each command to its group in
    /// the batch's order (pipelined commands of one group keep their
    /// order across the proxy).
    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>>;
}
