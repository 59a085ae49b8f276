//! Status of one node and of the whole cluster, and the leader-only admin operations.

use super::Cluster;
use crate::raft::{NodeId, encode};
use kes_cluster_proto::{AdminRequest, StatusRequest};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Operations only the leader can run, forwarded to it over gRPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    /// Removes a tombstoned node from the membership; returns its SPKI.
    Remove {
        /// The node.
        node_id: NodeId,
    },
    /// A member announces the next node certificate it will present (DER): its SPKI becomes
    /// accepted beside the current one (`super::rotate`, step 1).
    StageNodeCertificate {
        /// The member, which must be the caller.
        node_id: NodeId,
        /// The new certificate.
        cert: Vec<u8>,
    },
    /// A member that presents its staged certificate makes its SPKI the only one (step 3).
    AdoptNodeCertificate {
        /// The member, which must be the caller.
        node_id: NodeId,
        /// The staged SPKI.
        spki: String,
    },
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

/// This node's view of itself: the `cluster` object of `/v1/status`.
pub fn node_status(c: &Cluster) -> serde_json::Value {
    let m = c.metrics();
    let last_log = m.last_log_index.unwrap_or(0);
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    let mut peers = Vec::new();
    let mut commit = c.lease_index().max(applied);
    if let Some(rep) = &m.replication {
        let mut matched: Vec<u64> = vec![last_log];
        for (id, log) in rep {
            if *id == c.node_id {
                continue;
            }
            let idx = log.map(|l| l.index).unwrap_or(0);
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == *id);
            if voter {
                matched.push(idx);
            }
            let address = m
                .membership_config
                .membership()
                .get_node(id)
                .map(|n| n.http.clone())
                .unwrap_or_default();
            peers.push(serde_json::json!({
                "id": id,
                "address": address,
                "match_index": idx,
                "lag": last_log.saturating_sub(idx),
            }));
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        commit = commit.max(matched[matched.len() / 2]);
    }
    serde_json::json!({
        "id": c.node_id,
        "cluster_id": c.cluster_id(),
        "role": role(m.state),
        "term": m.current_term,
        "leader": m.current_leader,
        "commit_index": commit,
        "applied_index": applied,
        "last_log_index": last_log,
        "address": c.me.http,
        "grpc": c.me.grpc,
        "sealed": c.seal.is_sealed(),
        "serving": c.serving().is_ok(),
        "last_contact_ms": if m.state == ServerState::Leader { Some(0) } else { c.millis_since_contact() },
        "reads": c.read_mode(),
        "read_rounds": c.reads.rounds(),
        "peers": peers,
    })
}

/// Every member's status, asking each over gRPC (1 s each, in parallel).
pub async fn cluster_status(c: &Cluster) -> serde_json::Value {
    let m = c.metrics();
    let members: Vec<(NodeId, crate::raft::NodeInfo)> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
    let mut asks = Vec::new();
    for (id, info) in members {
        let fut = async move {
            if id == c.node_id {
                return (id, info, Some(node_status(c)));
            }
            let Ok(mut client) = c.channels.member_client(&info) else {
                return (id, info, None);
            };
            let mut req = tonic::Request::new(StatusRequest {
                cluster_id: c.cluster_id(),
            });
            req.set_timeout(Duration::from_secs(1));
            let status = match client.status(req).await {
                Ok(r) => serde_json::from_slice(&r.into_inner().json).ok(),
                Err(_) => None,
            };
            (id, info, status)
        };
        asks.push(fut);
    }
    let answers = futures_util::future::join_all(asks).await;
    let max_log = answers
        .iter()
        .filter_map(|(_, _, s)| s.as_ref()?.get("last_log_index")?.as_u64())
        .max()
        .unwrap_or(0);
    let nodes: Vec<_> = answers
        .into_iter()
        .map(|(id, info, s)| {
            let get = |k: &str| {
                s.as_ref()
                    .and_then(|s| s.get(k))
                    .cloned()
                    .unwrap_or(serde_json::Value::Null)
            };
            let applied = get("applied_index").as_u64();
            let mut role_name = get("role").as_str().unwrap_or("unknown").to_owned();
            if !voters.contains(&id) && role_name == "follower" {
                role_name = "learner".into();
            }
            serde_json::json!({
                "id": id,
                "address": info.http,
                "grpc": info.grpc,
                "spki": info.spki,
                "next_spki": info.next_spki,
                "role": role_name,
                "term": get("term"),
                "last_log_index": get("last_log_index"),
                "applied_index": get("applied_index"),
                "lag": applied.map(|a| max_log.saturating_sub(a)),
                "last_contact_ms": get("last_contact_ms"),
                "sealed": get("sealed"),
                "reachable": s.is_some(),
            })
        })
        .collect();
    serde_json::json!({
        "cluster_id": c.cluster_id(),
        "leader": m.current_leader,
        "nodes": nodes,
    })
}

