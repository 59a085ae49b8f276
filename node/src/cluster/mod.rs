//! Replication: the Raft node, the write path (propose or forward), the serving lease, the
//! inter-node gRPC service, membership changes, and status.
//!
//! ```text
//!  handler ─Command─▶ Cluster::write ─leader?─▶ group commit ─▶ raft.client_write ─majority─▶ apply everywhere
//!                                    └follower─▶ gRPC Forward to the leader, then wait to apply
//!  reads ─▶ Cluster::read_barrier (leader lease, follower read lease, or one shared ReadIndex round) ─▶ local state
//! ```
//!
//! A node without `cluster:` settings is a one-node cluster: the same code, no peers.

mod backup;
pub mod boot_clock;
mod dead_voters;
mod evict;
mod group_commit;
mod join;
mod lease;
mod membership;
mod node_id;
mod pre_vote;
mod read_barrier;
mod rotate;
mod service;
mod snapshot_chunks;
mod snapshot_schedule;
mod status;
mod ticket;
pub mod transport;
mod watch;
mod write;

pub use backup::{Backup, BackupStream};
pub use dead_voters::remove_dead_voters;
pub use evict::evict_tombstoned;
pub use group_commit::GroupCommit;
pub use join::{join_through, node_client};
pub use lease::Lease;
pub use node_id::{load_or_create_node_id, read_node_id};
pub use read_barrier::ReadRounds;
pub use service::ClusterService;
pub use snapshot_schedule::build_snapshots_in_turn;
pub use status::{AdminOp, cluster_status, node_status};
pub use ticket::{JoinGate, Refusal};
pub use watch::watch_metrics;
pub use write::{Committed, WriteError, system_command};

use crate::raft::{NodeId, NodeInfo, Raft};
use crate::seal::Seals;
use crate::state::State;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use transport::{NodeTls, PeerChannels};

/// The timing of the cluster, from `cluster:` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Leader heartbeat.
    pub heartbeat: Duration,
    /// Serving lease: how long a confirmation of leadership or of the leader's commit index
    /// lets a node serve reads. Below the smallest election timeout.
    pub lease: Duration,
    /// Bound for `Kes-Cluster-Index` waits and 404 confirmation.
    pub read_index_wait: Duration,
    /// Bound for a write, forwarding included.
    pub write_wait: Duration,
    /// How long a follower waits without word from a leader before it asks for votes.
    pub election_timeout: crate::config::ElectionTimeout,
}

/// A running Raft node and what it needs to serve the cluster.
pub struct Cluster {
    /// openraft.
    pub raft: Raft,
    /// This node's id.
    pub node_id: NodeId,
    /// How this node is reached.
    pub me: NodeInfo,
    /// Timing.
    pub settings: Settings,
    /// gRPC channels to peers.
    pub channels: PeerChannels,
    /// Node TLS, when the node can talk to peers.
    pub tls: Option<NodeTls>,
    /// The cluster id, once known (from the state, or from a join challenge).
    pub cluster_id: Arc<RwLock<String>>,
    /// The serving lease.
    pub lease: Lease,
    /// Reads waiting for a shared read-index round.
    pub reads: ReadRounds,
    /// The highest commit index this node has sent as leader: every read index covers it.
    pub sent_commit: crate::raft::SentCommit,
    /// When each peer last answered this node's Raft RPCs (for dead-node cleanup).
    pub contact: crate::raft::PeerContact,
    /// As leader, the followers' read leases (`raft/read_leases.rs`).
    pub read_leases: crate::raft::ReadLeases,
    /// The index of the last entry in this node's log, for reads under a read lease.
    pub last_appended: crate::raft::LastAppended,
    /// Writes waiting to go into the log together (on the leader).
    pub proposals: GroupCommit,
    /// The applied state.
    pub state: State,
    /// This node's Raft log, for reading its last entry (openraft appends to it).
    pub log: crate::raft::LogStore,
    /// Sealed or unsealed (the leader needs the join key to check a joiner).
    pub seal: Arc<crate::seal::SealState>,
    /// This node's seals, for answering join challenges and for restores.
    pub seals: Seals,
    /// This node's own pending join, and the members its challenge named.
    pub ticket: JoinGate,
    /// When this node started (for contact times).
    pub started: boot_clock::BootInstant,
    /// Where the state machine keeps its latest snapshot.
    pub snapshot_file: std::path::PathBuf,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(node {})", self.node_id)
    }
}

