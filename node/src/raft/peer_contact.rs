//! When each peer last answered an RPC from this node: any Raft reply counts, a refused vote or
//! append included (the peer is alive and speaks Raft); a transport error or a gRPC refusal
//! does not. Dead-node cleanup (`cluster/dead_voters.rs`) reads it on the leader.

use super::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shared by the Raft network (which records) and the cleanup task (which reads).
#[derive(Debug, Clone, Default)]
pub struct PeerContact(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl PeerContact {
    /// `peer` answered just now.
    pub fn heard(&self, peer: NodeId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(peer, Instant::now());
    }

    /// When `peer` last answered, if it ever did since this node started.
    pub fn last_heard(&self, peer: NodeId) -> Option<Instant> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&peer).copied()
    }
}
