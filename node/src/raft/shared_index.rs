//! A log index shared between tasks: written by the Raft side, read on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A log index behind an `Arc`, so clones share it.
#[derive(Debug, Clone, Default)]
pub struct SharedIndex(Arc<AtomicU64>);

impl SharedIndex {
    /// Raises the index to `index`, if that is higher.
    pub fn record(&self, index: u64) {
        self.0.fetch_max(index, Ordering::SeqCst);
    }

    /// Sets the index to `index`, higher or lower.
    pub fn set(&self, index: u64) {
        self.0.store(index, Ordering::SeqCst);
    }

    /// The index (0 before any).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
