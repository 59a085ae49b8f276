//! Joining a cluster: the authenticated challenge, learner catch-up, and promotion.
//!
//! ```text
//!  joiner ──KES port, node cert──▶ member /v1/cluster/join-request ──gRPC Join──▶ leader
//!  leader ──gRPC JoinChallenge {cluster id, wrapped cluster key, fresh nonce}──▶ joiner
//!  joiner: unwrap with its own root key, answer HMAC(join key, nonce ‖ cluster id ‖ node id ‖ SPKI)
//!  leader: compare in constant time, add_learner (catch up by log or snapshot), promote to voter
//! ```
//! A node is never handed plaintext key material by a peer: it proves it can unwrap the copy
//! that is in the replicated state anyway.

use super::Cluster;
use crate::raft::{NodeId, NodeInfo, decode, encode};
use crate::seal::WrappedCopy;
use hmac::{Hmac, Mac};
use kes_cluster_proto::{ChallengeReply, ChallengeRequest, JoinRequest};
use openraft::ChangeMembers;
use rand::RngCore;
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// What a joiner learnt from the leader's challenge: which cluster, and whose Raft RPCs to
/// accept before it has a membership of its own.
#[derive(Debug, Clone)]
pub struct JoinTicket {
    /// The cluster being joined.
    pub cluster_id: String,
    /// The members' node-certificate SPKIs.
    pub member_spkis: Vec<String>,
}

fn proof(
    join_key: &[u8; 32],
    nonce: &[u8],
    cluster_id: &str,
    node_id: NodeId,
    spki: &str,
) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(join_key)
        .expect("HMAC takes any key length");
    for part in [
        nonce,
        cluster_id.as_bytes(),
        &node_id.to_be_bytes(),
        spki.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Cluster {
    /// On the leader: admits a node after it proved it can unseal.
    pub async fn admit(&self, req: &JoinRequest) -> Result<(), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        if req.spki.is_empty() || req.grpc_addr.is_empty() {
            return Err("a joining node must present its node certificate and gRPC address".into());
        }
        if self.state.is_tombstoned(&req.spki) {
            return Err("this node certificate belongs to a removed member and is refused for good; give the node a new certificate and data dir".into());
        }
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        if let Some(existing) = membership.get_node(&req.node_id) {
            if existing.spki != req.spki {
                return Err(format!(
                    "node id {} is already a member with another certificate",
                    req.node_id
                ));
            }
            if membership.voter_ids().any(|v| v == req.node_id) {
                return Ok(());
            }
        }
        let meta = self
            .state
            .cluster_meta()
            .map_err(|e| e.to_string())?
            .ok_or("the cluster is not initialised yet")?;
        let keys = self
            .seal
            .keys()
            .ok_or("this leader is sealed and cannot check a joiner")?;
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let member_spkis = membership.nodes().map(|(_, n)| n.spki.clone()).collect();
        let mut client = self.channels.client(&req.grpc_addr)?;
        let mut challenge = tonic::Request::new(ChallengeRequest {
            cluster_id: meta.cluster_id.clone(),
            wrapped_keys: encode(&meta.wrapped),
            nonce: nonce.to_vec(),
            member_spkis,
        });
        challenge.set_timeout(Duration::from_secs(10));
        let reply = client
            .join_challenge(challenge)
            .await
            .map_err(|s| {
                format!(
                    "cannot reach the joining node at {}: {}",
                    req.grpc_addr,
                    s.message()
                )
            })?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(format!("the joining node refused: {}", reply.error));
        }
        let want = proof(
            &keys.join_key,
            &nonce,
            &meta.cluster_id,
            req.node_id,
            &req.spki,
        );
        if reply.node_id != req.node_id || !bool::from(want.ct_eq(reply.proof.as_slice())) {
            return Err("the joining node's proof does not match: its root key cannot unwrap this cluster's key".into());
        }
        let info = NodeInfo {
            http: req.http_addr.clone(),
            grpc: req.grpc_addr.clone(),
            spki: req.spki.clone(),
        };
        tracing::info!("adding node {} ({info}) as a learner", req.node_id);
        tokio::time::timeout(
            Duration::from_secs(120),
            self.raft.add_learner(req.node_id, info, true),
        )
        .await
        .map_err(|_| "the new node did not catch up within 120 s".to_owned())?
        .map_err(|e| e.to_string())?;
        tracing::info!("promoting node {} to voter", req.node_id);
        let voters: BTreeSet<NodeId> = [req.node_id].into();
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// On the joiner: answers the leader's challenge with its own seals.
    pub async fn answer_challenge(
        &self,
        req: &ChallengeRequest,
        node_id: NodeId,
    ) -> ChallengeReply {
        let refuse = |error: String| ChallengeReply {
            node_id,
            proof: Vec::new(),
            error,
        };
        let mine = self.cluster_id();
        if !mine.is_empty() && mine != req.cluster_id {
            return refuse(format!(
                "this node belongs to cluster {mine}, not {}",
                req.cluster_id
            ));
        }
        let Ok(wrapped) = decode::<Vec<WrappedCopy>>(&req.wrapped_keys) else {
            return refuse("malformed challenge".into());
        };
        let ck = match self.seals.unseal(&wrapped, &req.cluster_id).await {
            Ok((ck, _)) => ck,
            Err(e) => {
                return refuse(format!(
                    "this node's seals ({}) cannot unwrap the cluster key: {e}",
                    self.seals.ids().join(", ")
                ));
            }
        };
        let keys = ck.derive(1);
        let spki = self
            .tls
            .as_ref()
            .map(|t| t.spki.clone())
            .unwrap_or_default();
        *self.ticket.lock().unwrap_or_else(|e| e.into_inner()) = Some(JoinTicket {
            cluster_id: req.cluster_id.clone(),
            member_spkis: req.member_spkis.clone(),
        });
        self.set_cluster_id(&req.cluster_id);
        ChallengeReply {
            node_id,
            proof: proof(&keys.join_key, &req.nonce, &req.cluster_id, node_id, &spki).to_vec(),
            error: String::new(),
        }
    }

    /// Whether a Raft RPC from `spki` is acceptable before this node has a membership: only
    /// from the members named in the challenge it answered.
    pub fn ticket_allows(&self, spki: &str) -> bool {
        self.ticket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| t.member_spkis.iter().any(|s| s == spki))
    }
}

