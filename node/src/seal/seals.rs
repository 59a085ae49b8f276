//! The configured seals of a node, and the wrapped copies of the cluster key in the state.
//!
//! Usually a node has one seal. Two are listed only while migrating (say from `file` to
//! `pkcs11`): the node unseals with the first one that can unwrap a copy, and `seal add`
//! wraps the cluster key under the other.

use super::{ClusterKey, ProviderError, RootKeyProvider};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One copy of the cluster key, wrapped by one seal's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedCopy {
    /// The seal that made it ([`RootKeyProvider::id`]).
    pub seal_id: String,
    /// The wrapped cluster key.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// What every wrap of the cluster key is bound to: the purpose and the cluster id, so a copy
/// cannot be moved to another cluster.
pub fn wrap_aad(cluster_id: &str) -> Vec<u8> {
    let mut aad = b"kes-cluster cluster key v1\0".to_vec();
    aad.extend_from_slice(cluster_id.as_bytes());
    aad
}

/// Why no seal could unseal the node: each seal's answer.
#[derive(Debug, Clone)]
pub struct UnsealFailure(pub Vec<(String, ProviderError)>);

impl UnsealFailure {
    /// Whether any seal rejected our credentials (such failures are never retried
    /// automatically: real HSMs lock the token).
    pub fn is_auth(&self) -> bool {
        self.0
            .iter()
            .any(|(_, e)| matches!(e, ProviderError::Auth(_)))
    }

    /// Whether every failure was a refusal (wrong key, key gone, access revoked).
    pub fn all_refused(&self) -> bool {
        !self.0.is_empty()
            && self
                .0
                .iter()
                .all(|(_, e)| matches!(e, ProviderError::Refused(_)))
    }
}

impl std::fmt::Display for UnsealFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no configured seal has a copy of the cluster key; run `kes-cluster seal add` on a node that has both seals");
        }
        let parts: Vec<String> = self.0.iter().map(|(id, e)| format!("{id}: {e}")).collect();
        f.write_str(&parts.join("; "))
    }
}

/// A node's seals, in the order it tries them.
#[derive(Debug, Clone)]
pub struct Seals {
    providers: Vec<Arc<dyn RootKeyProvider>>,
}

impl Seals {
    /// The seals of this node.
    pub fn new(providers: Vec<Arc<dyn RootKeyProvider>>) -> Self {
        Seals { providers }
    }

    /// The ids of the configured seals.
    pub fn ids(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.id()).collect()
    }

    /// The provider with this id.
    pub fn get(&self, seal_id: &str) -> Option<&Arc<dyn RootKeyProvider>> {
        self.providers.iter().find(|p| p.id() == seal_id)
    }

    /// Wraps the cluster key under every configured seal (at bootstrap, restore and rekey).
    pub async fn wrap_all(
        &self,
        ck: &ClusterKey,
        cluster_id: &str,
    ) -> Result<Vec<WrappedCopy>, (String, ProviderError)> {
        let mut out = Vec::new();
        for p in &self.providers {
            out.push(
                wrap_with(p.as_ref(), ck, cluster_id)
                    .await
                    .map_err(|e| (p.id(), e))?,
            );
        }
        Ok(out)
    }

    /// Unseals with the first seal that can unwrap its copy; returns the key and that seal.
    pub async fn unseal(
        &self,
        copies: &[WrappedCopy],
        cluster_id: &str,
    ) -> Result<(ClusterKey, String), UnsealFailure> {
        let aad = wrap_aad(cluster_id);
        let mut failures = Vec::new();
        for p in &self.providers {
            let id = p.id();
            let Some(copy) = copies.iter().find(|c| c.seal_id == id) else {
                continue;
            };
            match p.unwrap(&copy.bytes, &aad).await {
                Ok(k) => return Ok((ClusterKey::from_bytes(k), id)),
                Err(e) => failures.push((id, e)),
            }
        }
        Err(UnsealFailure(failures))
    }
}

/// Wraps `ck` with one provider.
pub async fn wrap_with(
    p: &dyn RootKeyProvider,
    ck: &ClusterKey,
    cluster_id: &str,
) -> Result<WrappedCopy, ProviderError> {
    let bytes = p.wrap(ck.bytes(), &wrap_aad(cluster_id)).await?;
    Ok(WrappedCopy {
        seal_id: p.id(),
        bytes,
    })
}
