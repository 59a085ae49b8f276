//! The shared context of a running node, handed to every request.

use super::KeyCache;
use super::key_cache::LoadedKey;
use crate::api::ApiError;
use crate::api::Route;
use crate::cluster::Cluster;
use crate::obs::{EventBus, Metrics};
use crate::seal::{SealState, Unsealed};
use crate::state::State;
use std::sync::Arc;

/// How long a read waits for the unseal loop to unwrap a cluster key a rekey just introduced.
const NEW_CLUSTER_KEY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a request needs.
#[derive(Debug)]
pub struct Node {
    /// The applied state.
    pub state: State,
    /// Sealed or unsealed, and the keys.
    pub seal: Arc<SealState>,
    /// Raft, the write path and the serving lease.
    pub cluster: Arc<Cluster>,
    /// Unsealed keys.
    pub cache: Arc<KeyCache>,
    /// When each automatically rotated key is due (`rotation_schedule.rs`).
    pub rotation_schedule: Arc<super::RotationSchedule>,
    /// Rotations and retirements through this node take the key's lock (`key_change_locks.rs`).
    pub key_changes: super::KeyChangeLocks,
    /// Metric families.
    pub metrics: Metrics,
    /// Audit and error streams.
    pub events: EventBus,
    /// The route table, after `api:` customisation.
    pub routes: Vec<Route>,
    /// Where audit events are written besides the stream (`log.audit`, `log.audit_file`).
    pub audit: crate::obs::AuditSinks,
    /// The config's policies and keys are in the replicated state; until then the node is
    /// not ready, so a client never sees a configured key missing.
    pub config_synced: std::sync::atomic::AtomicBool,
    /// The node certificate, key and node CA (for joining through a member's KES port).
    pub node_cert_paths: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// Requests per second per identity (`rate_limits:`); `None` when nothing is limited.
    pub rate_limiter: Option<super::RateLimiter>,
    /// Connection, timeout and stream bounds (`limits:`).
    pub limits: crate::config::LimitsConfig,
    /// One permit per open `/v1/log/*` stream, `limits.max_log_streams` in all.
    pub log_streams: Arc<tokio::sync::Semaphore>,
    /// The admin identity of the config (or `--root`). The cluster's own record names the
    /// admin once the node belongs to a cluster; before that, this is who may tell it to join.
    pub configured_admin: String,
}

impl Node {
    /// Whether `identity` is the system admin: the one the cluster records, or, on a node
    /// that is not in a cluster yet, the one its config names.
    pub fn is_admin(&self, identity: &str) -> Result<bool, crate::state::StateError> {
        Ok(match self.state.admin()? {
            Some(admin) => admin == identity,
            None => !self.configured_admin.is_empty() && self.configured_admin == identity,
        })
    }

    /// A key entry. Every key route passes the dispatcher's read barrier first, so a key
    /// missing here was not created by any acknowledged write: the 404 needs no second round.
    pub fn key_entry(&self, enclave: &str, name: &str) -> Result<crate::state::KeyEntry, ApiError> {
        self.state
            .key(enclave, name)?
            .ok_or_else(|| ApiError::not_found("key does not exist"))
    }

    /// Loads a key for a crypto operation: from the cache, or by opening its sealed record.
    pub async fn load_key(&self, enclave: &str, name: &str) -> Result<Arc<LoadedKey>, ApiError> {
        if self.seal.is_sealed() {
            return Err(ApiError::sealed());
        }
        // No read of the key's record on a hit: every applied change of it evicted it.
        if let Some(k) = self.cache.get(enclave, name) {
            return Ok(k);
        }
        let generation = self.cache.generation();
        let (entry, _, versions) = self.open_current(enclave, name).await?;
        let key = Arc::new(LoadedKey {
            versions,
            min_decrypt: entry.min_decrypt,
        });
        self.cache.insert(enclave, name, key.clone(), generation);
        Ok(key)
    }

    /// This node's keys, once unwrapped from the copies of the cluster key that the cluster's
    /// record holds now. A restore, rekey or seal add replaces those copies, and this node's
    /// unseal loop takes up to 200 ms (and the seal provider its time) to unwrap the new ones.
    /// Meanwhile the keys it holds may belong to a cluster key that no longer opens anything,
    /// under the same storage version (after a restore), or lack a new one (after a rekey
    /// began): a record opened with them would fail for being a moment early, and one sealed
    /// with them could never be opened again. So this waits for the current keys, bounded,
    /// and then answers 503 rather than use others.
    pub async fn current_keys(&self) -> Result<CurrentKeys, ApiError> {
        let deadline = std::time::Instant::now() + NEW_CLUSTER_KEY_WAIT;
        loop {
            let keys = self.seal.keys().ok_or_else(ApiError::sealed)?;
            let Some(meta) = self.state.cluster_meta()? else {
                return Ok(CurrentKeys { keys, restores: 0 });
            };
            if let Some(current) = self.seal.keys_from(&meta.wrapped, &meta.previous) {
                return Ok(CurrentKeys {
                    keys: current,
                    restores: meta.restores,
                });
            }
            if std::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "this node has not unwrapped the cluster's current key yet (after a restore, rekey or seal change); retry",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Key `name` of `enclave` opened with the current keys: its entry, the keys and its
    /// versions (`seal::open_key_entry` checks the entry against its sealed record). The entry
    /// is read before the keys, so they are at least as new as the cluster key its record was
    /// sealed with. If it still does not open, a rekey may have finished while the keys were
    /// awaited (re-sealing the record, and dropping the key it was sealed with before), so both
    /// are read again, once. A record that does not open then is logged and answered as a 500.
    pub async fn open_current(
        &self,
        enclave: &str,
        name: &str,
    ) -> Result<
        (
            crate::state::KeyEntry,
            CurrentKeys,
            crate::crypto::KeyVersions,
        ),
        ApiError,
    > {
        let mut read_again = true;
        loop {
            let entry = self.key_entry(enclave, name)?;
            let keys = self.current_keys().await?;
            match crate::seal::open_key_entry(&keys, enclave, name, &entry) {
                Ok(versions) => return Ok((entry, keys, versions)),
                Err(_) if read_again => read_again = false,
                Err(why) => {
                    tracing::error!("key '{name}' in enclave '{enclave}': {why}");
                    return Err(ApiError::internal("failed to read key"));
                }
            }
        }
    }
}

/// Keys unwrapped from the cluster's current copies of its key ([`Node::current_keys`]).
#[derive(Debug, Clone)]
pub struct CurrentKeys {
    /// The keys.
    pub keys: Arc<Unsealed>,
    /// How many restores had replaced the cluster key when they were current
    /// (`ClusterMeta::restores`): a command whose record they sealed or signed carries it.
    pub restores: u64,
}

impl std::ops::Deref for CurrentKeys {
    type Target = Unsealed;

    fn deref(&self) -> &Unsealed {
        &self.keys
    }
}
