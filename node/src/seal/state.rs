//! Whether this node is sealed, and the unsealed keys when it is not.

use super::Unsealed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Shared seal status. Handlers take a cheap `Arc` clone of the keys per request; sealing
/// drops the node's reference so the keys are zeroized once the last request finishes.
#[derive(Debug, Default)]
pub struct SealState {
    keys: RwLock<Option<(Arc<Unsealed>, KeySource)>>,
    reason: RwLock<String>,
    /// Whether `keys` holds keys, for [`SealState::is_sealed`]: every request asks, on every
    /// connection thread, and a load of a flag nobody writes costs no cache line moving between
    /// cores, as the lock's reader count and the keys' reference count do.
    unsealed: AtomicBool,
}

/// What a node's keys were unwrapped from: the cluster record's wrapped copies of the cluster
/// key, and during a rekey those of the previous one. A restore, rekey or seal add replaces
/// them, and the keys are current again once unwrapped from the new ones.
pub type KeySource = (Vec<super::WrappedCopy>, Option<crate::state::PreviousKey>);

impl SealState {
    /// A node starts sealed.
    pub fn new() -> Self {
        SealState {
            keys: RwLock::new(None),
            reason: RwLock::new("starting".into()),
            unsealed: AtomicBool::new(false),
        }
    }

    /// The unsealed keys, or `None` while sealed.
    pub fn keys(&self) -> Option<Arc<Unsealed>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.as_ref().map(|(k, _)| k.clone())
    }

    /// The unsealed keys if they were unwrapped from `wrapped` and `previous`; `None` while
    /// sealed or unwrapped from other copies.
    pub fn keys_from(
        &self,
        wrapped: &[super::WrappedCopy],
        previous: &Option<crate::state::PreviousKey>,
    ) -> Option<Arc<Unsealed>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.as_ref()
            .filter(|(_, (w, p))| w.as_slice() == wrapped && p == previous)
            .map(|(k, _)| k.clone())
    }

    /// Installs the keys, unwrapped from `source`: the node now serves key operations.
    pub fn unseal(&self, keys: Unsealed, source: KeySource) {
        let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *held = Some((Arc::new(keys), source));
        self.unsealed.store(true, Ordering::Release);
        drop(held);
        self.reason
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Drops the keys and records why, for `/v1/status` and logs.
    pub fn seal(&self, reason: impl Into<String>) {
        let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *held = None;
        self.unsealed.store(false, Ordering::Release);
        drop(held);
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
        !self.unsealed.load(Ordering::Acquire)
    }
}
