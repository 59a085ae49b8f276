//! The Raft state machine: log entries applied to [`State`], and snapshots of it.
//!
//! A snapshot install saves the snapshot file first, then installs into the state under an
//! install record (`state::snapshot`). So after a crash at any step, [`recover_snapshot_install`]
//! finds either no record (the old state is whole) or a record naming the snapshot in the file,
//! and installs it again: the node starts on the whole old or the whole new state.

use super::snapshot_body::SnapshotBody;
use super::snapshot_file::SnapshotFile;
use super::{ApplyResponse, LogId, NodeId, NodeInfo, TypeConfig, decode, encode, io_err};
use crate::state::{Command, DumpSource, Op, RunningDump, State, StateError};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const APPLIED: &[u8] = b"raft_applied";
const MEMBERSHIP: &[u8] = b"raft_membership";

/// Called for each command just before `apply` writes it and again once it has, and around a
/// snapshot install (`None`), before openraft publishes the index: the key cache evicts what
/// the command changes at both points (`server/key_cache.rs`). It gets the whole command, so a
/// hook can tell which enclave an operation was in. Before either, it hears that the entry is
/// committed ([`ApplyPhase::Committed`]), which the leader's group commit waits for.
pub type AppliedHook = Arc<dyn Fn(Option<&Command>, ApplyPhase) + Send + Sync>;

/// Where `apply` is when it calls the [`AppliedHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyPhase {
    /// The entry holding the command is committed and is about to be applied: called once
    /// per entry, with the entry's whole command (a batch as one), when openraft hands the
    /// entry to `apply`, before anything of it is written.
    Committed,
    /// The command is about to be written to the store.
    About,
    /// The command is written (or refused); the index is not published yet.
    Done,
}

type Membership = StoredMembership<NodeId, NodeInfo>;
type Meta = SnapshotMeta<NodeId, NodeInfo>;

/// The state machine over the node's [`State`].
#[derive(Clone)]
pub struct StateMachine {
    state: State,
    snapshot_file: Arc<SnapshotFile>,
    hook: AppliedHook,
    build_seconds: prometheus::Histogram,
    /// On the leader, an entry is applied only once every read-lease holder has appended it.
    read_leases: super::ReadLeases,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateMachine({})", self.snapshot_file.path().display())
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

/// Why a node cannot start on its state after a crash during a snapshot install.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The state or the snapshot file cannot be read or written.
    #[error("cannot finish an interrupted snapshot install: {0}")]
    Io(String),
    /// The install record names a snapshot the file does not hold.
    #[error(
        "a snapshot install was interrupted and the snapshot file no longer holds that \
         snapshot, so the state may be half old, half new: empty this node's data dir and \
         join it to the cluster again"
    )]
    SnapshotGone,
}

/// Before Raft starts: if the node died in a snapshot install, installs that snapshot again
/// from the snapshot file, so it starts on the whole new state, never on half-loaded trees.
/// Also removes temp files that writers of the snapshot file left when they were killed.
pub async fn recover_snapshot_install(
    state: &State,
    snapshot_file: &Path,
) -> Result<(), RecoverError> {
    let io = |e: &dyn std::fmt::Display| RecoverError::Io(e.to_string());
    let file = SnapshotFile::new(snapshot_file.to_owned());
    file.remove_stale_temps().map_err(|e| io(&e))?;
    let Some(install_id) = state.unfinished_install().map_err(|e| io(&e))? else {
        return install_a_snapshot_ahead(state, &file)
            .await
            .map_err(|e| io(&e));
    };
    let (meta, dump) = file
        .open()
        .map_err(|e| io(&e))?
        .ok_or(RecoverError::SnapshotGone)?;
    if install_id != encode(&meta.last_log_id) {
        return Err(RecoverError::SnapshotGone);
    }
    tracing::warn!(
        snapshot = %meta.snapshot_id,
        "finishing a snapshot install that a crash interrupted"
    );
    install_into(state, &meta, &dump).await.map_err(|e| io(&e))
}

