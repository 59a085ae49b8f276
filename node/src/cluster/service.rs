//! The gRPC service between nodes. Every call is checked before its payload is decoded: the
//! cluster id must be this node's (never empty), and the caller's node-certificate SPKI must be
//! a current, signed, not tombstoned member. Two things widen who may make the Raft RPCs, and
//! nothing else: a node that is joining takes them from the members its challenge named, and a
//! member takes them from a caller it has never heard of once a majority of the members it
//! knows confirm it (`confirm`: a member that missed a membership change must still catch up).
//! Every refusal is logged with the caller's SPKI. Peer input never panics.

mod confirm;

use super::Cluster;
use crate::cluster::transport::PeerSpki;
use crate::raft::{NodeId, TypeConfig, decode, encode};
use crate::state::Command;
use kes_cluster_proto::cluster_server::Cluster as ClusterRpc;
use kes_cluster_proto::*;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Who may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callers {
    /// Current members only.
    Members,
    /// Current members; callers a majority of the known members confirm; and while this node
    /// is joining, the members its challenge named.
    RaftPeers,
}

/// The service; one per node.
#[derive(Clone)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
    status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    snapshot: Arc<super::snapshot_chunks::ChunkGuard>,
    unknown_callers: Arc<confirm::UnknownCallers>,
}

impl ClusterService {
    /// A service for `cluster`; `status` renders this node's status for peers.
    pub fn new(
        cluster: Arc<Cluster>,
        status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    ) -> Self {
        ClusterService {
            cluster,
            status,
            snapshot: Arc::default(),
            unknown_callers: Arc::default(),
        }
    }

    /// The tonic server for it, with message limits that match the Raft batch sizes: tonic
    /// refuses a larger message before it decodes it.
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

    /// A refusal, logged with the caller's SPKI (never with anything it sent).
    fn refuse(rpc: &str, spki: &str, status: Status) -> Status {
        tracing::warn!(
            "refused {rpc} from SPKI {}: {}",
            if spki.is_empty() { "(none)" } else { spki },
            status.message()
        );
        status
    }

    /// The request must name a cluster, and this node's once it knows its own (a node learns
    /// it from its state or its join challenge; until then the caller check alone decides).
    fn check_cluster(&self, rpc: &str, spki: &str, cluster_id: &str) -> Result<(), Status> {
        if cluster_id.is_empty() {
            return Err(Self::refuse(
                rpc,
                spki,
                Status::invalid_argument("the request names no cluster"),
            ));
        }
        let mine = self.cluster.cluster_id();
        if !mine.is_empty() && mine != cluster_id {
            let why = format!("this node belongs to cluster {mine}");
            return Err(Self::refuse(rpc, spki, Status::permission_denied(why)));
        }
        Ok(())
    }

    /// The caller must be allowed to make `rpc` for `cluster_id`.
    async fn check_peer<T>(
        &self,
        rpc: &str,
        req: &Request<T>,
        cluster_id: &str,
        callers: Callers,
    ) -> Result<(), Status> {
        let spki = Self::peer(req);
        self.check_cluster(rpc, &spki, cluster_id)?;
        if spki.is_empty() || self.cluster.state.is_tombstoned(&spki) {
            return Err(Self::refuse(
                rpc,
                &spki,
                Status::permission_denied("certificate not accepted"),
            ));
        }
        if self.is_signed_member(&spki) {
            return Ok(());
        }
        if callers == Callers::RaftPeers
            && (self.cluster.ticket.allows(&spki)
                || self.unknown_callers.confirmed(&self.cluster, &spki).await)
        {
            return Ok(());
        }
        Err(Self::refuse(
            rpc,
            &spki,
            Status::permission_denied("only current members may call this"),
        ))
    }

    /// Whether `spki` is a member in this node's own view: in the membership, not tombstoned,
    /// and in the membership a leader signed.
    fn is_signed_member(&self, spki: &str) -> bool {
        self.cluster.is_member_spki(spki) && self.cluster.signed_member(spki)
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
        let callers = Callers::RaftPeers;
        self.check_peer("AppendEntries", &req, &req.get_ref().cluster_id, callers)
            .await?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.get_ref().payload).map_err(bad)?;
        Self::reply(&self.cluster.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let callers = Callers::RaftPeers;
        self.check_peer("Vote", &req, &req.get_ref().cluster_id, callers)
            .await?;
        let rpc: VoteRequest<NodeId> = decode(&req.get_ref().payload).map_err(bad)?;
        Self::reply(&self.cluster.raft.vote(rpc).await)
    }

