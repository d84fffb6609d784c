//! Cluster mode: how a command reaches its Raft group.
//!
//! For each keyed command the connection computes the group of its keys
//! (all keys must be in one group, else -CROSSSLOT). Then:
//! - a write is proposed to the group when this node leads it; otherwise
//!   a cluster-aware connection (one that asked CLUSTER SLOTS/SHARDS/NODES)
//!   gets `-MOVED slot host:port`, and a plain client's request is
//!   forwarded to the leader over the peer connection;
//! - a read waits for a read-index confirmation (shared by all reads of
//!   the group waiting at that moment), then runs on the local copy; a
//!   connection that sent READONLY reads the local copy directly.
//!
//! Outcomes are never dropped silently: a committed write's reply, or
//! `-TRYAGAIN` (nothing was proposed: no leader right now; retry), or
//! `-UNKNOWN` (proposed, fate unknown: the leader changed or the link
//! broke before the commit was confirmed).

//!
//! Files: `route` decides where a command goes (`deferred` holds what it
//! decided, a leaf type the connection state keeps), `exec` runs it there
//! (commit, barrier, proxying, pipelines), `host` is the state-machine
//! adapter the Raft engine applies entries through (and serves requests
//! other nodes forward), `jobs` are the leader's background work (active
//! expiry, eviction, cluster-wide settings).

pub(crate) mod deferred;
pub(crate) mod exec;
mod host;
mod jobs;
mod route;

pub(crate) use deferred::{AdminOp, Deferred};
pub(crate) use exec::execute_all;
pub(crate) use host::ServerHost;
pub(crate) use jobs::{expire_cron, follow_settings, lock_expire_cron};
pub(crate) use route::{route, Route, CLUSTER_SETTINGS};
