//! Joining a cluster: the authenticated challenge, learner catch-up, and promotion.
//!
//! ```text
//!  joiner ──KES port, node cert, its join nonce──▶ member /v1/cluster/join-request ──Join──▶ leader
//!  leader ──JoinChallenge {cluster id, one-time key wrapped by the seals, fresh nonce,
//!           the joiner's nonce}──▶ joiner (pinned to the certificate it asked with)
//!  joiner: takes it only for its own pending join, once; unwraps with its own root key and
//!          answers HMAC(join key of the one-time key, nonce ‖ cluster id ‖ node id ‖ SPKI)
//!  leader: compare in constant time, add_learner (catch up by log or snapshot), promote to voter
//! ```
//! No peer is ever handed key material or the cluster key's wrapped copies: a requester that
//! does not hold the root key gets a one-time key it cannot open and that opens nothing.

use super::Cluster;
use crate::raft::{NodeId, NodeInfo, decode, encode};
use crate::seal::{ClusterKey, WrappedCopy, wrap_with};
use hmac::{Hmac, Mac};
use kes_cluster_proto::{ChallengeReply, ChallengeRequest, JoinRequest};
use openraft::ChangeMembers;
use rand::RngCore;
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The length of a joiner's nonce.
const JOIN_NONCE_BYTES: usize = 32;

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

/// What a challenge key is wrapped for: not the cluster id alone, so a challenge copy can never
/// pass for a copy of the cluster key, nor a cluster-key copy for a challenge.
fn challenge_context(cluster_id: &str) -> String {
    format!("{cluster_id}/join-challenge")
}

