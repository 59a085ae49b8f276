//! The client side of the Raft network: openraft RPCs as gRPC calls to the peer.

use super::{NodeId, NodeInfo, PeerContact, ReadLeases, SentCommit, TypeConfig, decode, encode};
use crate::cluster::transport::PeerChannels;
use kes_cluster_proto::RaftRequest;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use std::sync::{Arc, RwLock};

/// Makes a [`PeerNetwork`] per target; channels are shared and cached.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    channels: PeerChannels,
    cluster_id: Arc<RwLock<String>>,
    sent_commit: SentCommit,
    read_leases: ReadLeases,
    contact: PeerContact,
}

impl NetworkFactory {
    /// A factory over `channels`; every RPC carries the current `cluster_id`. Every commit
    /// index sent is held back for `read_leases`, and recorded in `sent_commit` first; every
    /// append a follower acknowledges is recorded in `read_leases`; every answer, in `contact`.
    pub fn new(
        channels: PeerChannels,
        cluster_id: Arc<RwLock<String>>,
        sent_commit: SentCommit,
        read_leases: ReadLeases,
        contact: PeerContact,
    ) -> Self {
        NetworkFactory {
            channels,
            cluster_id,
            sent_commit,
            read_leases,
            contact,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerNetwork {
        PeerNetwork {
            target,
            node: node.clone(),
            channels: self.channels.clone(),
            cluster_id: self.cluster_id.clone(),
            sent_commit: self.sent_commit.clone(),
            read_leases: self.read_leases.clone(),
            contact: self.contact.clone(),
        }
    }
}

/// The RPCs to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    target: NodeId,
    /// How the membership says the target is reached: the channel is pinned to its SPKIs.
    node: NodeInfo,
    channels: PeerChannels,
    cluster_id: Arc<RwLock<String>>,
    sent_commit: SentCommit,
    read_leases: ReadLeases,
    contact: PeerContact,
}

#[derive(Debug)]
struct Msg(String);
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Msg {}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerNetwork {
    async fn call<Req, Resp, E>(
        &self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let mut client = self
            .channels
            .member_client(&self.node)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Msg(e))))?;
        let cluster_id = self
            .cluster_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut request = tonic::Request::new(RaftRequest {
            cluster_id,
            payload: encode(req),
        });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        // Only a peer that cannot be reached is Unreachable: openraft then backs off for
        // 500 ms before it tries that peer again. An RPC that merely ran past its deadline
        // (openraft gives an AppendEntries one heartbeat interval, however busy the machine)
        // is retried at the next heartbeat instead; backing off there let the leader's lease
        // run out under load, and a busy cluster answered 503.
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable => {
                RPCError::Unreachable(Unreachable::new(&Msg(status.message().to_owned())))
            }
            _ => RPCError::Network(NetworkError::new(&Msg(format!(
                "{}: {}",
                status.code(),
                status.message()
            )))),
        })?;
        self.contact.heard(self.target);
        let decoded: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e))))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let mut rpc = rpc;
        if let Some(commit) = rpc.leader_commit {
            rpc.leader_commit = self.read_leases.commit_for(self.target, commit);
        }
        self.sent_commit
            .record(rpc.leader_commit.map_or(0, |l| l.index));
        let term = rpc.vote.leader_id().get_term();
        let last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        let response = self.call(Rpc::Append, &rpc, &option).await?;
        let appended = match &response {
            AppendEntriesResponse::Success => last,
            AppendEntriesResponse::PartialSuccess(upto) => *upto,
            _ => None,
        };
        if let Some(last) = appended {
            self.read_leases.appended(self.target, term, last);
        }
        Ok(response)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let term = rpc.vote.leader_id().get_term();
        let (done, last) = (rpc.done, rpc.meta.last_log_id);
        let response = self.call(Rpc::Snapshot, &rpc, &option).await?;
        if let (true, Some(last)) = (done, last) {
            self.read_leases.appended(self.target, term, last);
        }
        Ok(response)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
