//! What routing decided for a command that must wait for the cluster:
//! kept by the connection until its pipeline runs.

use cairn_cluster::NodeInfo;

/// A command that must wait for the cluster before it can be answered.
pub(crate) struct Deferred {
    pub idx: usize,
    pub argv: Vec<Vec<u8>>,
    /// Target group; `None` = every group (FLUSHALL).
    pub group: Option<u16>,
    pub write: bool,
    /// A command that may need memory (DENYOOM): under maxmemory the
    /// leader evicts first.
    pub denyoom: bool,
    pub slot: u16,
    /// CLUSTER ADDNODE / DELNODE: a membership change of every group.
    pub admin: Option<AdminOp>,
    /// Standalone `LOCK.ACQUIRE ... WAIT` that queued its owner: wait for
    /// the grant (cluster mode finds out from the command's reply).
    pub lock_wait: Option<LockWait>,
    /// Standalone blocking list pop that found its lists empty: wait for
    /// a push (`listwait.rs`; cluster mode waits in `cluster_wait`).
    pub list_wait: Option<Box<crate::listwait::ListWait>>,
    /// What the connection does with the reply.
    pub then: Then,
}

/// What becomes of a deferred command's reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Then {
    /// The client gets it.
    Reply,
    /// WATCH: the reply is CAIRN.VERSIONS'; record it, answer +OK.
    Watch,
    /// EXEC: a null reply is Redis' null array.
    Exec,
}

/// A queued lock owner to wait for.
pub(crate) struct LockWait {
    pub shard: usize,
    pub name: Vec<u8>,
    pub owner: Vec<u8>,
    pub wait_ms: u64,
}

pub(crate) enum AdminOp {
    Add(u64, NodeInfo),
    Remove(u64),
    /// CLUSTER SETTING name value: a cluster-wide setting via the meta group.
    Setting(String, String),
    /// CLUSTER WEIGHT id weight [zone]: a member's placement weight and
    /// zone via the meta group.
    Weight(u64, u32, Option<String>),
    /// CLUSTER REBALANCE: each group's leadership back to its preferred node.
    Rebalance,
    /// ACL SETUSER/DELUSER: users' descriptions via the meta group
    /// (crate::acl); answered with the count when there is one, else OK.
    Users(Vec<(String, String)>, Option<i64>),
}
