//! `kes-cluster snapshot save`: a consistent, still-sealed copy of the state.
//!
//! The file is the Raft snapshot this node builds on request, behind a small header. Key
//! records in it are sealed under the cluster key, which is itself only present wrapped by a
//! root key, so the file is useless without that root key.

use super::Cluster;
use crate::raft::{NodeId, NodeInfo, decode, encode};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const MAGIC: &[u8] = b"KES-CLUSTER-SNAPSHOT v1\n";

/// The body of a snapshot file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Backup {
    /// The cluster it was taken from.
    pub cluster_id: String,
    /// The log index it covers.
    pub index: u64,
    /// The state dump (see `State::dump`).
    pub dump: serde_bytes::ByteBuf,
}

impl Backup {
    /// Parses a snapshot file.
    pub fn parse(bytes: &[u8]) -> Result<Backup, String> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a kes-cluster snapshot file (wrong header)")?;
        decode(body).map_err(|e| format!("damaged snapshot file: {e}"))
    }

    /// The snapshot file: the header, then the encoded body.
    pub fn to_file(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&encode(self));
        out
    }
}

impl Cluster {
    /// Builds a fresh snapshot covering everything applied so far and returns the file.
    pub async fn save_snapshot(self: &std::sync::Arc<Self>) -> Result<Vec<u8>, String> {
        // Linearizable: the snapshot holds every write acknowledged before the request, even
        // when this node was a little behind.
        self.read_barrier().await?;
        let applied = self.applied_index();
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        loop {
            let done = self.metrics().snapshot.map(|l| l.index).unwrap_or(0);
            if done >= applied {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err("the snapshot was not built within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bytes = tokio::fs::read(&self.snapshot_file)
            .await
            .map_err(|e| format!("cannot read the snapshot: {e}"))?;
        let (meta, data): (
            openraft::SnapshotMeta<NodeId, NodeInfo>,
            serde_bytes::ByteBuf,
        ) = decode(&bytes)?;
        let backup = Backup {
            cluster_id: self.cluster_id(),
            index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
            dump: data,
        };
        Ok(backup.to_file())
    }
}