/// On the joiner: asks a member (by its KES URL) to add this node, presenting the node
/// certificate on the member's KES port.
pub async fn join_through(
    cluster: &Cluster,
    member_url: &str,
    node_cert: &std::path::Path,
    node_key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<(), String> {
    let client = kes_cluster::Client::new(&kes_cluster::ClientConfig {
        server: member_url.to_owned(),
        cert: Some(node_cert.to_owned()),
        key: Some(node_key.to_owned()),
        ca: Some(ca.to_owned()),
        insecure: false,
    })
    .map_err(|e| e.to_string())?
    .with_timeout(Duration::from_secs(150));
    let body = serde_json::json!({
        "node_id": cluster.node_id,
        "http": cluster.me.http,
        "grpc": cluster.me.grpc,
    })
    .to_string();
    let r = client
        .request(
            kes_cluster::Method::POST,
            "/v1/cluster/join-request",
            &[],
            body,
        )
        .await
        .map_err(|e| e.to_string())?;
    if r.is_success() {
        Ok(())
    } else {
        Err(r.api_error().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::proof;

    /// An answer is bound to the challenge's fresh nonce, the cluster, the node and its
    /// certificate: replaying it to another challenge, or presenting it for another node,
    /// does not verify.
    #[test]
    fn a_proof_answers_one_challenge_only() {
        let key = [9u8; 32];
        let p = proof(&key, b"nonce-1", "cluster", 7, "spki");
        assert_eq!(p, proof(&key, b"nonce-1", "cluster", 7, "spki"));
        assert_ne!(
            p,
            proof(&key, b"nonce-2", "cluster", 7, "spki"),
            "replayed to a new nonce"
        );
        assert_ne!(p, proof(&key, b"nonce-1", "other", 7, "spki"));
        assert_ne!(p, proof(&key, b"nonce-1", "cluster", 8, "spki"));
        assert_ne!(p, proof(&key, b"nonce-1", "cluster", 7, "other-spki"));
        assert_ne!(
            p,
            proof(&[8u8; 32], b"nonce-1", "cluster", 7, "spki"),
            "another root key"
        );
        // Length prefixes keep field boundaries apart.
        assert_ne!(
            proof(&key, b"ab", "c", 7, "s"),
            proof(&key, b"a", "bc", 7, "s")
        );
    }
}