impl Cluster {
    /// On the leader: admits a node after it proved it holds this cluster's root key.
    ///
    /// The challenge carries a one-time key wrapped by the seals that hold the cluster key,
    /// never the cluster key's own copies: whoever asks learns nothing it could use, and only
    /// a node that can unwrap it (so could unwrap the cluster key) can answer.
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
        let members: Vec<String> = membership.nodes().map(|(_, n)| n.spki.clone()).collect();
        match membership.get_node(&req.node_id) {
            Some(existing) if existing.spki != req.spki => {
                return Err(format!(
                    "node id {} is already a member with another certificate",
                    req.node_id
                ));
            }
            Some(_) if membership.voter_ids().any(|v| v == req.node_id) => return Ok(()),
            // A learner proved itself when it was added. It is challenged again only so that,
            // if it has not received the membership yet, it takes a ticket for this join and
            // accepts the members' Raft RPCs; a learner that has it refuses, which is fine.
            Some(_) => {
                if let Err(e) = self.challenge(req, members).await {
                    tracing::info!("learner {} was not challenged again: {e}", req.node_id);
                }
            }
            None => self.challenge(req, members).await?,
        }
        let info = NodeInfo {
            http: req.http_addr.clone(),
            grpc: req.grpc_addr.clone(),
            spki: req.spki.clone(),
            next_spki: String::new(),
        };
        tracing::info!("adding node {} ({info}) as a learner", req.node_id);
        tokio::time::timeout(
            Duration::from_secs(120),
            self.add_learner_when_free(req.node_id, info),
        )
        .await
        .map_err(|_| "the new node did not catch up within 120 s".to_owned())??;
        tracing::info!("promoting node {} to voter", req.node_id);
        let voters: BTreeSet<NodeId> = [req.node_id].into();
        self.change_membership_when_free(ChangeMembers::AddVoterIds(voters))
            .await?;
        // Peers take a member's RPCs (votes included) only once a leader has signed a
        // membership that names it (service.rs). The join is answered only then: a leader
        // lost right after it could otherwise leave the new voter unable to win any vote.
        self.wait_signed_member(&req.spki, SIGNED_MEMBERSHIP_WAIT)
            .await
    }

    /// Waits until the signed membership in this node's state names `spki`.
    async fn wait_signed_member(&self, spki: &str, within: Duration) -> Result<(), String> {
        let t0 = std::time::Instant::now();
        while !self.signed_member(spki) {
            if t0.elapsed() > within {
                return Err(
                    "the new member was added, but no signed membership names it yet".into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// On the leader: sends the joiner (reached at its gRPC address, pinned to the certificate
    /// it asked with) a challenge only a holder of the root key can answer, and checks it.
    async fn challenge(&self, req: &JoinRequest, members: Vec<String>) -> Result<(), String> {
        if req.join_nonce.len() != JOIN_NONCE_BYTES {
            return Err("the join request carries no nonce: upgrade the joining node".into());
        }
        let meta = self
            .state
            .cluster_meta()
            .map_err(|e| e.to_string())?
            .ok_or("the cluster is not initialised yet")?;
        let context = challenge_context(&meta.cluster_id);
        let challenge_key = ClusterKey::generate();
        let mut copies: Vec<WrappedCopy> = Vec::new();
        for seal_id in meta.wrapped.iter().map(|c| &c.seal_id) {
            let Some(seal) = self.seals.get(seal_id) else {
                continue;
            };
            match wrap_with(seal.as_ref(), &challenge_key, &context).await {
                Ok(copy) => copies.push(copy),
                Err(e) => tracing::warn!("seal {seal_id} cannot wrap a join challenge: {e}"),
            }
        }
        if copies.is_empty() {
            return Err("none of this leader's seals holds the cluster key now".into());
        }
        let mut nonce = [0u8; 32];
        rand::rng().fill_bytes(&mut nonce);
        let mut client = self.channels.one_off_client(&req.grpc_addr, &req.spki)?;
        let mut challenge = tonic::Request::new(ChallengeRequest {
            cluster_id: meta.cluster_id.clone(),
            wrapped_keys: encode(&copies),
            nonce: nonce.to_vec(),
            member_spkis: members,
            join_nonce: req.join_nonce.clone(),
        });
        challenge.set_timeout(Duration::from_secs(10));
        let reply = client
            .join_challenge(challenge)
            .await
            .map_err(|s| match s.code() {
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                    format!("the joining node refused: {}", s.message())
                }
                _ => format!(
                    "cannot reach the joining node at {}: {}",
                    req.grpc_addr,
                    s.message()
                ),
            })?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(format!("the joining node refused: {}", reply.error));
        }
        let want = proof(
            &challenge_key.derive(1).join_key,
            &nonce,
            &meta.cluster_id,
            req.node_id,
            &req.spki,
        );
        if reply.node_id != req.node_id || !bool::from(want.ct_eq(reply.proof.as_slice())) {
            tracing::warn!(
                "join refused: node {} (SPKI {}) could not prove it holds the root key",
                req.node_id,
                req.spki
            );
            return Err("the joining node's proof does not match: its root key cannot unwrap this cluster's key".into());
        }
        Ok(())
    }

    /// Whether this node already belongs to a cluster (it has a membership or a cluster
    /// record): such a node never takes a join challenge.
    pub fn in_a_cluster(&self) -> bool {
        self.metrics()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
            || !matches!(self.state.cluster_meta(), Ok(None))
    }

    /// On the joiner: answers the challenge of its own pending join, sent by `challenger`.
    pub async fn answer_challenge(
        &self,
        req: &ChallengeRequest,
        challenger: &str,
    ) -> ChallengeReply {
        let node_id = self.node_id;
        let refuse = |error: String| {
            tracing::warn!("refused a join challenge from SPKI {challenger}: {error}");
            ChallengeReply {
                node_id,
                proof: Vec::new(),
                error,
            }
        };
        if self.in_a_cluster() {
            return refuse("this node is already a member of a cluster".into());
        }
        if !req.member_spkis.iter().any(|s| s == challenger) {
            return refuse("the challenger is not among the members it names".into());
        }
        if let Err(why) = self.ticket.claim(&req.join_nonce) {
            return refuse(why.to_string());
        }
        let Ok(wrapped) = decode::<Vec<WrappedCopy>>(&req.wrapped_keys) else {
            return refuse("malformed challenge".into());
        };
        let key = match self
            .seals
            .unseal(&wrapped, &challenge_context(&req.cluster_id))
            .await
        {
            Ok((key, _)) => key,
            Err(e) => {
                return refuse(format!(
                    "this node's seals ({}) cannot unwrap the cluster key (the join challenge did not open): {e}",
                    self.seals.ids().join(", ")
                ));
            }
        };
        let spki = self.tls.as_ref().map(|t| t.cert.spki()).unwrap_or_default();
        self.ticket.grant(&req.join_nonce, req.member_spkis.clone());
        self.set_cluster_id(&req.cluster_id);
        ChallengeReply {
            node_id,
            proof: proof(
                &key.derive(1).join_key,
                &req.nonce,
                &req.cluster_id,
                node_id,
                &spki,
            )
            .to_vec(),
            error: String::new(),
        }
    }
}

/// On the joiner: asks a member (by its KES URL) to add this node, presenting the node
/// certificate on the member's KES port. While the request runs, this node takes the one
/// challenge that carries the request's nonce; when it returns, that ticket is gone.
pub async fn join_through(
    cluster: &Cluster,
    member_url: &str,
    node_cert: &std::path::Path,
    node_key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<(), String> {
    let nonce = cluster.ticket.begin();
    let result = ask_to_join(cluster, &nonce, member_url, node_cert, node_key, ca).await;
    if result.is_ok() {
        // The leader may have promoted this node before the membership reached it: the ticket
        // lets the members' RPCs in until this node's own log names it.
        cluster.wait_for_own_membership(OWN_MEMBERSHIP_WAIT).await;
    }
    cluster.ticket.end(&nonce);
    result
}

/// How long a join waits for the leader to sign the membership that names the new member (it
/// re-signs every 500 ms).
const SIGNED_MEMBERSHIP_WAIT: Duration = Duration::from_secs(10);

/// How long an admitted node keeps its ticket while its own log catches up.
const OWN_MEMBERSHIP_WAIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// Waits, at most `within`, until this node's own membership names it.
    async fn wait_for_own_membership(&self, within: Duration) {
        let me = self.node_id;
        let named = self
            .raft
            .wait(Some(within))
            .metrics(
                |m| m.membership_config.membership().get_node(&me).is_some(),
                "wait for this node's own membership",
            )
            .await;
        if named.is_err() {
            tracing::warn!("admitted, but this node's log does not name it yet");
        }
    }
}

/// A KES client of the node at `url` that presents this node's node certificate (not a client
/// identity): how a node asks another to admit it, or whether it founded a cluster.
pub fn node_client(
    url: &str,
    node_cert: &std::path::Path,
    node_key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<kes_cluster::Client, String> {
    kes_cluster::Client::new(&kes_cluster::ClientConfig {
        server: url.to_owned(),
        cert: Some(node_cert.to_owned()),
        key: Some(node_key.to_owned()),
        ca: Some(ca.to_owned()),
        insecure: false,
    })
    .map_err(|e| e.to_string())
}

async fn ask_to_join(
    cluster: &Cluster,
    nonce: &[u8; 32],
    member_url: &str,
    node_cert: &std::path::Path,
    node_key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<(), String> {
    let client =
        node_client(member_url, node_cert, node_key, ca)?.with_timeout(Duration::from_secs(150));
    let body = serde_json::json!({
        "node_id": cluster.node_id,
        "http": cluster.me.http,
        "grpc": cluster.me.grpc,
        "nonce": hex::encode(nonce),
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
