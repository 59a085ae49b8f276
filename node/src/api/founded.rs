//! `GET /v1/cluster/founded`: which cluster this node belongs to, asked by a node about to
//! found a new one.
//!
//! A founding node (`cluster.bootstrap`) with an empty data dir first asks the peers listed in
//! its `cluster.join` (`server/founding.rs`). A node whose data dir was wiped, or a second node
//! configured to bootstrap by mistake, would otherwise found a second cluster beside the one its
//! peers already form, with its own keys: clients sent to it would see none of theirs.

use super::error::json;
use super::{ApiError, Req};
use crate::server::Node;
use axum::body::Body;
use axum::http::Response;
use std::sync::Arc;

/// The SPKI of the caller when it presented a certificate of the cluster's node CA; refuses
/// anyone else. Only a node (never a client identity) joins, or asks before founding.
pub(super) fn node_certificate_caller(
    node: &Node,
    req: &Req,
    what: &str,
) -> Result<String, ApiError> {
    let tls = node
        .cluster
        .tls
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("this node has no cluster.tls"))?;
    // The caller is the first certificate of the chain, the one whose key signed the handshake.
    let spki = req
        .chain
        .first()
        .and_then(|leaf| crate::tls::identity_of_certificate(leaf.as_ref()));
    match spki.filter(|_| tls.is_node_certificate(&req.chain)) {
        Some(spki) => Ok(spki.to_string()),
        None => {
            tracing::warn!(
                "refused {what}: the client certificate is not a node certificate (caller {})",
                req.identity
                    .as_ref()
                    .map(|i| i.to_string())
                    .unwrap_or_default()
            );
            Err(ApiError::forbidden())
        }
    }
}

/// `{"in_cluster": bool, "cluster_id": "..."}`. The id is empty while a joining node has not
/// learnt it yet; `in_cluster` is what a founding node acts on.
pub(super) async fn founded(node: Arc<Node>, req: Req) -> Result<Response<Body>, ApiError> {
    node_certificate_caller(&node, &req, "a founding check")?;
    let c = &node.cluster;
    Ok(json(&serde_json::json!({
        "in_cluster": c.in_a_cluster(),
        "cluster_id": c.cluster_id(),
    })))
}
