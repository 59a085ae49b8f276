//! Whether this node is sealed, and the unsealed keys when it is not.

use super::Unsealed;
use std::sync::{Arc, RwLock};

/// Shared seal status. Handlers take a cheap `Arc` clone of the keys per request; sealing
/// drops the node's reference so the keys are zeroized once the last request finishes.
#[derive(Debug, Default)]
pub struct SealState {
    keys: RwLock<Option<Arc<Unsealed>>>,
    reason: RwLock<String>,
}

impl SealState {
    /// A node starts sealed.
    pub fn new() -> Self {
        SealState {
            keys: RwLock::new(None),
            reason: RwLock::new("starting".into()),
        }
    }

    /// The unsealed keys, or `None` while sealed.
    pub fn keys(&self) -> Option<Arc<Unsealed>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs the keys: the node now serves key operations.
    pub fn unseal(&self, keys: Unsealed) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        self.reason
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Drops the keys and records why, for `/v1/status` and logs.
    pub fn seal(&self, reason: impl Into<String>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self.reason.write().unwrap_or_else(|e| e.into_inner()) = reason.into();
    }

    /// Why the node is sealed (empty when unsealed).
    pub fn reason(&self) -> String {
        self.reason
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the node is sealed.
    pub fn is_sealed(&self) -> bool {
        self.keys().is_none()
    }
}
