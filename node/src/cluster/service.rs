//! The gRPC service between nodes. Every call is checked: the cluster id must match, and the
//! caller's node-certificate SPKI must be a current member (or, before this node has a
//! membership, one named in the join challenge it answered). Peer input never panics.

use super::Cluster;
use crate::cluster::transport::PeerSpki;
use crate::raft::{NodeId, TypeConfig, decode, encode};
use crate::state::Command;
use kes_cluster_proto::cluster_server::Cluster as ClusterRpc;
use kes_cluster_proto::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The service; one per node.
#[derive(Clone)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
    status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

impl ClusterService {
    /// A service for `cluster`; `status` renders this node's status for peers.
    pub fn new(
        cluster: Arc<Cluster>,
        status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    ) -> Self {
        ClusterService { cluster, status }
    }

    /// The tonic server for it, with message limits that match the Raft batch sizes.
    pub fn into_server(self) -> cluster_server::ClusterServer<Self> {
        cluster_server::ClusterServer::new(self)
            .max_decoding_message_size(crate::raft::GRPC_MESSAGE_LIMIT)
            .max_encoding_message_size(crate::raft::GRPC_MESSAGE_LIMIT)
    }

    fn peer<T>(req: &Request<T>) -> String {
        req.extensions()
            .get::<PeerSpki>()
            .map(|p| p.0.clone())
            .unwrap_or_default()
    }

    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        let mine = self.cluster.cluster_id();
        if !mine.is_empty() && !cluster_id.is_empty() && mine != cluster_id {
            return Err(Status::permission_denied(format!(
                "this node belongs to cluster {mine}"
            )));
        }
        Ok(())
    }

    /// Members only (or, while joining, the members named in the challenge).
    fn check_member<T>(&self, req: &Request<T>, cluster_id: &str) -> Result<(), Status> {
        self.check_cluster(cluster_id)?;
        let spki = Self::peer(req);
        if spki.is_empty() || self.cluster.state.is_tombstoned(&spki) {
            return Err(Status::permission_denied("certificate not accepted"));
        }
        if (self.cluster.is_member_spki(&spki) && self.cluster.signed_member(&spki))
            || self.cluster.ticket_allows(&spki)
        {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "only current members may call this",
            ))
        }
    }

    fn reply<T: serde::Serialize>(v: &T) -> Result<Response<RaftReply>, Status> {
        Ok(Response::new(RaftReply { payload: encode(v) }))
    }
}

fn bad(e: String) -> Status {
    Status::invalid_argument(e)
}

#[tonic::async_trait]
impl ClusterRpc for ClusterService {
    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.get_ref().payload).map_err(bad)?;
        Self::reply(&self.cluster.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let rpc: VoteRequest<NodeId> = decode(&req.get_ref().payload).map_err(bad)?;
        Self::reply(&self.cluster.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.get_ref().payload).map_err(bad)?;
        Self::reply(&self.cluster.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let cmd: Command = decode(&req.get_ref().command).map_err(bad)?;
        if encode(&cmd).len() > crate::raft::MAX_ENTRY_BYTES {
            return Err(Status::invalid_argument("command too large"));
        }
        let within = self.cluster.settings.write_wait;
        let mut reply = ForwardReply::default();
        match self.cluster.propose_for_peer(cmd, within).await {
            Ok(c) => {
                reply.index = c.index;
                reply.outcome = encode(&c.outcome);
            }
            Err(e) => match e.split_once(':') {
                Some(("not-leader", why)) => {
                    reply.not_leader = why.to_owned();
                    reply.leader_id = self.cluster.metrics().current_leader.unwrap_or(0);
                }
                _ => reply.unknown = e,
            },
        }
        Ok(Response::new(reply))
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let mut reply = ReadIndexReply::default();
        match self.cluster.leader_read_index() {
            Ok((index, left)) => {
                reply.commit_index = index;
                reply.lease_remaining_ms = left.as_millis() as u64;
            }
            Err(e) => {
                reply.not_leader = e;
                reply.leader_id = self.cluster.metrics().current_leader.unwrap_or(0);
            }
        }
        Ok(Response::new(reply))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let mut reply = JoinReply {
            cluster_id: self.cluster.cluster_id(),
            leader_id: self.cluster.metrics().current_leader.unwrap_or(0),
            ..Default::default()
        };
        if let Err(e) = self.cluster.admit(req.get_ref()).await {
            reply.error = e;
        }
        Ok(Response::new(reply))
    }

    async fn join_challenge(
        &self,
        req: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeReply>, Status> {
        // Any holder of a node-CA certificate may challenge (mTLS checked the chain); the
        // answer only proves what this node can unwrap, it reveals nothing.
        self.check_cluster(&req.get_ref().cluster_id)?;
        Ok(Response::new(
            self.cluster
                .answer_challenge(req.get_ref(), self.cluster.node_id)
                .await,
        ))
    }

    async fn admin(&self, req: Request<AdminRequest>) -> Result<Response<AdminReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let op: super::status::AdminOp = decode(&req.get_ref().op).map_err(bad)?;
        let mut reply = AdminReply::default();
        match self.cluster.run_admin(op).await {
            Ok(v) => reply.result = v,
            Err(e) if e.starts_with("not-leader") => reply.not_leader = e,
            Err(e) => reply.error = e,
        }
        Ok(Response::new(reply))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.check_member(&req, &req.get_ref().cluster_id)?;
        let json = serde_json::to_vec(&(self.status)()).unwrap_or_default();
        Ok(Response::new(StatusReply { json }))
    }
}
