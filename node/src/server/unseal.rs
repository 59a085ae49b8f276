//! Keeping a node unsealed: unseal as soon as the cluster key is in the state, re-check with
//! the seal, and seal again when the seal refuses or stays unreachable too long.

use super::Node;
use crate::cluster::system_command;
use crate::seal::{ProviderError, Seals};
use crate::state::Op;
use std::sync::Arc;
use std::time::Duration;

/// Records what a re-check found in `unreachable_since` and in the seal metrics, which alerts
/// watch (`deploy/prometheus/alerts.yml`): whether the provider is unreachable, and how much of
/// the offline grace is left.
fn report_reachability(
    node: &Node,
    checked: &Result<(), ProviderError>,
    unreachable_since: &mut Option<std::time::Instant>,
    offline_grace: Duration,
) {
    let unreachable = matches!(checked, Err(ProviderError::Unreachable(_)));
    if unreachable {
        unreachable_since.get_or_insert_with(std::time::Instant::now);
    } else {
        *unreachable_since = None;
    }
    let used = unreachable_since.map_or(Duration::ZERO, |since| since.elapsed());
    node.metrics
        .seal_unreachable
        .set(f64::from(u8::from(unreachable)));
    node.metrics
        .seal_grace_remaining
        .set(offline_grace.saturating_sub(used).as_secs_f64());
}