impl Cluster {
    /// A copy of the current metrics. On a per-request path use [`Cluster::with_metrics`],
    /// which reads them in place instead of cloning the membership and replication maps.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, NodeInfo> {
        self.with_metrics(|m| m.clone())
    }

    /// Reads the current metrics in place. `read` must not block: openraft waits for it to
    /// publish the next metrics.
    pub fn with_metrics<R>(
        &self,
        read: impl FnOnce(&openraft::RaftMetrics<NodeId, NodeInfo>) -> R,
    ) -> R {
        read(&self.raft.metrics().borrow())
    }

    /// The cluster id ("" before it is known).
    pub fn cluster_id(&self) -> String {
        self.cluster_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the cluster id (from the state once `Init` is applied, or from a join challenge).
    pub fn set_cluster_id(&self, id: &str) {
        let mut cur = self.cluster_id.write().unwrap_or_else(|e| e.into_inner());
        if *cur != id {
            *cur = id.to_owned();
        }
    }

    /// The known leader and how to reach it.
    pub fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        self.with_metrics(|m| {
            let id = m.current_leader?;
            let info = m.membership_config.membership().get_node(&id)?.clone();
            Some((id, info))
        })
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.with_metrics(|m| m.current_leader == Some(self.node_id))
    }

    /// The id of the member whose gRPC certificate has `spki`, if any.
    pub fn member_id(&self, spki: &str) -> Option<NodeId> {
        if spki.is_empty() {
            return None;
        }
        self.with_metrics(|m| {
            m.membership_config
                .membership()
                .nodes()
                .find(|(_, n)| n.accepts(spki))
                .map(|(id, _)| *id)
        })
    }

    /// Whether `spki` is a current member's node certificate. A member with a tombstoned SPKI
    /// (being removed) is refused by its other SPKI too, should it be rotating.
    pub fn is_member_spki(&self, spki: &str) -> bool {
        let candidates: Vec<Vec<String>> = self.with_metrics(|m| {
            m.membership_config
                .membership()
                .nodes()
                .filter(|(_, n)| n.accepts(spki))
                .map(|(_, n)| n.accepted_spkis())
                .collect()
        });
        // The tombstone reads are sled lookups: done after the metrics are released.
        let member = candidates
            .iter()
            .any(|spkis| spkis.iter().all(|s| !self.state.is_tombstoned(s)));
        member && !self.state.is_tombstoned(spki)
    }

    /// Whether `spki` is in the membership a leader signed (true before the first signature,
    /// so a new cluster can form). A member added by editing a data dir is not.
    pub fn signed_member(&self, spki: &str) -> bool {
        match self.state.signed_membership() {
            Ok(Some(m)) => {
                !spki.is_empty()
                    && (m.nodes.values().any(|(_, _, s)| s == spki)
                        || m.next.values().any(|s| s == spki))
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// The current membership in the form the leader signs.
    pub fn membership_record(&self) -> crate::state::SignedMembership {
        let m = self.metrics();
        let nodes = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, (n.http.clone(), n.grpc.clone(), n.spki.clone())))
            .collect();
        let next = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(_, n)| !n.next_spki.is_empty())
            .map(|(id, n)| (*id, n.next_spki.clone()))
            .collect();
        crate::state::SignedMembership {
            nodes,
            next,
            sig: Default::default(),
        }
    }

    /// Waits until this node has applied `index`, at most `within`.
    pub async fn wait_applied(&self, index: u64, within: Duration) -> bool {
        if self.applied_index() >= index {
            return true;
        }
        self.raft
            .wait(Some(within))
            .applied_index_at_least(Some(index), "wait for a write to apply here")
            .await
            .is_ok()
    }

    /// The last applied log index.
    pub fn applied_index(&self) -> u64 {
        self.with_metrics(|m| m.last_applied.map(|l| l.index).unwrap_or(0))
    }
}
