//! `/v1/cluster/seal/*`: which seals hold the cluster key, migrating between seals, and
//! rekeying.
//!
//! `seal add` and `seal remove` only migrate: they change which root keys can unwrap the
//! cluster key, not the cluster key itself, so a leaked seal or an old backup stays usable
//! with the old root key. `seal rekey` is what revokes them: a new cluster key, and every
//! record re-sealed under it through the log while the cluster serves.

use super::commit::commit_op;
use super::error::json;
use super::{ApiError, Req};
use crate::seal::{ClusterKey, RecordAad, open_record, seal_record, wrap_with};
use crate::server::Node;
use crate::state::Op;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use std::sync::Arc;

type Answer = Result<Response<Body>, ApiError>;

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
}

fn meta(node: &Node) -> Result<crate::state::ClusterMeta, ApiError> {
    node.state
        .cluster_meta()?
        .ok_or_else(|| unavailable("the cluster is not initialised yet"))
}

/// `GET /v1/cluster/seal/status`
pub(super) async fn status(node: Arc<Node>, _: Req) -> Answer {
    let m = meta(&node)?;
    let here = node.cluster.seals.ids();
    let uses = node.state.seal_uses()?;
    let seals: Vec<_> = m
        .wrapped
        .iter()
        .map(|c| {
            let nodes: Vec<u64> = uses
                .iter()
                .filter(|(_, s)| *s == c.seal_id)
                .map(|(n, _)| *n)
                .collect();
            serde_json::json!({
                "id": c.seal_id,
                "configured_here": here.contains(&c.seal_id),
                "unsealed_nodes": nodes,
            })
        })
        .collect();
    let missing: Vec<&String> = here
        .iter()
        .filter(|id| !m.wrapped.iter().any(|c| c.seal_id == **id))
        .collect();
    Ok(json(&serde_json::json!({
        "seals": seals,
        "configured_here_without_copy": missing,
        "nodes": uses.iter().map(|(n, s)| serde_json::json!({"node_id": n, "seal": s})).collect::<Vec<_>>(),
        "storage_version": m.storage_version,
        "rekey_in_progress": m.previous.is_some(),
        "sealed": node.seal.is_sealed(),
    })))
}

/// `POST /v1/cluster/seal/add`: wraps the cluster key under every seal configured on this
/// node that has no copy yet. Run it on a node configured with both the old and the new seal.
pub(super) async fn add(node: Arc<Node>, req: Req) -> Answer {
    let m = meta(&node)?;
    let (ck, _) = node
        .cluster
        .seals
        .unseal(&m.wrapped, &m.cluster_id)
        .await
        .map_err(|e| unavailable(format!("this node cannot unwrap the cluster key: {e}")))?;
    let mut added = Vec::new();
    for id in node.cluster.seals.ids() {
        if m.wrapped.iter().any(|c| c.seal_id == id) {
            continue;
        }
        let Some(p) = node.cluster.seals.get(&id) else {
            continue;
        };
        let copy = wrap_with(p.as_ref(), &ck, &m.cluster_id)
            .await
            .map_err(|e| unavailable(format!("seal {id} cannot wrap the cluster key: {e}")))?;
        commit_op(&node, &req, Op::SealAdd { copy }).await?;
        added.push(id);
    }
    if added.is_empty() {
        return Err(ApiError::bad_request(
            "every seal configured on this node already holds a copy; configure the new seal on this node first",
        ));
    }
    Ok(json(&serde_json::json!({ "added": added })))
}

/// `DELETE /v1/cluster/seal/remove/<seal id>`: refused for the last seal and for a seal some
/// member last unsealed with.
pub(super) async fn remove(node: Arc<Node>, req: Req) -> Answer {
    let seal_id = req.resource.clone();
    commit_op(
        &node,
        &req,
        Op::SealRemove {
            seal_id: seal_id.clone(),
        },
    )
    .await?;
    Ok(json(&serde_json::json!({ "removed": seal_id })))
}

/// Which metadata records to re-sign.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resign {
    /// Those signed with a MAC key older than this version (a rekey).
    OlderThan(u32),
    /// Those the given keys do not verify (a restore adopting another cluster key).
    Unverified,
}

