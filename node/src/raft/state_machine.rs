//! The Raft state machine: log entries applied to [`State`], and snapshots of it.

use super::{ApplyResponse, LogId, NodeId, NodeInfo, TypeConfig, decode, encode, io_err};
use crate::state::{Op, Outcome, State};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

const APPLIED: &[u8] = b"raft_applied";
const MEMBERSHIP: &[u8] = b"raft_membership";

/// Called after each applied command (for cache hygiene) and after a snapshot install (`None`).
pub type AppliedHook = Arc<dyn Fn(Option<&Op>) + Send + Sync>;

type Membership = StoredMembership<NodeId, NodeInfo>;
type Meta = SnapshotMeta<NodeId, NodeInfo>;

/// The state machine over the node's [`State`].
#[derive(Clone)]
pub struct StateMachine {
    state: State,
    snapshot_file: PathBuf,
    hook: AppliedHook,
    build_seconds: prometheus::Histogram,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateMachine({})", self.snapshot_file.display())
    }
}

fn sm_read(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&io_err(e)).into()
}

fn sm_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&io_err(e)).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &io_err(e)).into()
}

impl StateMachine {
    /// A state machine over `state`; the latest snapshot is kept in `snapshot_file`.
    /// `build_seconds` observes how long each snapshot build takes.
    pub fn new(
        state: State,
        snapshot_file: PathBuf,
        hook: AppliedHook,
        build_seconds: prometheus::Histogram,
    ) -> Self {
        StateMachine {
            state,
            snapshot_file,
            hook,
            build_seconds,
        }
    }

    fn applied(&self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let log_id = match self.state.meta_get(APPLIED).map_err(sm_read)? {
            Some(v) => decode(&v).map_err(sm_read)?,
            None => None,
        };
        let membership = match self.state.meta_get(MEMBERSHIP).map_err(sm_read)? {
            Some(v) => decode(&v).map_err(sm_read)?,
            None => Membership::default(),
        };
        Ok((log_id, membership))
    }

    /// Writes the snapshot file atomically: temp file, fsync, rename, fsync the directory.
    fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: &[u8],
    ) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.snapshot_file.with_extension("tmp");
        // A snapshot is the whole sealed state, as sensitive as a backup: owner only.
        let mut f = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
            0o600,
        )
        .open(&tmp)?;
        f.write_all(&encode(&(meta, serde_bytes::Bytes::new(data))))?;
        f.sync_all()?;
        crate::state::failpoint::hit("snapshot file: written")?;
        std::fs::rename(&tmp, &self.snapshot_file)?;
        if let Some(dir) = self.snapshot_file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn load_snapshot(&self) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
        match std::fs::read(&self.snapshot_file) {
            Ok(bytes) => {
                let (meta, data): (Meta, serde_bytes::ByteBuf) = decode(&bytes).map_err(io_err)?;
                Ok(Some((meta, data.into_vec())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A snapshot taken when openraft asked for a builder: the data is captured then, so applies
/// that run while the snapshot is written cannot tear it.
pub struct SnapshotBuilder {
    sm: StateMachine,
    started: std::time::Instant,
    data: Vec<u8>,
    last_applied: Option<LogId>,
    membership: Membership,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let data = std::mem::take(&mut self.data);
        let sm = self.sm.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || {
            sm.save_snapshot(&meta, &data).map(|()| (meta, data))
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        self.sm
            .build_seconds
            .observe(self.started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let mut marks: Vec<(&[u8], Vec<u8>)> = vec![(APPLIED, encode(&Some(entry.log_id)))];
            let outcome = match entry.payload {
                EntryPayload::Blank => {
                    self.state.record_applied(index, &marks).map_err(sm_write)?;
                    Outcome::Done
                }
                EntryPayload::Normal(cmd) => {
                    let outcome = self.state.apply(index, &cmd, &marks).map_err(sm_write)?;
                    (self.hook)(Some(&cmd.op));
                    outcome
                }
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(entry.log_id), m);
                    marks.push((MEMBERSHIP, encode(&stored)));
                    self.state.record_applied(index, &marks).map_err(sm_write)?;
                    Outcome::Done
                }
            };
            out.push(ApplyResponse { outcome });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies, so this dump is a consistent view. A failure here leaves
        // an empty builder, whose build fails and is retried by openraft later.
        let started = std::time::Instant::now();
        let data = self.state.dump().unwrap_or_default();
        let (last_applied, membership) = self.applied().unwrap_or_default();
        SnapshotBuilder {
            sm: self.clone(),
            started,
            data,
            last_applied,
            membership,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        self.state.load(&data).await.map_err(snap_err)?;
        let marks: Vec<(&[u8], Vec<u8>)> = vec![
            (APPLIED, encode(&meta.last_log_id)),
            (MEMBERSHIP, encode(&meta.last_membership)),
        ];
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.state.record_applied(index, &marks).map_err(snap_err)?;
        self.state.make_durable().await.map_err(snap_err)?;
        (self.hook)(None);
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || sm.save_snapshot(&meta, &data))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let sm = self.clone();
        let loaded = tokio::task::spawn_blocking(move || sm.load_snapshot())
            .await
            .map_err(sm_read)?
            .map_err(sm_read)?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
