//! openraft's network for one group, on top of the shared [`PeerNet`].

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::lease::LeaseClock;
use crate::net::{NetError, PeerNet, K_APPEND, K_SNAPSHOT, K_VOTE};
use crate::types::{NodeInfo, C};

pub struct Factory {
    pub net: Arc<PeerNet>,
    pub group: u16,
    pub lease: Arc<LeaseClock>,
    pub hold: Arc<Hold>,
}

/// A group's state during a leadership transfer (see `Inner::transfer`).
#[derive(Default)]
pub struct Hold {
    /// This node takes no new reads or writes for the group.
    pub refuse: AtomicBool,
    /// This node sends the group's followers nothing (no appends, no
    /// heartbeats), so their leader leases lapse.
    pub network: AtomicBool,
}

impl RaftNetworkFactory<C> for Factory {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Client {
        Client {
            net: self.net.clone(),
            group: self.group,
            target,
            node: node.clone(),
            lease: self.lease.clone(),
            hold: self.hold.clone(),
        }
    }
}

pub struct Client {
    net: Arc<PeerNet>,
    group: u16,
    target: u64,
    node: NodeInfo,
    lease: Arc<LeaseClock>,
    hold: Arc<Hold>,
}

type RpcErr<E> = RPCError<u64, NodeInfo, RaftError<u64, E>>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Client {
    async fn rpc<Req, Resp, E>(
        &self,
        kind: u8,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if kind != K_VOTE && self.hold.network.load(Relaxed) {
            let why = Msg("held for a leadership transfer".into());
            return Err(RPCError::Unreachable(Unreachable::new(&why)));
        }
        let body = postcard::to_allocvec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))?;
        let ttl = option.hard_ttl().max(Duration::from_millis(50));
        let resp = self
            .net
            .call(self.target, &self.node.peer, self.group, kind, body, ttl)
            .await
            .map_err(|e| match e {
                NetError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        let r: Result<Resp, RaftError<u64, E>> = postcard::from_bytes(&resp)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<C> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr<openraft::error::Infallible>> {
        let term = rpc.vote.leader_id.term;
        let sent = Instant::now();
        let r = self.rpc(K_APPEND, &rpc, &option).await;
        if let Ok(resp) = &r {
            // Anything but a higher vote means the follower accepted this
            // leader's term at a time after `sent`: it extends the lease.
            if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
                self.lease.record(term, self.target, sent);
            }
        }
        r
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        self.rpc(K_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.rpc(K_VOTE, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        // Short and constant: a restarted peer is back in a few hundred
        // milliseconds and failover time counts every one.
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
