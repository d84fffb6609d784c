//! What one client connection carries between its commands: protocol,
//! modes, and the cluster commands waiting to run. A leaf of the server's
//! module graph (commands, routing and the connection loop all use it).

use std::sync::Arc;

use cairn_proto::Protocol;

use crate::clients::ClientInfo;
use crate::cluster::deferred::Deferred;
use crate::stats::WorkerStats;

/// Per-connection state that commands may change.
pub(crate) struct ConnState {
    pub info: Arc<ClientInfo>,
    pub proto: Protocol,
    pub stats: Arc<WorkerStats>,
    /// READONLY was sent: reads may be served by this node's replica.
    pub readonly: bool,
    /// The client asked for the cluster layout: answer -MOVED instead of
    /// forwarding to the leader.
    pub cluster_aware: bool,
    /// Commands waiting for the cluster (added when dispatch returns
    /// `Flow::Defer`), run together, answered in order.
    pub deferred: Vec<Deferred>,
    /// MULTI was sent: commands are queued until EXEC or DISCARD.
    pub multi: Option<Multi>,
    /// What WATCH recorded, checked by the next EXEC.
    pub watched: Vec<Watched>,
    /// Who the connection is (ACL); not authenticated until set.
    pub auth: crate::acl::ConnAuth,
}

/// A transaction being queued (cmd/multi.rs).
#[derive(Default)]
pub(crate) struct Multi {
    /// Each queued command's arguments, name first.
    pub cmds: Vec<Vec<Vec<u8>>>,
    pub bytes: usize,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub dirty: bool,
    /// A queued command may need memory (evict first, in cluster mode).
    pub denyoom: bool,
    /// Cluster mode: the group of the keys queued so far.
    pub group: Option<u16>,
}

/// One watched key: its write version and whether it was alive.
pub(crate) struct Watched {
    pub key: Vec<u8>,
    pub version: u64,
    pub alive: bool,
    /// Cluster mode: the key's group.
    pub group: Option<u16>,
}

impl ConnState {
    pub fn new(info: Arc<ClientInfo>, stats: Arc<WorkerStats>) -> ConnState {
        ConnState {
            info,
            proto: Protocol::Resp2,
            stats,
            readonly: false,
            cluster_aware: false,
            deferred: Vec::new(),
            multi: None,
            watched: Vec::new(),
            auth: Default::default(),
        }
    }

    /// The state a forwarded request runs with: RESP3, and a client and
    /// counters of its own (shared by every forwarded request; not in the
    /// client registry).
    pub fn forwarded(from: &ForwardedClient) -> ConnState {
        let mut c = ConnState::new(from.info.clone(), from.stats.clone());
        c.proto = Protocol::Resp3;
        c
    }
}

/// The one client every forwarded request runs as.
pub(crate) struct ForwardedClient {
    info: Arc<ClientInfo>,
    stats: Arc<WorkerStats>,
}

impl ForwardedClient {
    pub fn new(commands: usize) -> ForwardedClient {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        ForwardedClient {
            info: Arc::new(ClientInfo::detached(addr)),
            stats: Arc::new(WorkerStats::new(commands)),
        }
    }
}