/// Re-signs metadata records with `keys`, through the log (compare-and-swap, so a concurrent
/// write is never overwritten).
pub(super) async fn resign_metadata(
    node: &Node,
    req: &Req,
    keys: &crate::seal::Unsealed,
    which: Resign,
) -> Result<(), ApiError> {
    use crate::seal::{sign, verify};
    use crate::state::{EnclaveEntry, IdentityEntry, PolicyEntry, Signed, encode_record};
    fn resign<T: Signed + serde::de::DeserializeOwned>(
        keys: &crate::seal::Unsealed,
        tree: &str,
        key: &[u8],
        raw: &[u8],
        which: Resign,
    ) -> Option<Vec<u8>> {
        let mut e: T = crate::msgpack::from_slice(raw).ok()?;
        let needed = match which {
            Resign::OlderThan(target) => e.signature().version < target,
            Resign::Unverified => !verify(keys, tree, key, &e),
        };
        if !needed {
            return None;
        }
        e.set_signature(sign(keys, tree, key, &e));
        Some(encode_record(&e))
    }
    let mut by_tree: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
    for (tree, key, raw) in node.state.metadata_records()? {
        let new = match tree {
            "policies" => resign::<PolicyEntry>(keys, tree, &key, &raw, which),
            "identities" => resign::<IdentityEntry>(keys, tree, &key, &raw, which),
            _ => resign::<EnclaveEntry>(keys, tree, &key, &raw, which),
        };
        if let Some(new) = new {
            by_tree
                .entry(tree)
                .or_default()
                .push((key.into(), raw.into(), new.into()));
        }
    }
    // The membership goes through `Remac` too, not `SignMembership`: a restore signs it with
    // the adopted key before that key is this cluster's, and apply refuses a `SignMembership`
    // under a key the cluster does not hold (it guards the leader's own signing against a
    // finished rekey), while a compare-and-swap re-sign is safe under any key.
    if let Some(m) = node.state.signed_membership()? {
        let needed = match which {
            Resign::OlderThan(target) => m.sig.version < target,
            Resign::Unverified => !verify(keys, "meta", crate::state::META_MEMBERSHIP, &m),
        };
        let raw = node.state.tree("meta")?.get(crate::state::META_MEMBERSHIP);
        let raw = raw.map_err(crate::state::StateError::from)?;
        if let (true, Some(raw)) = (needed, raw) {
            let mut m = m;
            m.set_signature(sign(keys, "meta", crate::state::META_MEMBERSHIP, &m));
            by_tree.entry("meta").or_default().push((
                crate::state::META_MEMBERSHIP.to_vec().into(),
                raw.to_vec().into(),
                encode_record(&m).into(),
            ));
        }
    }
    for (tree, items) in by_tree {
        for chunk in items.chunks(RESEAL_BATCH) {
            let op = Op::Remac {
                tree: tree.to_owned(),
                items: chunk.to_vec(),
            };
            commit_op(node, req, op).await?;
        }
    }
    Ok(())
}

/// Re-sealed records per log entry, well below the entry limit.
const RESEAL_BATCH: usize = 64;

/// `POST /v1/cluster/seal/rekey`: a new cluster key, wrapped by this node's seals; every
/// record re-sealed under it; then the old key is dropped. Safe to run again if interrupted.
pub(super) async fn rekey(node: Arc<Node>, req: Req) -> Answer {
    let m = meta(&node)?;
    let seals = &node.cluster.seals;
    if m.previous.is_none() {
        let ck = ClusterKey::generate();
        let wrapped = seals
            .wrap_all(&ck, &m.cluster_id)
            .await
            .map_err(|(id, e)| {
                unavailable(format!("seal {id} cannot wrap the new cluster key: {e}"))
            })?;
        let dropped: Vec<String> = m
            .wrapped
            .iter()
            .filter(|c| !wrapped.iter().any(|w| w.seal_id == c.seal_id))
            .map(|c| c.seal_id.clone())
            .collect();
        if !dropped.is_empty() {
            tracing::warn!("rekey drops the seals this node is not configured with: {dropped:?}");
        }
        let op = Op::RekeyBegin {
            wrapped,
            storage_version: m.storage_version + 1,
        };
        commit_op(&node, &req, op).await?;
    }
    // Wait until this node holds the new key (its unseal loop picks up the new copies).
    let target = meta(&node)?.storage_version;
    let t0 = std::time::Instant::now();
    let keys = loop {
        match node.seal.keys() {
            Some(k) if k.storage_version == target => break k,
            _ if t0.elapsed() > std::time::Duration::from_secs(30) => {
                return Err(unavailable(
                    "this node did not unseal the new cluster key in time; run rekey again",
                ));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };
    let mut resealed = 0usize;
    for _round in 0..5 {
        let mut batch = Vec::new();
        for (enclave, name, entry) in node.state.all_keys()? {
            if crate::seal::record_version(&entry.sealed) == Some(target) {
                continue;
            }
            let aad = RecordAad {
                enclave: &enclave,
                name: &name,
                creation_id: entry.creation_id,
            };
            let plain = open_record(&keys, aad, &entry.sealed).map_err(|e| {
                tracing::error!("rekey: key '{name}' in enclave '{enclave}': {e}");
                ApiError::internal("failed to read key")
            })?;
            let sealed = seal_record(&keys, aad, &plain);
            batch.push((
                enclave,
                name,
                entry.creation_id,
                serde_bytes::ByteBuf::from(sealed),
            ));
            if batch.len() >= RESEAL_BATCH {
                resealed += batch.len();
                commit_op(
                    &node,
                    &req,
                    Op::Reseal {
                        items: std::mem::take(&mut batch),
                    },
                )
                .await?;
            }
        }
        if !batch.is_empty() {
            resealed += batch.len();
            commit_op(&node, &req, Op::Reseal { items: batch }).await?;
        }
        resign_metadata(&node, &req, &keys, Resign::OlderThan(target)).await?;
        // Keys created meanwhile by a node that still sealed with the old key make the
        // finish fail; then another round re-seals them.
        match commit_op(&node, &req, Op::RekeyFinish).await {
            Ok(_) => {
                return Ok(json(&serde_json::json!({
                    "storage_version": target,
                    "resealed": resealed,
                })));
            }
            Err(e) if e.status == StatusCode::FORBIDDEN => continue,
            Err(e) => return Err(e),
        }
    }
    Err(unavailable(
        "records kept appearing under the old key; run rekey again",
    ))
}
