//! openraft wiring: the type configuration, the sled-backed log and state machine, snapshots,
//! and the gRPC client side of the Raft network.
//!
//! The log and the state machine share the node's one sled `Db` (STACK.md, sled rule 4). The
//! log is made durable (flush plus fdatasync) before openraft is told an append or a vote is
//! stored, so an acknowledged write survives a crash.

// openraft's trait methods return its large `StorageError`; our helpers return the same type
// so they can be used with `?` inside those methods.
#![allow(clippy::result_large_err)]

pub mod force_new_cluster;
mod log_files;
mod log_store;
mod log_syncer;
mod network;
mod paced_writeback;
mod peer_contact;
mod read_leases;
mod sent_commit;
mod shared_index;
mod snapshot_body;
mod snapshot_file;
mod state_machine;

pub use log_store::{LogStore, Restored};
pub use network::{NetworkFactory, PeerNetwork};
pub use peer_contact::PeerContact;
pub use read_leases::{LastAppended, ReadLeases};
pub use sent_commit::SentCommit;
pub use shared_index::SharedIndex;
pub use snapshot_body::SnapshotBody;
pub use snapshot_file::open_dump;
pub use state_machine::{
    AppliedHook, ApplyPhase, RecoverError, StateMachine, recover_snapshot_install,
};

use crate::state::{Command, Outcome};
use serde::{Deserialize, Serialize};

/// How a member is reached and recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The KES API, `https://host:port`.
    pub http: String,
    /// The inter-node gRPC address, `host:port`.
    pub grpc: String,
    /// The SPKI hash of the node's gRPC certificate; only members' SPKIs may call Raft RPCs.
    pub spki: String,
    /// While the node rotates its certificate, the SPKI of the new one, accepted as well as
    /// `spki` until the rotation ends (`crate::cluster::rotate`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_spki: String,
}

impl NodeInfo {
    /// The SPKIs this node may present: its certificate's, and during a rotation the next.
    pub fn accepted_spkis(&self) -> Vec<String> {
        [&self.spki, &self.next_spki]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }

    /// Whether `spki` is one this node may present.
    pub fn accepts(&self, spki: &str) -> bool {
        !spki.is_empty() && (self.spki == spki || self.next_spki == spki)
    }
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (grpc {})", self.http, self.grpc)
    }
}

/// What applying a log entry returns to the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// The command's outcome (`Done` for blank and membership entries, and for a batch).
    pub outcome: Outcome,
    /// For a batch entry, the outcome of each of its commands, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<Outcome>,
}

impl ApplyResponse {
    /// The response to an entry that is not a client command.
    pub fn done() -> Self {
        ApplyResponse {
            outcome: Outcome::Done,
            batch: Vec::new(),
        }
    }
}

openraft::declare_raft_types!(
    /// The Raft types of kes-cluster.
    pub TypeConfig:
        D = Command,
        R = ApplyResponse,
        NodeId = u64,
        Node = NodeInfo,
        SnapshotData = SnapshotBody,
);

/// A node id.
pub type NodeId = u64;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;

/// The largest encoded command we replicate. Entry size, the AppendEntries batch and the gRPC
/// message limit must agree, or replication stalls forever (STACK.md): 64 KiB × 256 entries per
/// batch = 16 MiB, well under [`GRPC_MESSAGE_LIMIT`]. It also bounds every sled value, which
/// is what keeps sled pages below its blob-file threshold (see `SEGMENT_SIZE` in state/store.rs).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Entries per AppendEntries RPC.
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;
/// Snapshot chunk size.
pub const SNAPSHOT_CHUNK: u64 = 4 * 1024 * 1024;
/// The gRPC message limit, on both sides.
pub const GRPC_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// Encodes a Raft message for the wire.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("Raft messages always encode")
}

/// Decodes a Raft message from the wire; peer input, so failure is an error, never a panic.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    crate::msgpack::from_slice(b).map_err(|e| format!("malformed message: {e}"))
}

fn io_err<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
