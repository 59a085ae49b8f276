//! The highest commit index this node, as leader, has told any follower.
//!
//! A follower applies every entry up to the commit index its leader sends it, and may answer
//! from that state before the leader has applied the same entries itself (the leader applies
//! after it commits, and an apply can be slow). A read index that any node hands out, or
//! waits for, must therefore cover this index; the leader's last lease confirmation and its
//! own applied index may both be older. It is recorded before the AppendEntries leaves, so no
//! follower can know of a commit index above it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by the Raft network (which records) and the read path (which reads).
#[derive(Debug, Clone, Default)]
pub struct SentCommit(Arc<AtomicU64>);

impl SentCommit {
    /// Notes that a commit index of `index` is about to be sent.
    pub fn record(&self, index: u64) {
        self.0.fetch_max(index, Ordering::SeqCst);
    }

    /// The highest commit index sent so far (0 before any).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
