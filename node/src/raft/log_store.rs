//! The Raft log and vote in sled.

use super::{LogId, NodeId, TypeConfig, decode, encode, io_err};
use crate::state::State;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, StorageError, StorageIOError, Vote};
use sled::Transactional;
use std::fmt::Debug;
use std::ops::RangeBounds;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"last_purged";

/// The log: entries keyed by big-endian index in tree `raft_log`; vote, committed and purge
/// marks in `raft_meta`.
#[derive(Debug, Clone)]
pub struct LogStore {
    state: State,
    log: sled::Tree,
    meta: sled::Tree,
    /// Where the log's end is published for read leases, before an append is acknowledged.
    last_appended: super::LastAppended,
    /// Test failpoint: truncate and purge fail after staging this many removals, as a crash
    /// in the middle would stop them.
    #[cfg(test)]
    fail_after_removals: Option<usize>,
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

impl LogStore {
    /// The log of the node whose state is `state` (same sled `Db`).
    pub fn open(state: &State) -> Result<Self, crate::state::StateError> {
        Ok(LogStore {
            state: state.clone(),
            log: state.tree("raft_log")?,
            meta: state.tree("raft_meta")?,
            last_appended: Default::default(),
            #[cfg(test)]
            fail_after_removals: None,
        })
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

    /// The log's purge mark and last entry, read now.
    pub fn log_state_now(&self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId> = self.get_meta(PURGED)?;
        let last = match self.log.last().map_err(read_err)? {
            Some((_, v)) => Some(decode::<Entry<TypeConfig>>(&v).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    /// One batch removing `keys`.
    fn removal_batch(&self, keys: Vec<sled::IVec>) -> Result<sled::Batch, StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for (n, k) in keys.into_iter().enumerate() {
            self.failpoint(n)?;
            batch.remove(k);
        }
        Ok(batch)
    }

    /// The test failpoint, checked before the `n`th removal is staged (see the field).
    fn failpoint(&self, _n: usize) -> Result<(), StorageError<NodeId>> {
        #[cfg(test)]
        if self.fail_after_removals == Some(_n) {
            return Err(write_err(
                "failpoint: stopped in the middle of the removals",
            ));
        }
        Ok(())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn sync(&self) -> Result<(), StorageError<NodeId>> {
        self.state.make_durable().await.map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.log.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(read_err)?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&k);
            if !range.contains(&u64::from_be_bytes(b)) {
                break;
            }
            out.push(decode(&v).map_err(read_err)?);
        }
        Ok(out)
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
        self.sync().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
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
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
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
        let mut entries: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, encode(&e)))
            .collect();
        let last = entries.last().map(|(index, _)| *index);
        if entries.len() == 1 {
            // One entry (the leader's group commit proposes one at a time) needs no batch:
            // a sled batch seals an I/O buffer of its own, which sled writes and waits for
            // with sync_file_range before our fdatasync, one more wait on every append.
            let (index, entry) = entries.pop().expect("one entry");
            self.log
                .insert(index.to_be_bytes(), entry)
                .map_err(write_err)?;
        } else {
            // Several at once (a follower catching up): all or none, so a crash cannot leave a
            // hole in the log.
            let mut batch = sled::Batch::default();
            for (index, entry) in entries {
                batch.insert(&index.to_be_bytes(), entry);
            }
            self.log.apply_batch(batch).map_err(write_err)?;
        }
        // Acknowledge only once the entries are on disk.
        let synced = self.state.make_durable().await.map_err(io_err);
        if let (Some(last), Ok(())) = (last, &synced) {
            self.last_appended.set(last);
        }
        callback.log_io_completed(synced);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let keys: Vec<_> = self
            .log
            .range(log_id.index.to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(write_err)?;
        // One batch: a crash in the middle must not leave a hole with entries after it.
        let batch = self.removal_batch(keys)?;
        self.log.apply_batch(batch).map_err(write_err)?;
        self.last_appended
            .set(log_id.index.saturating_sub(1).min(self.last_appended.get()));
        self.sync().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let keys: Vec<_> = self
            .log
            .range(..=log_id.index.to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(write_err)?;
        // The removals and the purge mark in one transaction (two trees): after a crash the
        // mark always names the entry just before the first one left.
        let batch = self.removal_batch(keys)?;
        let mark = encode(&log_id);
        (&self.log, &self.meta)
            .transaction(|(log, meta)| {
                log.apply_batch(&batch)?;
                meta.insert(PURGED, mark.as_slice())?;
                Ok::<(), sled::transaction::ConflictableTransactionError>(())
            })
            .map_err(|e| write_err(format!("{e:?}")))?;
        self.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// A store in `dir` holding entries `1..=20`, with the failpoint armed after 3 removals.
    fn store_with_twenty_entries(dir: &std::path::Path) -> LogStore {
        let state = State::open(dir).unwrap();
        let mut store = LogStore::open(&state).unwrap();
        for i in 1..=20 {
            let e = Entry::<TypeConfig> {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            };
            store.log.insert(i.to_be_bytes(), encode(&e)).unwrap();
        }
        store.fail_after_removals = Some(3);
        store
    }

    /// What a restart finds: the log's indexes and the purge mark, after sled wrote out all
    /// it had (the worst case for a crash at the failpoint).
    async fn after_crash(store: LogStore, dir: &std::path::Path) -> (Vec<u64>, Option<u64>) {
        store.state.make_durable().await.unwrap();
        drop(store);
        let mut store = LogStore::open(&State::open(dir).unwrap()).unwrap();
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
    async fn a_truncate_stopped_midway_leaves_the_log_whole_or_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_twenty_entries(dir.path());
        assert!(store.truncate(log_id(10)).await.is_err(), "failpoint fired");
        let (indexes, _) = after_crash(store, dir.path()).await;
        assert!(
            indexes == (1..=20).collect::<Vec<_>>() || indexes == (1..=9).collect::<Vec<_>>(),
            "a truncate stopped midway left a hole: {indexes:?}"
        );
    }

    #[tokio::test]
    async fn a_purge_stopped_midway_leaves_the_log_and_its_mark_agreeing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_twenty_entries(dir.path());
        assert!(store.purge(log_id(10)).await.is_err(), "failpoint fired");
        let (indexes, purged) = after_crash(store, dir.path()).await;
        assert!(
            (purged, indexes.first()) == (None, Some(&1))
                || (purged, indexes.first()) == (Some(10), Some(&11)),
            "a purge stopped midway left the mark at {purged:?} and the log at {indexes:?}"
        );
        assert_eq!(indexes.last(), Some(&20));
    }

    #[tokio::test]
    async fn truncate_and_purge_remove_exactly_their_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_twenty_entries(dir.path());
        store.fail_after_removals = None;
        store.truncate(log_id(15)).await.unwrap();
        store.purge(log_id(4)).await.unwrap();
        let (indexes, purged) = after_crash(store, dir.path()).await;
        assert_eq!(indexes, (5..=14).collect::<Vec<_>>());
        assert_eq!(purged, Some(4));
    }
}