impl Cluster {
    /// Runs an admin op here if leader, else forwards it to the leader.
    pub async fn admin(&self, op: AdminOp) -> Result<Vec<u8>, String> {
        for _ in 0..40 {
            if self.is_leader() {
                return self.run_admin(op.clone()).await;
            }
            if let Some((_, leader)) = self.leader() {
                let mut client = self.channels.member_client(&leader)?;
                let mut req = tonic::Request::new(AdminRequest {
                    cluster_id: self.cluster_id(),
                    op: encode(&op),
                });
                req.set_timeout(Duration::from_secs(30));
                match client.admin(req).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        if r.not_leader.is_empty() {
                            return if r.error.is_empty() {
                                Ok(r.result)
                            } else {
                                Err(r.error)
                            };
                        }
                    }
                    Err(s) => tracing::debug!("admin forward failed: {}", s.message()),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err("no leader is reachable".into())
    }

    /// On the leader: performs an admin op.
    pub(super) async fn run_admin(&self, op: AdminOp) -> Result<Vec<u8>, String> {
        if !self.is_leader() {
            return Err("not-leader".into());
        }
        match op {
            AdminOp::StageNodeCertificate { node_id, cert } => self
                .stage_node_certificate(node_id, cert)
                .await
                .map(|()| Vec::new()),
            AdminOp::AdoptNodeCertificate { node_id, spki } => self
                .adopt_node_certificate(node_id, spki)
                .await
                .map(|()| Vec::new()),
            AdminOp::Remove { node_id } => {
                let m = self.metrics();
                let info = m
                    .membership_config
                    .membership()
                    .get_node(&node_id)
                    .cloned()
                    .ok_or_else(|| format!("node {node_id} is not a member"))?;
                // A tombstoned leader is refused by its followers: one of them takes over and
                // removes it; this one would only wait for a change that cannot commit.
                if node_id == self.node_id {
                    return Err("not-leader: the leader itself is being removed".into());
                }
                // The tombstone comes first, so a member never leaves without one.
                if info.spki.is_empty() || !self.state.is_tombstoned(&info.spki) {
                    return Err(format!(
                        "node {node_id} is not tombstoned yet: remove it with /v1/cluster/remove"
                    ));
                }
                let voters: BTreeSet<NodeId> =
                    m.membership_config.membership().voter_ids().collect();
                if voters.contains(&node_id) {
                    if voters.len() == 1 {
                        return Err("cannot remove the last voter".into());
                    }
                    self.change_membership_when_free(ChangeMembers::RemoveVoters([node_id].into()))
                        .await?;
                }
                let still_there = self
                    .metrics()
                    .membership_config
                    .membership()
                    .get_node(&node_id)
                    .is_some();
                if still_there {
                    self.change_membership_when_free(ChangeMembers::RemoveNodes([node_id].into()))
                        .await?;
                }
                self.channels.forget(&info.grpc);
                Ok(encode(&info.spki))
            }
        }
    }
}
