//! The simulated network: openraft's RPCs between the nodes of one
//! simulated cluster, in memory, with every request and reply going
//! through the seeded fault model of the [`World`](super::World): loss,
//! delay (and so reordering), duplication, symmetric and one-way
//! partitions, and crashed nodes.
//!
//! Bodies are postcard-encoded both ways, as on cairn's real transport, so
//! the wire types round-trip here too. A lost message is never reported as
//! `Unreachable`: openraft answers that with a backoff whose `select!` is
//! not biased (tokio's per-runtime RNG would pick the branch), so the
//! caller sees a plain network error once the RPC's time-to-live passed.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Sim;
use crate::types::{NodeInfo, Raft, C};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Append => "append",
            Kind::Vote => "vote",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// The network factory of one node incarnation.
pub(crate) struct SimFactory {
    pub sim: Sim,
    pub from: u64,
    pub inc: u64,
}

impl RaftNetworkFactory<C> for SimFactory {
    type Network = SimConn;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> SimConn {
        SimConn {
            sim: self.sim.clone(),
            from: self.from,
            inc: self.inc,
            to: target,
        }
    }
}

pub(crate) struct SimConn {
    sim: Sim,
    from: u64,
    inc: u64,
    to: u64,
}

type RpcErr<E> = RPCError<u64, NodeInfo, RaftError<u64, E>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

fn net_err<E: std::error::Error>(s: impl Into<String>) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&Msg(s.into())))
}

impl SimConn {
    async fn rpc<Req, Resp, E>(
        &self,
        kind: Kind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = postcard::to_allocvec(req).map_err(|e| net_err(e.to_string()))?;
        let ttl = option.hard_ttl().max(Duration::from_millis(10));
        let resp = self
            .sim
            .transmit(self.from, self.inc, self.to, kind, body, ttl)
            .await
            .ok_or_else(|| net_err("message lost"))?;
        let r: Result<Resp, RaftError<u64, E>> =
            postcard::from_bytes(&resp).map_err(|e| net_err(e.to_string()))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

impl RaftNetwork<C> for SimConn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr<openraft::error::Infallible>> {
        if rpc.vote.committed {
            // Only a leader sends a committed vote.
            let l = rpc.vote.leader_id;
            self.sim.observe_leader(l.term, l.node_id, "append");
        }
        self.sim.observe_entries(self.from, &rpc.entries);
        self.rpc(Kind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        self.rpc(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.rpc(Kind::Vote, &rpc, &option).await
    }
}

/// Runs a delivered request on the target's Raft and encodes the result
/// (what cairn's peer handler does with a frame body). `None`: the body
/// did not decode, which the simulation reports as a violation.
pub(crate) async fn handle(raft: &Raft, kind: Kind, body: &[u8]) -> Option<Vec<u8>> {
    let out = match kind {
        Kind::Append => {
            let req: AppendEntriesRequest<C> = postcard::from_bytes(body).ok()?;
            postcard::to_allocvec(&raft.append_entries(req).await)
        }
        Kind::Vote => {
            let req: VoteRequest<u64> = postcard::from_bytes(body).ok()?;
            postcard::to_allocvec(&raft.vote(req).await)
        }
        Kind::Snapshot => {
            let req: InstallSnapshotRequest<C> = postcard::from_bytes(body).ok()?;
            postcard::to_allocvec(&raft.install_snapshot(req).await)
        }
    };
    out.ok()
}