/// A received snapshot is saved to the file before its install begins, so a crash between the
/// two leaves the file ahead of the state with no install record; openraft would then take the
/// file for this node's state, and refuse the same snapshot when the leader sends it again. So
/// a file ahead of the applied state is installed at start. That is right however the file got
/// ahead: it holds a committed state, either received, or built by this node from applies that
/// sled had not synced when it stopped.
async fn install_a_snapshot_ahead(state: &State, file: &SnapshotFile) -> Result<(), String> {
    let Some((meta, dump)) = file.open().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let applied: Option<LogId> = match state.meta_get(APPLIED).map_err(|e| e.to_string())? {
        Some(v) => decode(&v)?,
        None => None,
    };
    if meta.last_log_id <= applied {
        return Ok(());
    }
    tracing::warn!(
        snapshot = %meta.snapshot_id,
        "installing a snapshot saved before a crash that ended this node before its install began"
    );
    install_into(state, &meta, &dump)
        .await
        .map_err(|e| e.to_string())
}

/// Replaces the state with a snapshot, recording its last log id and membership where
/// [`StateMachine::applied_state`] reads them. The install is named by the last log id, which
/// [`recover_snapshot_install`] compares with the snapshot file's.
async fn install_into(state: &State, meta: &Meta, dump: &dyn DumpSource) -> Result<(), StateError> {
    let marks: [(&[u8], Vec<u8>); 2] = [
        (APPLIED, encode(&meta.last_log_id)),
        (MEMBERSHIP, encode(&meta.last_membership)),
    ];
    let index = meta.last_log_id.map_or(0, |l| l.index);
    let install_id = encode(&meta.last_log_id);
    state.install(dump, index, &marks, &install_id).await
}

/// The last entry applied to `state`, and the membership as of it.
pub(super) fn applied_in(
    state: &State,
) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
    let log_id = match state.meta_get(APPLIED).map_err(sm_read)? {
        Some(v) => decode(&v).map_err(sm_read)?,
        None => None,
    };
    let membership = match state.meta_get(MEMBERSHIP).map_err(sm_read)? {
        Some(v) => decode(&v).map_err(sm_read)?,
        None => Membership::default(),
    };
    Ok((log_id, membership))
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
            snapshot_file: Arc::new(SnapshotFile::new(snapshot_file)),
            hook,
            build_seconds,
            read_leases: Default::default(),
        }
    }

    /// Applies an entry only once every holder of a read lease from this node has appended it
    /// (`read_leases.rs`).
    pub fn holding_back_for(mut self, read_leases: super::ReadLeases) -> Self {
        self.read_leases = read_leases;
        self
    }

    fn applied(&self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        applied_in(&self.state)
    }

    /// Begins a snapshot of the state as it is between two applies: its meta, and a dump that
    /// writes that state however many applies run meanwhile (`state/dump_view.rs`).
    fn capture(&self) -> Result<Captured, StorageError<NodeId>> {
        let (last_applied, membership) = self.applied()?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        Ok(Captured {
            meta,
            dump: self.state.begin_dump(),
        })
    }
}

/// A snapshot begun between two applies, not yet written.
struct Captured {
    meta: Meta,
    dump: RunningDump,
}