/// Unseals as soon as the cluster key is in the state (at once on a restart; after the first
/// replication on a joiner), then re-checks with the seal every `recheck`:
/// - a refusal (key deleted or disabled, access revoked) seals the node and drops every
///   unsealed key from memory;
/// - an unreachable provider is tolerated for `offline_grace`, then the node seals;
/// - an authentication failure (wrong PIN, bad credentials) is never retried automatically,
///   because real HSMs lock the token: the node stays sealed and says why.
///
/// A new set of wrapped copies (restore, rekey, seal add) makes it unseal again.
pub(super) async fn keep_unsealed(
    node: Arc<Node>,
    admin: String,
    recheck: Duration,
    offline_grace: Duration,
) {
    let mut backoff = Duration::from_secs(2);
    // What the node unsealed with: the copies (current and, during a rekey, previous) and the seal.
    type Copies = (
        Vec<crate::seal::WrappedCopy>,
        Option<crate::state::PreviousKey>,
    );
    let mut unsealed_with: Option<(Copies, String)> = None;
    let mut last_check = std::time::Instant::now();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let Some(meta) = node.state.cluster_meta().ok().flatten() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        node.cluster.set_cluster_id(&meta.cluster_id);
        if meta.admin != admin {
            let why = format!(
                "this node's admin identity differs from the cluster's ({}); configure the cluster's admin",
                meta.admin
            );
            tracing::error!("{why}");
            seal_now(&node, why);
            tokio::time::sleep(Duration::from_secs(30)).await;
            continue;
        }
        let copies: Copies = (meta.wrapped.clone(), meta.previous.clone());
        let current = unsealed_with.as_ref().is_some_and(|(w, _)| *w == copies);
        if !node.seal.is_sealed() && current {
            if last_check.elapsed() >= recheck {
                last_check = std::time::Instant::now();
                let (_, seal_id) = unsealed_with.clone().unwrap_or_default();
                let checked = recheck_seal(&node, &meta, &seal_id).await;
                report_reachability(&node, &checked, &mut unreachable_since, offline_grace);
                match checked {
                    Ok(()) => {}
                    Err(ProviderError::Unreachable(e)) => {
                        let since = unreachable_since.unwrap_or_else(std::time::Instant::now);
                        if since.elapsed() >= offline_grace {
                            seal_now(
                                &node,
                                format!(
                                    "seal {seal_id} unreachable for longer than seal.offline_grace: {e}"
                                ),
                            );
                            unsealed_with = None;
                        } else {
                            tracing::warn!(
                                "seal {seal_id} unreachable ({e}); still serving for {}s of seal.offline_grace",
                                (offline_grace - since.elapsed()).as_secs()
                            );
                        }
                    }
                    Err(e) => {
                        seal_now(&node, format!("seal {seal_id} refused at re-check: {e}"));
                        unsealed_with = None;
                        if matches!(e, ProviderError::Auth(_)) {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200).min(recheck)).await;
            continue;
        }
        crate::test_hooks::slow_unseal().await;
        match unseal_meta(&node.cluster.seals, &meta).await {
            Ok((keys, seal_id)) => {
                // Policies, identities and enclaves must be what the cluster wrote: a record
                // altered on disk would grant or revoke access behind everyone's back.
                if let Err(why) = crate::seal::verify_all(&keys, &node.state) {
                    seal_now(&node, why);
                    tracing::error!("refusing to serve from this data dir; it stays sealed");
                    return;
                }
                node.cache.clear();
                node.seal.unseal(keys, copies.clone());
                tracing::info!("node unsealed with seal {seal_id}");
                unsealed_with = Some((copies, seal_id.clone()));
                last_check = std::time::Instant::now();
                report_reachability(&node, &Ok(()), &mut unreachable_since, offline_grace);
                backoff = Duration::from_secs(2);
                record_seal_use(node.clone(), admin.clone(), seal_id);
            }
            Err(failure) => {
                seal_now(&node, format!("cannot unseal: {failure}"));
                if failure.is_auth() {
                    tracing::error!(
                        "not retrying automatically: authentication failures lock HSM tokens. Fix the credentials and restart the node"
                    );
                    return;
                }
                tracing::error!(
                    "node stays sealed: {failure}; next attempt in {}s",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Unwraps the current cluster key, and during a rekey also the previous one.
pub(crate) async fn unseal_meta(
    seals: &Seals,
    meta: &crate::state::ClusterMeta,
) -> Result<(crate::seal::Unsealed, String), crate::seal::UnsealFailure> {
    let (ck, seal_id) = seals.unseal(&meta.wrapped, &meta.cluster_id).await?;
    let mut keys = ck.derive(meta.storage_version);
    if let Some(prev) = &meta.previous {
        let (old, _) = seals.unseal(&prev.wrapped, &meta.cluster_id).await?;
        keys = keys.with_previous(old.derive(prev.storage_version));
    }
    Ok((keys, seal_id))
}

fn seal_now(node: &Node, why: String) {
    if !node.seal.is_sealed() || node.seal.reason() != why {
        tracing::error!("sealed: {why}");
    }
    node.seal.seal(why);
    node.cache.clear();
}

async fn recheck_seal(
    node: &Node,
    meta: &crate::state::ClusterMeta,
    seal_id: &str,
) -> Result<(), ProviderError> {
    let provider =
        node.cluster.seals.get(seal_id).ok_or_else(|| {
            ProviderError::Config(format!("seal {seal_id} is no longer configured"))
        })?;
    let copy = meta
        .wrapped
        .iter()
        .find(|c| c.seal_id == seal_id)
        .ok_or_else(|| {
            ProviderError::Refused(format!("the copy for seal {seal_id} was removed"))
        })?;
    provider
        .unwrap(&copy.bytes, &crate::seal::wrap_aad(&meta.cluster_id))
        .await
        .map(|_| ())
}

/// Records in the state which seal this node unsealed with, once a leader can take it (for
/// `seal status`, and so `seal remove` refuses to remove a seal a member relies on).
fn record_seal_use(node: Arc<Node>, admin: String, seal_id: String) {
    tokio::spawn(async move {
        let known = node
            .state
            .seal_uses()
            .unwrap_or_default()
            .into_iter()
            .any(|(n, s)| n == node.cluster.node_id && s == seal_id);
        if known {
            return;
        }
        for _ in 0..60 {
            if node.cluster.leader().is_some() {
                let op = Op::SealUse {
                    node_id: node.cluster.node_id,
                    seal_id: seal_id.clone(),
                };
                if node
                    .cluster
                    .write(system_command(&admin, "/v1/cluster/seal/use", op))
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// On the leader: keeps the signed membership in the state equal to the real one, so peers can
/// check every caller against a membership only an unsealed node could have written.
pub(super) async fn sign_membership(node: Arc<Node>, admin: String) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = &node.cluster;
        if !c.is_leader() {
            continue;
        }
        // Sign only with the keys of the cluster's current copies. Right after a rekey began,
        // this node may still hold the old key, and a record under it would undo the rekey's
        // re-signing; right after a restore it may hold the key from before, under the same
        // version, and a record signed with that fails every node's check at unseal.
        let Some(meta) = node.state.cluster_meta().ok().flatten() else {
            continue;
        };
        let Some(keys) = node.seal.keys_from(&meta.wrapped, &meta.previous) else {
            continue;
        };
        let mut record = c.membership_record();
        if record.nodes.is_empty() {
            continue;
        }
        let current = node.state.signed_membership().ok().flatten();
        if current.as_ref().is_some_and(|s| {
            s.nodes == record.nodes
                && s.next == record.next
                && s.sig.version == keys.storage_version
        }) {
            continue;
        }
        record.sig = crate::seal::sign(&keys, "meta", crate::state::META_MEMBERSHIP, &record);
        let op = Op::SignMembership {
            record: crate::state::encode_record(&record),
        };
        // Refused if a restore replaces the cluster key before it is applied.
        let mut cmd = system_command(&admin, "/v1/cluster/membership", op);
        cmd.restores_seen = Some(meta.restores);
        if let Err(e) = c.write(cmd).await {
            tracing::warn!("could not sign the membership: {e}");
        }
    }
}
