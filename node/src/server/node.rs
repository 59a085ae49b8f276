//! The shared context of a running node, handed to every request.

use super::KeyCache;
use crate::api::ApiError;
use crate::api::Route;
use crate::cluster::Writer;
use crate::crypto::SecretKey;
use crate::obs::{EventBus, Metrics};
use crate::seal::{RecordAad, SealState, open_record};
use crate::state::State;
use std::sync::Arc;

/// Everything a request needs.
#[derive(Debug)]
pub struct Node {
    /// The applied state.
    pub state: State,
    /// Sealed or unsealed, and the keys.
    pub seal: SealState,
    /// The commit path.
    pub writer: Writer,
    /// Unsealed keys.
    pub cache: KeyCache,
    /// Metric families.
    pub metrics: Metrics,
    /// Audit and error streams.
    pub events: EventBus,
    /// The route table, after `api:` customisation.
    pub routes: Vec<Route>,
    /// Print audit events to stdout (`log.audit: on`).
    pub audit_stdout: bool,
}

impl Node {
    /// Loads a key for a crypto operation: from the cache, or by opening its sealed record.
    pub fn load_key(&self, enclave: &str, name: &str) -> Result<Arc<SecretKey>, ApiError> {
        let keys = self.seal.keys().ok_or_else(ApiError::sealed)?;
        let entry = self
            .state
            .key(enclave, name)?
            .ok_or_else(|| ApiError::not_found("key does not exist"))?;
        if let Some(k) = self.cache.get(enclave, name, entry.creation_id) {
            return Ok(k);
        }
        let stored = self.open_key(&keys, enclave, name, entry.creation_id, &entry.sealed)?;
        let key = Arc::new(stored.key);
        self.cache
            .insert(enclave, name, entry.creation_id, key.clone());
        Ok(key)
    }

    /// Opens a sealed key record into the KES key type.
    pub fn open_key(
        &self,
        keys: &crate::seal::Unsealed,
        enclave: &str,
        name: &str,
        creation_id: u128,
        sealed: &[u8],
    ) -> Result<crate::crypto::StoredKey, ApiError> {
        let aad = RecordAad {
            enclave,
            name,
            creation_id,
        };
        let record = open_record(keys, aad, sealed).map_err(|e| {
            tracing::error!("key '{name}' in enclave '{enclave}': {e}");
            ApiError::internal("failed to read key")
        })?;
        crate::crypto::parse_protobuf(&record).map_err(|e| {
            tracing::error!("key '{name}' in enclave '{enclave}': {e}");
            ApiError::internal("failed to read key")
        })
    }
}