/// A snapshot begun when openraft asked for a builder: its view is fixed then, so applies
/// that run while the snapshot is written cannot tear it, and do not wait for it. If the
/// capture failed, the build fails: an empty snapshot would let openraft purge the log it
/// stands for.
pub struct SnapshotBuilder {
    sm: StateMachine,
    started: std::time::Instant,
    captured: Option<Result<Captured, StorageError<NodeId>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let Captured { meta, dump } = self
            .captured
            .take()
            .unwrap_or_else(|| Err(sm_read("this snapshot builder was used already")))?;
        let file = self.sm.snapshot_file.clone();
        let saving = meta.clone();
        let failpoints = crate::state::failpoint::carry();
        let (body, failpoints) = tokio::task::spawn_blocking(move || {
            let adopted = failpoints.adopt();
            let body = file
                .write(&saving, |out| {
                    dump.write_into(out).map(drop).map_err(io_err)
                })
                .and_then(|written| {
                    drop(dump);
                    SnapshotBody::reading(file.place(written)?.0)
                });
            (body, adopted.give_back())
        })
        .await
        .map_err(snap_err)?;
        failpoints.restore();
        let body = body.map_err(snap_err)?;
        self.sm
            .build_seconds
            .observe(self.started.elapsed().as_secs_f64());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(body),
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
        let entries: Vec<_> = entries.into_iter().collect();
        // openraft applies only committed entries: the leader's group commit may propose its
        // next entry now, beside this apply (`cluster/group_commit.rs`).
        for entry in &entries {
            if let EntryPayload::Normal(cmd) = &entry.payload {
                (self.hook)(Some(cmd), ApplyPhase::Committed);
            }
        }
        crate::test_hooks::slow_apply().await;
        if let Some(last) = entries.last() {
            self.read_leases.exposable(last.log_id.index).await;
        }
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let mut marks: Vec<(&[u8], Vec<u8>)> = vec![(APPLIED, encode(&Some(entry.log_id)))];
            let response = match entry.payload {
                EntryPayload::Blank => {
                    self.state.record_applied(index, &marks).map_err(sm_write)?;
                    ApplyResponse::done()
                }
                EntryPayload::Normal(Command {
                    op: Op::Batch { commands },
                    ..
                }) => {
                    commands
                        .iter()
                        .for_each(|cmd| (self.hook)(Some(cmd), ApplyPhase::About));
                    let batch = self
                        .state
                        .apply_batch(index, &commands, &marks)
                        .map_err(sm_write)?;
                    commands
                        .iter()
                        .for_each(|cmd| (self.hook)(Some(cmd), ApplyPhase::Done));
                    ApplyResponse {
                        batch,
                        ..ApplyResponse::done()
                    }
                }
                EntryPayload::Normal(cmd) => {
                    (self.hook)(Some(&cmd), ApplyPhase::About);
                    let outcome = self.state.apply(index, &cmd, &marks).map_err(sm_write)?;
                    (self.hook)(Some(&cmd), ApplyPhase::Done);
                    ApplyResponse {
                        outcome,
                        batch: Vec::new(),
                    }
                }
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(entry.log_id), m);
                    marks.push((MEMBERSHIP, encode(&stored)));
                    self.state.record_applied(index, &marks).map_err(sm_write)?;
                    ApplyResponse::done()
                }
            };
            out.push(response);
        }
        crate::test_hooks::late_apply_report().await;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Called between applies, so the dump begins on a consistent view.
        let started = std::time::Instant::now();
        SnapshotBuilder {
            sm: self.clone(),
            started,
            captured: Some(self.capture()),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotBody>, StorageError<NodeId>> {
        let temp = self.snapshot_file.temp_path();
        Ok(Box::new(SnapshotBody::receiving(temp).map_err(snap_err)?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<SnapshotBody>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut steps = crate::obs::Laps::started();
        let (received, took) = snapshot.into_received().await.map_err(snap_err)?;
        steps.done("flushed");
        // A damaged dump must replace neither the snapshot file nor the state.
        State::check_dump(&received).map_err(snap_err)?;
        steps.done("checked");
        crate::state::failpoint::hit("install: checked").map_err(snap_err)?;
        // The file first: an install that a crash interrupts is redone from it at start.
        let file = self.snapshot_file.clone();
        let saving = meta.clone();
        let received = tokio::task::spawn_blocking(move || {
            let written = file.write(&saving, |out| received.copy_to(out))?;
            file.place(written).map(|_| received)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        steps.done("saved as the snapshot file");
        tracing::info!(
            snapshot = ?meta.last_log_id,
            received_in = format!("{:.2}s", took.as_secs_f64()),
            steps = %steps,
            "installing a snapshot received from the leader"
        );
        (self.hook)(None, ApplyPhase::About);
        install_into(&self.state, meta, &received)
            .await
            .map_err(snap_err)?;
        (self.hook)(None, ApplyPhase::Done);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let file = self.snapshot_file.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let opened = file.open()?;
            opened
                .map(|(meta, dump)| std::io::Result::Ok((meta, SnapshotBody::reading(dump)?)))
                .transpose()
        })
        .await
        .map_err(sm_read)?
        .map_err(sm_read)?;
        Ok(opened.map(|(meta, body)| Snapshot {
            meta,
            snapshot: Box::new(body),
        }))
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
