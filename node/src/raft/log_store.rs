//! The Raft log: entries in files of our own (`log_files.rs`), made durable by the syncer
//! thread (`log_syncer.rs`); the vote, the commit index and the purge mark in sled.

use super::log_files::LogFiles;
use super::log_syncer::LogSyncer;
use super::{LogId, NodeId, TypeConfig, decode, encode, io_err};
use crate::state::State;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, StorageError, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"last_purged";

/// Where the entries were kept before they had files of their own: a sled tree, keyed by
/// big-endian index. `open` moves a store's entries out of it.
const SLED_LOG_TREE: &str = "raft_log";

use crate::state::RAFT_LOG_DIR as LOG_DIR;

/// The log. Clones share the files and the syncer (openraft reads through a clone while it
/// appends through another).
#[derive(Debug, Clone)]
pub struct LogStore {
    state: State,
    meta: sled::Tree,
    files: Arc<Mutex<LogFiles>>,
    syncer: LogSyncer,
    /// Where the log's end is published for read leases, once an append is durable.
    last_appended: super::LastAppended,
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(&io_err(e)).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(&io_err(e)).into()
}

/// The log's state at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The index of its last entry.
    pub last_index: Option<u64>,
    /// The commit index it last wrote down; never synced, so it may be behind what was
    /// committed (and acknowledged) before a crash.
    pub committed_index: Option<u64>,
    /// The term this node led when it stopped: openraft restores it as leader in that term,
    /// without an election.
    pub led_term: Option<u64>,
}

fn get_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageError<NodeId>> {
    match meta.get(key).map_err(read_err)? {
        Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
        None => Ok(None),
    }
}

impl LogStore {
    /// Opens the log of the node whose state is `state`: its files, cut back to their last
    /// whole record; entries a store made by an earlier version kept in sled move to files.
    pub async fn open(state: &State) -> Result<Self, StorageError<NodeId>> {
        let meta = state.tree("raft_meta").map_err(read_err)?;
        let purged: Option<LogId> = get_meta(&meta, PURGED)?;
        let dir = state.dir().join(LOG_DIR);
        if state
            .existing_tree(SLED_LOG_TREE)
            .map_err(read_err)?
            .is_some()
            && dir.exists()
        {
            // A move out of sled that a crash interrupted: its files may be partial, in any
            // way; the tree still holds every entry.
            std::fs::remove_dir_all(&dir).map_err(write_err)?;
            crate::dir_sync::sync_parent(&dir).map_err(write_err)?;
        }
        let files = LogFiles::open(&dir, purged.map(|l| l.index)).map_err(read_err)?;
        let store = LogStore {
            state: state.clone(),
            meta,
            files: Arc::new(Mutex::new(files)),
            syncer: LogSyncer::start(state.dir().to_owned()).map_err(write_err)?,
            last_appended: Default::default(),
        };
        store.move_entries_out_of_sled().await?;
        Ok(store)
    }