    async fn pre_vote(
        &self,
        req: Request<PreVoteRequest>,
    ) -> Result<Response<PreVoteReply>, Status> {
        // The same callers as Vote: a pre-vote decides whether a Vote follows.
        let callers = Callers::RaftPeers;
        self.check_peer("PreVote", &req, &req.get_ref().cluster_id, callers)
            .await?;
        Ok(Response::new(
            self.cluster.answer_pre_vote(req.get_ref()).await,
        ))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let callers = Callers::RaftPeers;
        self.check_peer("InstallSnapshot", &req, &req.get_ref().cluster_id, callers)
            .await?;
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.get_ref().payload).map_err(bad)?;
        self.snapshot
            .admit(&rpc.meta.snapshot_id, rpc.offset, rpc.data.len())
            .map_err(|e| Self::refuse("InstallSnapshot", &Self::peer(&req), bad(e)))?;
        Self::reply(&self.cluster.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReply>, Status> {
        self.check_peer("Forward", &req, &req.get_ref().cluster_id, Callers::Members)
            .await?;
        // The command is replicated as it came; a larger one is refused before it is decoded.
        if req.get_ref().command.len() > crate::raft::MAX_ENTRY_BYTES {
            return Err(Status::invalid_argument("command too large"));
        }
        let cmd: Command = decode(&req.get_ref().command).map_err(bad)?;
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
        self.check_peer(
            "ReadIndex",
            &req,
            &req.get_ref().cluster_id,
            Callers::Members,
        )
        .await?;
        let mut reply = ReadIndexReply::default();
        let caller = self.cluster.member_id(&Self::peer(&req));
        match self.cluster.leader_read_index(caller) {
            Ok((index, left, read_lease)) => {
                reply.commit_index = index;
                reply.lease_remaining_ms = left.as_millis() as u64;
                reply.read_lease = read_lease;
            }
            Err(e) => {
                reply.not_leader = e;
                reply.leader_id = self.cluster.metrics().current_leader.unwrap_or(0);
            }
        }
        Ok(Response::new(reply))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        self.check_peer("Join", &req, &req.get_ref().cluster_id, Callers::Members)
            .await?;
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
        // The caller is checked by the join gate: only the challenge of this node's own
        // pending join, carrying its nonce, is taken, and only once.
        let challenger = Self::peer(&req);
        self.check_cluster("JoinChallenge", &challenger, &req.get_ref().cluster_id)?;
        let reply = self
            .cluster
            .answer_challenge(req.get_ref(), &challenger)
            .await;
        if !reply.error.is_empty() {
            return Err(Status::permission_denied(reply.error));
        }
        Ok(Response::new(reply))
    }

    async fn admin(&self, req: Request<AdminRequest>) -> Result<Response<AdminReply>, Status> {
        self.check_peer("Admin", &req, &req.get_ref().cluster_id, Callers::Members)
            .await?;
        let op: super::status::AdminOp = decode(&req.get_ref().op).map_err(bad)?;
        self.cluster
            .admin_caller_allowed(&op, &Self::peer(&req))
            .map_err(|e| Self::refuse("Admin", &Self::peer(&req), Status::permission_denied(e)))?;
        let mut reply = AdminReply::default();
        match self.cluster.run_admin(op).await {
            Ok(v) => reply.result = v,
            Err(e) if e.starts_with("not-leader") => reply.not_leader = e,
            Err(e) => reply.error = e,
        }
        Ok(Response::new(reply))
    }

    async fn confirm_member(
        &self,
        req: Request<ConfirmMemberRequest>,
    ) -> Result<Response<ConfirmMemberReply>, Status> {
        let cluster_id = &req.get_ref().cluster_id;
        self.check_peer("ConfirmMember", &req, cluster_id, Callers::Members)
            .await?;
        Ok(Response::new(ConfirmMemberReply {
            member: self.is_signed_member(&req.get_ref().spki),
        }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.check_peer("Status", &req, &req.get_ref().cluster_id, Callers::Members)
            .await?;
        let json = serde_json::to_vec(&(self.status)()).unwrap_or_default();
        Ok(Response::new(StatusReply { json }))
    }
}
