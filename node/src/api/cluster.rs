//! `/v1/cluster/*`: status, join, remove, snapshot, restore. Policy-checked like every other
//! route; remove is admin-only, checked in its handler before anything happens. The
//! node-to-node join request is made by a joining node with its node certificate, and gives a
//! requester nothing it could use unless it holds the root key.

use super::commit::commit_op;
use super::error::json;
use super::{ApiError, Req};
use crate::cluster::{Cluster, cluster_status, join_through};
use crate::raft::NodeInfo;
use crate::server::Node;
use crate::state::Op;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use kes_cluster_proto::JoinRequest;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Answer = Result<Response<Body>, ApiError>;

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
}

/// `GET /v1/cluster/status`: every member, as this node can see them.
pub(super) async fn status(node: Arc<Node>, _: Req) -> Answer {
    Ok(json(&cluster_status(&node.cluster).await))
}

#[derive(Deserialize)]
pub(super) struct JoinBody {
    pub(super) member: String,
}

/// `POST /v1/cluster/join` on the NEW node: join the cluster of `member`. Answers once this
/// node is a voter.
pub(super) async fn join(node: Arc<Node>, req: Req) -> Answer {
    let body: JoinBody =
        req.json("invalid join request body: send {\"member\": \"https://host:port\"}")?;
    let c = &node.cluster;
    if is_voter(c) && c.metrics().membership_config.membership().nodes().count() > 1 {
        return Err(ApiError::bad_request(
            "this node is already a member of a cluster",
        ));
    }
    let tls = c.tls.as_ref().ok_or_else(|| {
        ApiError::bad_request("this node has no cluster.tls, so it cannot join a cluster")
    })?;
    let _ = tls;
    let paths = node.node_cert_paths.clone().ok_or_else(|| {
        ApiError::bad_request("this node has no cluster.tls, so it cannot join a cluster")
    })?;
    join_through(c, &body.member, &paths.0, &paths.1, &paths.2)
        .await
        .map_err(|e| ApiError::bad_request(format!("join through {} failed: {e}", body.member)))?;
    let t0 = Instant::now();
    while !is_voter(c) {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(unavailable(
                "admitted, but this node has not seen itself become a voter yet",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(json(&serde_json::json!({
        "node_id": c.node_id,
        "cluster_id": c.cluster_id(),
    })))
}

fn is_voter(c: &Cluster) -> bool {
    c.metrics()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == c.node_id)
}

#[derive(Deserialize)]
pub(super) struct JoinRequestBody {
    pub(super) node_id: u64,
    pub(super) http: String,
    pub(super) grpc: String,
    /// The joiner's nonce, hex: the leader's challenge must carry it back.
    #[serde(default)]
    pub(super) nonce: String,
}

/// `POST /v1/cluster/join-request` on a MEMBER, from a joining node presenting its node
/// certificate: the member hands the request to the leader, which challenges the joiner. The
/// challenge goes only to the certificate that made the request, carries only a one-time key
/// (never the cluster key's copies), and only a holder of the root key can answer it.
pub(super) async fn join_request(node: Arc<Node>, req: Req) -> Answer {
    let c = &node.cluster;
    let spki = super::founded::node_certificate_caller(&node, &req, "a join request")?;
    let body: JoinRequestBody = req.json("invalid join request body")?;
    let join_nonce = hex::decode(&body.nonce)
        .ok()
        .filter(|n| n.len() == 32)
        .ok_or_else(|| {
            ApiError::bad_request("the join request carries no nonce: upgrade the joining node")
        })?;
    let jr = JoinRequest {
        cluster_id: c.cluster_id(),
        node_id: body.node_id,
        http_addr: body.http,
        grpc_addr: body.grpc,
        spki,
        join_nonce,
    };
    let t0 = Instant::now();
    loop {
        let result = if c.is_leader() {
            c.admit(&jr).await
        } else if let Some((_, leader)) = c.leader() {
            forward_join(c, &leader, &jr).await
        } else {
            Err("no leader is known".to_owned())
        };
        match result {
            Ok(()) => return Ok(json(&serde_json::json!({ "cluster_id": c.cluster_id() }))),
            Err(e)
                if (e.contains("not the leader") || e.contains("no leader"))
                    && t0.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                tracing::warn!(
                    "join of node {} (SPKI {}) refused: {e}",
                    jr.node_id,
                    jr.spki
                );
                return Err(ApiError::bad_request(e));
            }
        }
    }
}

async fn forward_join(c: &Cluster, leader: &NodeInfo, jr: &JoinRequest) -> Result<(), String> {
    let mut client = c.channels.member_client(leader)?;
    let mut req = tonic::Request::new(jr.clone());
    req.set_timeout(Duration::from_secs(150));
    let r = client
        .join(req)
        .await
        .map_err(|s| format!("leader unreachable: {}", s.message()))?
        .into_inner();
    if r.error.is_empty() {
        Ok(())
    } else {
        Err(r.error)
    }
}

/// How long remove waits for the membership change to land before it answers.
const REMOVE_WAIT: Duration = Duration::from_secs(60);

/// `DELETE /v1/cluster/remove/<node id>`: removes the node for good. Authorised first; then
/// the node's certificate is tombstoned through the log, so every member refuses it from then
/// on; then the membership change, retried until it lands (the leader also retries it on its
/// own for every tombstoned member, so a removed member never stays in the membership, and no
/// member ever leaves it without a tombstone). A refused remove changes nothing.
pub(super) async fn remove(node: Arc<Node>, req: Req) -> Answer {
    super::dispatch::require_admin(&node, &req)?;
    let node_id: u64 = req
        .resource
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{}' is not a node id", req.resource)))?;
    let c = &node.cluster;
    let m = c.metrics();
    let membership = m.membership_config.membership();
    let info = membership
        .get_node(&node_id)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(format!("node {node_id} is not a member")))?;
    if membership.voter_ids().all(|v| v == node_id) {
        return Err(ApiError::bad_request("cannot remove the last voter"));
    }
    if info.spki.is_empty() {
        return Err(ApiError::bad_request(format!(
            "node {node_id} has no node certificate to tombstone"
        )));
    }
    if !node.state.is_tombstoned(&info.spki) {
        let op = Op::Tombstone {
            node_id,
            spki: info.spki.clone(),
        };
        commit_op(&node, &req, op).await?;
    }
    let t0 = Instant::now();
    loop {
        let gone = c
            .metrics()
            .membership_config
            .membership()
            .get_node(&node_id)
            .is_none();
        // A tombstoned node is refused by every member, so when it is the one asked, only the
        // leader's own retries can take it out; its tombstone already shuts it out.
        if gone || node_id == c.node_id {
            return Ok(json(&serde_json::json!({ "removed": node_id })));
        }
        match c.admin(crate::cluster::AdminOp::Remove { node_id }).await {
            Ok(_) => {
                tracing::info!("removed node {node_id} from the membership");
                return Ok(json(&serde_json::json!({ "removed": node_id })));
            }
            Err(e) if e.contains("is not a member") => {
                return Ok(json(&serde_json::json!({ "removed": node_id })));
            }
            Err(e) if t0.elapsed() >= REMOVE_WAIT => {
                return Err(unavailable(format!(
                    "node {node_id} is tombstoned and refused by every member, but the membership change has not landed yet ({e}); the leader keeps retrying it"
                )));
            }
            Err(e) => {
                tracing::info!("removing node {node_id}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// `GET /v1/cluster/snapshot`: a consistent snapshot file, still sealed.
pub(super) async fn snapshot(node: Arc<Node>, _: Req) -> Answer {
    let file = node.cluster.save_snapshot().await.map_err(unavailable)?;
    let length = file.head.len() as u64 + file.dump_len;
    let mut resp = Response::new(Body::from_stream(backup_chunks(file)));
    let headers = resp.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        axum::http::header::CONTENT_LENGTH,
        axum::http::HeaderValue::from(length),
    );
    Ok(resp)
}

/// A snapshot file as a stream of chunks: its head, then the dump read from the Raft snapshot
/// file a chunk at a time. A read that fails ends the body early, which the client sees (the
/// answer carries its length).
fn backup_chunks(
    file: crate::cluster::BackupStream,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    use futures_util::StreamExt;
    const CHUNK: u64 = 1 << 20;
    let head = futures_util::stream::once(async move { Ok(bytes::Bytes::from(file.head)) });
    let dump = tokio::fs::File::from_std(file.dump);
    let rest = futures_util::stream::unfold((dump, file.dump_len), |(mut dump, left)| async move {
        if left == 0 {
            return None;
        }
        let mut chunk = vec![0; left.min(CHUNK) as usize];
        match tokio::io::AsyncReadExt::read_exact(&mut dump, &mut chunk).await {
            Ok(_) => Some((
                Ok(bytes::Bytes::from(chunk)),
                (dump, left - CHUNK.min(left)),
            )),
            Err(e) => Some((Err(e), (dump, 0))),
        }
    });
    head.chain(rest)
}

/// Restore chunks stay well below the replicated entry limit.
const RESTORE_CHUNK_BYTES: usize = 32 * 1024;

/// How many times a restore re-signs this cluster's own records and tries to finish, when a
/// record was written between the two.
const RESTORE_FINISH_ROUNDS: usize = 5;

/// `POST /v1/cluster/restore`: replays a snapshot file into this new, empty cluster through
/// the log. Checks the file's cluster id and that this cluster's root key opens the snapshot's
/// cluster key before it applies anything.
pub(super) async fn restore(node: Arc<Node>, req: Req) -> Answer {
    if req.body_too_large {
        return Err(ApiError::bad_request(
            "the snapshot file is larger than the restore limit",
        ));
    }
    let backup = crate::cluster::Backup::parse(&req.body).map_err(ApiError::bad_request)?;
    let trees = crate::state::State::parse_dump(&backup.dump)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let meta = trees
        .iter()
        .find(|(t, _)| t == "meta")
        .and_then(|(_, items)| items.iter().find(|(k, _)| k.as_slice() == b"cluster"))
        .and_then(|(_, v)| crate::msgpack::from_slice::<crate::state::ClusterMeta>(v).ok())
        .ok_or_else(|| ApiError::bad_request("damaged snapshot: it has no cluster record"))?;
    if meta.cluster_id != backup.cluster_id {
        return Err(ApiError::bad_request(
            "damaged snapshot: its header and its state name different clusters",
        ));
    }
    if node.state.holds_keys() {
        return Err(ApiError::bad_request(
            "restore only into a new, empty cluster: this cluster already holds keys",
        ));
    }
    // This cluster's own records are re-signed with the adopted key below: they must be
    // intact now, or the restore would launder them too.
    let own = node.seal.keys().ok_or_else(ApiError::sealed)?;
    crate::seal::verify_all(&own, &node.state).map_err(unavailable)?;
    let this_cluster = node.cluster.cluster_id();
    let seals = &node.cluster.seals;
    let (ck, _) = seals.unseal(&meta.wrapped, &meta.cluster_id).await.map_err(|e| {
        ApiError::bad_request(format!(
            "this cluster's root key cannot open the snapshot (it was sealed under another root key): {e}"
        ))
    })?;
    // Nothing is adopted unless every metadata record verifies under the snapshot's own keys.
    let mut snapshot_keys = ck.derive(meta.storage_version);
    if let Some(prev) = &meta.previous {
        let (old, _) = seals
            .unseal(&prev.wrapped, &meta.cluster_id)
            .await
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "this cluster's root key cannot open the snapshot's previous cluster key: {e}"
                ))
            })?;
        snapshot_keys = snapshot_keys.with_previous(old.derive(prev.storage_version));
    }
    crate::seal::verify_dump(&snapshot_keys, &trees).map_err(ApiError::bad_request)?;
    let wrapped = seals
        .wrap_all(&ck, &this_cluster)
        .await
        .map_err(|(id, e)| {
            unavailable(format!(
                "seal {id} cannot wrap the restored cluster key: {e}"
            ))
        })?;
    let mut restored_keys = 0usize;
    for (tree, items) in trees {
        if !matches!(
            tree.as_str(),
            "keys" | "policies" | "identities" | "enclaves"
        ) {
            continue;
        }
        if tree == "keys" {
            restored_keys = items.len();
        }
        let mut chunk = Vec::new();
        let mut size = 0;
        for item in items {
            size += item.0.len() + item.1.len() + 16;
            chunk.push(item);
            if size >= RESTORE_CHUNK_BYTES {
                let op = Op::RestoreChunk {
                    tree: tree.clone(),
                    items: std::mem::take(&mut chunk),
                };
                commit_op(&node, &req, op).await?;
                size = 0;
            }
        }
        if !chunk.is_empty() {
            commit_op(
                &node,
                &req,
                Op::RestoreChunk {
                    tree: tree.clone(),
                    items: chunk,
                },
            )
            .await?;
        }
    }
    // This cluster's own records (not in the snapshot) are signed with its current key: sign
    // them with the adopted one before any node unseals with it. The finish names what they
    // were then, and is refused if one was written meanwhile (signed with the key the restore
    // replaces); then they are signed again.
    let adopted = ck.derive(meta.storage_version);
    let mut rounds = 0;
    loop {
        rounds += 1;
        super::seal::resign_metadata(&node, &req, &adopted, super::seal::Resign::Unverified)
            .await?;
        // The digest of a state in which every record verifies under the adopted key: taken
        // before and after the check, and equal, so no record was written in between.
        let digest = node.state.metadata_digest()?;
        let verified = crate::seal::verify_all(&adopted, &node.state).is_ok();
        if !verified || node.state.metadata_digest()? != digest {
            if rounds < RESTORE_FINISH_ROUNDS {
                continue;
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "this cluster's policies, identities or enclaves kept changing while the restore re-signed them; write nothing while a restore runs, and run it again",
            ));
        }
        let finish = Op::RestoreFinish {
            wrapped: wrapped.clone(),
            storage_version: meta.storage_version,
            metadata: Some(digest.into()),
        };
        crate::test_hooks::restore_pause().await;
        match commit_op(&node, &req, finish).await {
            Err(e) if e.status == StatusCode::CONFLICT && rounds < RESTORE_FINISH_ROUNDS => {}
            done => {
                done?;
                break;
            }
        }
    }
    Ok(json(&serde_json::json!({
        "restored_keys": restored_keys,
        "from_cluster": backup.cluster_id,
        "index": backup.index,
    })))
}