    /// Moves the entries of a store made before the log had files (they were in the sled tree
    /// [`SLED_LOG_TREE`]) into the files, which `open` found empty. The tree goes only once the
    /// files hold every entry durably; a crash before that leaves the tree whole, and the next
    /// start begins the move again.
    async fn move_entries_out_of_sled(&self) -> Result<(), StorageError<NodeId>> {
        let Some(tree) = self.state.existing_tree(SLED_LOG_TREE).map_err(read_err)? else {
            return Ok(());
        };
        let purged: Option<LogId> = get_meta(&self.meta, PURGED)?;
        let mut entries: Vec<(u64, Vec<u8>)> = tree
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(read_err)?;
                let index: [u8; 8] = k.as_ref().try_into().map_err(read_err)?;
                Ok((u64::from_be_bytes(index), v.to_vec()))
            })
            .collect::<Result<_, StorageError<NodeId>>>()?;
        // The tree's purges removed entries in the same transaction as the mark moved, so
        // nothing should be at or below it; were anything, openraft must not see it.
        entries.retain(|(index, _)| purged.is_none_or(|p| *index > p.index));
        self.append_encoded_now(&entries)?;
        if !entries.is_empty() {
            tracing::info!(
                "moved {} Raft log entries from the sled store to {}",
                entries.len(),
                self.state.dir().join(LOG_DIR).display()
            );
        }
        self.state.drop_tree(SLED_LOG_TREE).map_err(write_err)?;
        self.state.make_durable().await.map_err(write_err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogFiles> {
        // A panic while the lock was held left the files as the last completed call made them.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the index of the log's last entry in `last_appended`, from now on: a follower
    /// holding a read lease waits to have applied it (`read_leases.rs`).
    pub async fn publishing_last_appended(
        mut self,
        last_appended: super::LastAppended,
    ) -> Result<Self, StorageError<NodeId>> {
        let last = self.get_log_state().await?.last_log_id;
        last_appended.set(last.map_or(0, |l| l.index));
        self.last_appended = last_appended;
        Ok(self)
    }

    /// What this log held when the node started: read before openraft opens it.
    pub async fn restored(&mut self, me: NodeId) -> Result<Restored, StorageError<NodeId>> {
        let state = self.get_log_state().await?;
        let vote = self.read_vote().await?;
        let committed = self.read_committed().await?;
        Ok(Restored {
            last_index: state.last_log_id.map(|l| l.index),
            committed_index: committed.map(|l| l.index),
            led_term: vote
                .filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(me))
                .map(|v| v.leader_id().term),
        })
    }

    /// The log's purge mark and last entry, read now (the last entry may not be durable yet).
    pub fn log_state_now(&self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        // The lock first: a purge moves the mark, then removes entries under the lock.
        let files = self.lock();
        let last_purged: Option<LogId> = get_meta(&self.meta, PURGED)?;
        let last = match files.last_index() {
            Some(index) => Some(read_entry(&files, index)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    /// Appends `entries` and syncs them before it returns: for offline tools (recovery), not
    /// for openraft, whose appends go through the syncer.
    pub(super) fn append_now(
        &self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<(), StorageError<NodeId>> {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, encode(e)))
            .collect();
        self.append_encoded_now(&encoded)
    }

    /// [`LogStore::append_now`] of entries already encoded.
    fn append_encoded_now(&self, encoded: &[(u64, Vec<u8>)]) -> Result<(), StorageError<NodeId>> {
        let files = self.lock().append(encoded).map_err(write_err)?;
        files
            .iter()
            .try_for_each(|f| f.sync_data())
            .map_err(write_err)
    }

    async fn sync_meta(&self) -> Result<(), StorageError<NodeId>> {
        self.state.make_durable().await.map_err(write_err)
    }

    /// Waits for the appends handed to the syncer, so that none is reported after a truncate
    /// or purge that follows it.
    async fn drain(&self) -> Result<(), StorageError<NodeId>> {
        self.syncer.drain().await.map_err(write_err)
    }
}

/// The entry at `index`, which the log holds.
fn read_entry(files: &LogFiles, index: u64) -> Result<Entry<TypeConfig>, StorageError<NodeId>> {
    let bytes = files
        .read(index)
        .map_err(read_err)?
        .ok_or_else(|| read_err(format!("the Raft log does not hold entry {index}")))?;
    decode(&bytes).map_err(read_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let files = self.lock();
        let (Some(first), Some(last)) = (files.first_index(), files.last_index()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_sub(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        (start..=end).map(|i| read_entry(&files, i)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state_now()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.meta
            .insert(VOTE, encode(vote))
            .map_err(|e| StorageIOError::write_vote(&io_err(e)))?;
        self.sync_meta().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        get_meta(&self.meta, VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not synced: openraft re-learns the commit index from the leader after a crash.
        self.meta
            .insert(COMMITTED, encode(&committed))
            .map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(get_meta::<Option<LogId>>(&self.meta, COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, encode(&e)))
            .collect();
        let last = entries.last().map(|(index, _)| *index);
        let files = self.lock().append(&entries).map_err(write_err)?;
        // Acknowledged (and published for read leases) by the syncer, once on disk.
        self.syncer.flush(
            files,
            last,
            self.last_appended.clone(),
            Box::new(move |synced| callback.log_io_completed(synced)),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.drain().await?;
        self.lock().truncate(log_id.index).map_err(write_err)?;
        self.last_appended
            .set(log_id.index.saturating_sub(1).min(self.last_appended.get()));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.drain().await?;
        // The mark first, durably, together with the state it rests on (the snapshot that
        // covers the purged entries was built from it): after a crash the files may still
        // hold purged entries, which open drops, but never miss one the mark does not cover.
        self.meta
            .insert(PURGED, encode(&log_id))
            .map_err(write_err)?;
        self.sync_meta().await?;
        self.lock().purge(log_id.index).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Blank,
        }
    }

    /// The indexes a store reopened from `dir` holds, and its purge mark.
    async fn reopened(dir: &std::path::Path) -> (Vec<u64>, Option<u64>) {
        let mut store = LogStore::open(&State::open(dir).unwrap()).await.unwrap();
        let indexes = store
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        let purged = store.get_log_state().await.unwrap().last_purged_log_id;
        (indexes, purged.map(|l| l.index))
    }

    #[tokio::test]
    async fn truncate_and_purge_remove_exactly_their_ranges() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = State::open(dir.path()).unwrap();
            let mut store = LogStore::open(&state).await.unwrap();
            store
                .lock()
                .append(&(1..=20).map(|i| (i, encode(&blank(i)))).collect::<Vec<_>>())
                .unwrap();
            store.truncate(log_id(15)).await.unwrap();
            store.purge(log_id(4)).await.unwrap();
            let got = store.try_get_log_entries(3..=6).await.unwrap();
            assert_eq!(
                got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                [5, 6]
            );
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_log_id, Some(log_id(14)));
        }
        assert_eq!(reopened(dir.path()).await, ((5..=14).collect(), Some(4)));
    }

    /// A store made before the log had files kept its entries in a sled tree: they move to
    /// files, in order, and the tree goes.
    #[tokio::test]
    async fn entries_in_the_old_sled_tree_move_to_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = State::open(dir.path()).unwrap();
            let tree = state.tree(SLED_LOG_TREE).unwrap();
            for i in 3..=40u64 {
                tree.insert(i.to_be_bytes(), encode(&blank(i))).unwrap();
            }
            state
                .tree("raft_meta")
                .unwrap()
                .insert(PURGED, encode(&log_id(2)))
                .unwrap();
            state.make_durable().await.unwrap();
        }
        assert_eq!(reopened(dir.path()).await, ((3..=40).collect(), Some(2)));
        let state = State::open(dir.path()).unwrap();
        assert!(state.existing_tree(SLED_LOG_TREE).unwrap().is_none());
    }

    /// A move that a crash interrupted (files half written, the tree still whole) starts over.
    #[tokio::test]
    async fn a_move_the_crash_interrupted_starts_over_from_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = State::open(dir.path()).unwrap();
            let tree = state.tree(SLED_LOG_TREE).unwrap();
            for i in 0..=9u64 {
                tree.insert(i.to_be_bytes(), encode(&blank(i))).unwrap();
            }
            state.make_durable().await.unwrap();
            let mut partial = LogFiles::open(&dir.path().join(LOG_DIR), None).unwrap();
            partial
                .append(&(0..=3).map(|i| (i, encode(&blank(i)))).collect::<Vec<_>>())
                .unwrap();
            // And a file that open would refuse as damaged, had it to read it.
            let junk = dir.path().join(LOG_DIR).join(format!("{:020}.log", 4));
            std::fs::write(junk, vec![b'x'; 100]).unwrap();
        }
        assert_eq!(reopened(dir.path()).await, ((0..=9).collect(), None));
    }

    /// An append is reported flushed only after the syncer ran, and its index is published
    /// for read leases then.
    #[tokio::test]
    async fn an_append_is_published_once_it_is_reported_durable() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let published = crate::raft::LastAppended::default();
        let mut store = LogStore::open(&state)
            .await
            .unwrap()
            .publishing_last_appended(published.clone())
            .await
            .unwrap();
        let files = store
            .lock()
            .append(&[(1, encode(&blank(1))), (2, encode(&blank(2)))]);
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.syncer.flush(
            files.unwrap(),
            Some(2),
            published.clone(),
            Box::new(move |synced| {
                let _ = tx.send(synced);
            }),
        );
        rx.await.unwrap().unwrap();
        assert_eq!(published.get(), 2);
        store.truncate(log_id(2)).await.unwrap();
        assert_eq!(
            published.get(),
            1,
            "a truncate takes the published end back"
        );
    }
}
