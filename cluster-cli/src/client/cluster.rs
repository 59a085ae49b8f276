//! The cluster administration routes under `/v1/cluster/`: status, join,
//! remove, snapshot and restore. Only kes-cluster nodes serve them; an
//! upstream KES server answers 404.
//!
//! Membership changes and snapshots can take much longer than a key
//! operation (a joiner first catches up as a learner), so callers should give
//! these calls a client with [`MEMBERSHIP_TIMEOUT`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};

use super::{Client, Response};
use crate::error::{Error, Result};

/// A time limit that fits joins, removals, snapshots and restores.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// `GET /v1/cluster/status`: the cluster as the answering node sees it.
///
/// Decoding is lenient (missing fields take defaults, unknown ones are kept
/// in `other`), so newer servers still decode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// The cluster id, fixed at bootstrap.
    pub cluster_id: String,
    /// The leader's node id; `None` while the cluster has no leader.
    pub leader: Option<u64>,
    /// Every member (voters and learners).
    pub nodes: Vec<ClusterNode>,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One member in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterNode {
    /// Node id: stable, chosen at the node's first start.
    pub id: u64,
    /// KES API address, `https://host:port`.
    pub address: String,
    /// Inter-node gRPC address, `host:port`.
    pub grpc: String,
    /// `leader`, `follower`, `learner`, `candidate` or `unknown`.
    pub role: String,
    /// Raft term the node is in.
    pub term: Option<u64>,
    /// Index of the node's last log entry.
    pub last_log_index: Option<u64>,
    /// Index of the last entry the node applied.
    pub applied_index: Option<u64>,
    /// Entries the node is behind the leader.
    pub lag: Option<u64>,
    /// Milliseconds since the answering node last heard from this one.
    pub last_contact_ms: Option<u64>,
    /// Whether the answering node can reach this one.
    pub reachable: bool,
    /// Fields this client does not know.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for ClusterNode {
    fn default() -> Self {
        ClusterNode {
            id: 0,
            address: String::new(),
            grpc: String::new(),
            role: String::new(),
            term: None,
            last_log_index: None,
            applied_index: None,
            lag: None,
            last_contact_ms: None,
            // A server that does not say is taken to reach its members.
            reachable: true,
            other: BTreeMap::new(),
        }
    }
}

impl ClusterStatus {
    /// The leader's entry, when there is a leader and it is listed.
    pub fn leader_node(&self) -> Option<&ClusterNode> {
        let leader = self.leader?;
        self.nodes.iter().find(|n| n.id == leader)
    }
}

/// `POST /v1/cluster/join`: who the joined node is now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinAnswer {
    /// The joined node's id.
    pub node_id: u64,
    /// The cluster it joined.
    pub cluster_id: String,
}

impl Client {
    /// `GET /v1/cluster/status`.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        self.cluster_status_response().await?.json()
    }

    /// `GET /v1/cluster/status`, undecoded, for callers that show the
    /// server's own JSON. Non-2xx answers are errors.
    pub async fn cluster_status_response(&self) -> Result<Response> {
        self.call(Method::GET, "/v1/cluster/status", None).await
    }

    /// `POST /v1/cluster/join {"member": member}`, sent to the node that is to
    /// join: it asks `member` (any node of the cluster, `https://host:port`)
    /// for admission and answers once it is a voter.
    pub async fn cluster_join(&self, member: &str) -> Result<JoinAnswer> {
        let body = serde_json::json!({ "member": member });
        self.call(Method::POST, "/v1/cluster/join", Some(body))
            .await?
            .json()
    }

    /// `DELETE /v1/cluster/remove/<id>`: takes the node out of the membership.
    /// Returns the server's answer body (it may be empty).
    pub async fn cluster_remove(&self, node_id: u64) -> Result<Bytes> {
        let path = format!("/v1/cluster/remove/{node_id}");
        Ok(self.call(Method::DELETE, &path, None).await?.body)
    }

    /// `GET /v1/cluster/snapshot`: a consistent, sealed snapshot of the state.
    pub async fn cluster_snapshot(&self) -> Result<Bytes> {
        Ok(self
            .call(Method::GET, "/v1/cluster/snapshot", None)
            .await?
            .body)
    }

    /// `POST /v1/cluster/restore` with a snapshot from
    /// [`Client::cluster_snapshot`]. Returns the server's answer body.
    pub async fn cluster_restore(&self, snapshot: impl Into<Bytes>) -> Result<Bytes> {
        let response = self
            .request(
                Method::POST,
                "/v1/cluster/restore",
                &[(CONTENT_TYPE.as_str(), "application/octet-stream")],
                snapshot,
            )
            .await?;
        Ok(response.error_for_status()?.body)
    }
}

/// Explains a 404 from a `/v1/cluster/` route: the server is no kes-cluster
/// node (or an older one). Other errors pass through.
pub fn explain_not_a_cluster(err: Error) -> Error {
    match err {
        Error::Api {
            status: 404,
            message,
        } if message.contains("page not found") => Error::Api {
            status: 404,
            message: format!(
                "{message}: the server does not serve the /v1/cluster/ API; is it a kes-cluster node?"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_in_every_shape() {
        let s: ClusterStatus = serde_json::from_str(
            r#"{"cluster_id":"c1","leader":18446744073709551615,"nodes":[
                {"id":18446744073709551615,"address":"https://127.0.0.1:7373","grpc":"127.0.0.1:7473",
                 "role":"leader","term":3,"last_log_index":10,"applied_index":10,"lag":0,
                 "last_contact_ms":null,"reachable":true,"zone":"a"},
                {"id":2,"role":"follower","reachable":false}]}"#,
        )
        .unwrap();
        assert_eq!(s.leader, Some(u64::MAX));
        assert_eq!(s.leader_node().map(|n| n.role.as_str()), Some("leader"));
        assert_eq!(s.nodes[0].other["zone"], "a");
        assert_eq!(s.nodes[1].term, None);
        assert!(!s.nodes[1].reachable);

        let s: ClusterStatus = serde_json::from_str(r#"{"nodes":[{"id":1}]}"#).unwrap();
        assert_eq!(s.leader, None);
        assert!(s.leader_node().is_none());
        assert!(s.nodes[0].reachable);
        let s: ClusterStatus = serde_json::from_str(r#"{"leader":7,"nodes":[{"id":1}]}"#).unwrap();
        assert!(s.leader_node().is_none(), "an unlisted leader has no entry");
    }

    #[test]
    fn not_found_is_explained() {
        let e = explain_not_a_cluster(Error::Api {
            status: 404,
            message: "404 page not found".into(),
        });
        assert!(e.to_string().contains("is it a kes-cluster node?"), "{e}");
        let e = explain_not_a_cluster(Error::Api {
            status: 404,
            message: "node 7 is not a member".into(),
        });
        assert_eq!(e.to_string(), "node 7 is not a member");
    }
}
