//! The shared context of a running node, handed to every request.

use super::KeyCache;
use super::key_cache::{KeyStamp, LoadedKey};
use crate::api::ApiError;
use crate::api::Route;
use crate::cluster::Cluster;
use crate::obs::{EventBus, Metrics};
use crate::seal::{SealState, Unsealed, record_version};
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
        let keys = self.seal.keys().ok_or_else(ApiError::sealed)?;
        let entry = self.key_entry(enclave, name)?;
        let stamp = KeyStamp::of(&entry);
        if let Some(k) = self.cache.get(enclave, name, stamp) {
            return Ok(k);
        }
        let keys = self.keys_that_open(keys, &entry.sealed).await;
        let versions = self.open_key(&keys, enclave, name, &entry)?;
        let key = Arc::new(LoadedKey { versions, stamp });
        self.cache.insert(enclave, name, key.clone());
        Ok(key)
    }

    /// Keys that can open `sealed`. A record resealed by a rekey this node has applied, but
    /// whose new cluster key the unseal loop has not unwrapped yet (it looks every 200 ms, and
    /// the seal provider takes its time), waits for it, bounded: a linearizable read must see
    /// the resealed record, and must not fail for being a moment early.
    pub async fn keys_that_open(&self, keys: Arc<Unsealed>, sealed: &[u8]) -> Arc<Unsealed> {
        match record_version(sealed) {
            Some(version) => self.keys_at_least(keys, version).await,
            None => keys,
        }
    }

    /// The keys to seal or sign a new record with: the cluster's current key. Right after a
    /// rekey began, this node's unseal loop may not hold the new key yet, and a record under
    /// the old one is refused once the rekey finishes (`state/apply/current_key.rs`); so this
    /// waits for it, bounded, like a read of a resealed record.
    pub async fn sealing_keys(&self) -> Result<Arc<Unsealed>, ApiError> {
        let keys = self.seal.keys().ok_or_else(ApiError::sealed)?;
        match self.state.cluster_meta()? {
            Some(meta) => Ok(self.keys_at_least(keys, meta.storage_version).await),
            None => Ok(keys),
        }
    }

    /// `keys`, or newer ones once the unseal loop holds a cluster key of at least `version`;
    /// after [`NEW_CLUSTER_KEY_WAIT`], whatever it holds then.
    async fn keys_at_least(&self, keys: Arc<Unsealed>, version: u32) -> Arc<Unsealed> {
        let mut keys = keys;
        let deadline = std::time::Instant::now() + NEW_CLUSTER_KEY_WAIT;
        while version > keys.storage_version && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            match self.seal.keys() {
                Some(k) => keys = k,
                None => break,
            }
        }
        keys
    }

    /// Opens key `name` of `enclave` from its entry (`seal::open_key_entry`). A record that
    /// does not open, or disagrees with its entry, is logged and answered as a 500.
    pub fn open_key(
        &self,
        keys: &crate::seal::Unsealed,
        enclave: &str,
        name: &str,
        entry: &crate::state::KeyEntry,
    ) -> Result<crate::crypto::KeyVersions, ApiError> {
        crate::seal::open_key_entry(keys, enclave, name, entry).map_err(|why| {
            tracing::error!("key '{name}' in enclave '{enclave}': {why}");
            ApiError::internal("failed to read key")
        })
    }
}
