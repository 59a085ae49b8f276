//! `kes-cluster snapshot save`: a consistent, still-sealed copy of the state.
//!
//! The file is the Raft snapshot this node builds on request, behind a small header. Key
//! records in it are sealed under the cluster key, which is itself only present wrapped by a
//! root key, so the file is useless without that root key.
//!
//! The dump is streamed from the Raft snapshot file to the client, never read into memory: a
//! million keys make a dump of 263 MB.

use super::Cluster;
use crate::raft::{decode, encode};
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

    /// The start of a snapshot file whose dump of `dump_len` bytes follows: what
    /// [`Backup::to_file`] writes before the dump's bytes, for a dump streamed from elsewhere.
    pub fn file_head(cluster_id: &str, index: u64, dump_len: u32) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        // `encode` writes a struct as a map of its field names, in order.
        rmp::encode::write_map_len(&mut out, 3).expect("writes to memory");
        rmp::encode::write_str(&mut out, "cluster_id").expect("writes to memory");
        rmp::encode::write_str(&mut out, cluster_id).expect("writes to memory");
        rmp::encode::write_str(&mut out, "index").expect("writes to memory");
        rmp::encode::write_uint(&mut out, index).expect("writes to memory");
        rmp::encode::write_str(&mut out, "dump").expect("writes to memory");
        rmp::encode::write_bin_len(&mut out, dump_len).expect("writes to memory");
        out
    }
}

/// A snapshot file on its way to a client: its head, then `dump_len` bytes of `dump`.
pub struct BackupStream {
    /// Everything before the dump's bytes.
    pub head: Vec<u8>,
    /// The Raft snapshot file, positioned at the dump's first byte.
    pub dump: std::fs::File,
    /// The dump's length.
    pub dump_len: u64,
}

impl Cluster {
    /// Builds a fresh snapshot covering everything applied so far and returns the file, to be
    /// streamed.
    pub async fn save_snapshot(self: &std::sync::Arc<Self>) -> Result<BackupStream, String> {
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
        let path = self.snapshot_file.clone();
        let opened = tokio::task::spawn_blocking(move || crate::raft::open_dump(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the snapshot: {e}"))?;
        let (meta, dump, dump_len) = opened.ok_or("the snapshot file is gone")?;
        let len32 = u32::try_from(dump_len).map_err(|_| "the snapshot is larger than 4 GiB")?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        Ok(BackupStream {
            head: Backup::file_head(&self.cluster_id(), index, len32),
            dump,
            dump_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Backup;

    /// A streamed file reads as the same backup as one made in memory, and has the same bytes
    /// when the dump is large enough for `bin 32`.
    #[test]
    fn a_streamed_head_makes_the_same_file() {
        for len in [0usize, 10, 70_000] {
            let backup = Backup {
                cluster_id: "c-1".into(),
                index: 1 << 40,
                dump: vec![7; len].into(),
            };
            let mut streamed = Backup::file_head("c-1", 1 << 40, len as u32);
            streamed.extend_from_slice(&backup.dump);
            let parsed = Backup::parse(&streamed).expect("parses");
            assert_eq!(
                (parsed.cluster_id, parsed.index, parsed.dump),
                (backup.cluster_id.clone(), backup.index, backup.dump.clone())
            );
            if len > 65_535 {
                assert_eq!(streamed, backup.to_file());
            }
        }
    }
}
