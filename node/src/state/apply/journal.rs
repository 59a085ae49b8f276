//! Applying a run of key creates and deletes without a sled transaction, all or nothing across
//! a crash all the same, by writing the run's changes to a journal first.
//!
//! Why: every sled 0.34 transaction seals and writes two of sled's I/O buffers
//! (`PageCache::pin_log`), each with a `sync_file_range` that waits, on every node for every
//! applied entry: about a third of the CPU a replicated create costs at 64 connections
//! (`docs/bench/analysis.md`). Plain inserts and removes stay in sled's buffer until its next
//! flush.
//!
//! How: the run's changes, in full (tree, key, and the new value or a removal), go into the
//! journal tree as one record; then they are made as plain inserts and removes, in order; then
//! the record is removed. A journal record found at open is a run a crash cut short, and
//! [`State::finish_journaled_run`] makes its changes again. Why that is exact:
//! - sled numbers every write in the order it is made and, after a process crash, recovers a
//!   prefix of them in that order across all the trees of one `Db` (the contiguity check of its
//!   log's tail; a consolidated page carries only writes numbered below its own). So if any of
//!   the run's changes survived, the record did; and if the record's removal survived, every
//!   change did.
//! - The changes are absolute (a value, or a removal), so making one twice is making it once,
//!   and nothing written after the record's removal can have survived without it, so the redo
//!   never overwrites a later write.
//! - If the record did not survive, no change did: the state is the one before the entry, which
//!   Raft applies again from its log.
//!
//! A power cut is another matter: `sync_file_range` is no fsync, so sled's writes reach the disk
//! in no promised order. That exposure is the one transactions have too, and is bounded the same
//! way: the state is made durable (`make_durable`) before the Raft log drops the entries that
//! produced it.
//!
//! Only runs take this path. Readers see the run's key records appear one at a time, but each
//! is a whole record that stands alone, which is what a reader sees of concurrent creates
//! anyway; the run's other changes are bookkeeping no reader consults (deduplication records,
//! census counters, the applied index). Commands whose records must appear together (a policy
//! and its members, an enclave and its contents) keep sled's transaction, which readers wait
//! for. So does a run while a snapshot dump runs, since the dump needs each change's
//! pre-image kept before the change (`dump_view.rs`), and so does a run too large for one
//! journal record.

use super::super::dump_view::tree_number;
use super::super::failpoint;
use super::super::snapshot::DATA_TREES;
use super::super::store::{LARGEST_VALUE, State, StateError, decode, encode};
use serde_bytes::{ByteBuf, Bytes};

/// The journal's tree: the node's own, never part of a snapshot (a dump is taken between two
/// applies, when the journal is empty).
pub(in crate::state) const JOURNAL_TREE: &str = "apply_journal";

/// The journal's only record: one run is applied at a time.
const RUN: &[u8] = b"run";

/// One change an apply makes: record `key` of data tree `tree` becomes `value`, or is removed.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) tree: &'static str,
    pub(super) key: Vec<u8>,
    pub(super) value: Option<Vec<u8>>,
}

/// The journal record of a run: the log index of its entry (for the message at a redo) and its
/// changes, as (tree name, key, value).
type Record = (u64, Vec<(String, ByteBuf, Option<ByteBuf>)>);

/// The journal record for the changes of a run at `index`, unless it would be larger than a
/// record may be: sled writes a page over its blob threshold to a file of its own, which it
/// never syncs (`store.rs`, `LARGEST_VALUE`).
pub(super) fn record_within_limit(index: u64, changes: &[Change]) -> Option<Vec<u8>> {
    let rows: Vec<(&str, &Bytes, Option<&Bytes>)> = changes
        .iter()
        .map(|c| {
            let value = c.value.as_deref().map(Bytes::new);
            (c.tree, Bytes::new(&c.key), value)
        })
        .collect();
    let record = encode(&(index, rows));
    (record.len() <= LARGEST_VALUE).then_some(record)
}

/// A journal record read back: the log index of its entry and its changes. `Corrupt` when it
/// does not decode, or a change names a tree that is not one of the data trees.
fn parse_record(record: &[u8]) -> Result<(u64, Vec<Change>), StateError> {
    let (index, rows): Record = decode(JOURNAL_TREE, record)?;
    let mut changes = Vec::with_capacity(rows.len());
    for (tree, key, value) in rows {
        let Some(tree) = DATA_TREES.into_iter().find(|t| *t == tree) else {
            return Err(StateError::Corrupt {
                tree: JOURNAL_TREE,
                reason: format!("a change names tree '{tree}', not one of the state's"),
            });
        };
        changes.push(Change {
            tree,
            key: key.into_vec(),
            value: value.map(ByteBuf::into_vec),
        });
    }
    Ok((index, changes))
}

/// A journal record read as the redo at open reads it, then written again as a run writes it
/// (`None` when it would be too large for a record): for the fuzz target `journal_record`.
pub(crate) fn reencode_record(record: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
    let (index, changes) = parse_record(record)?;
    Ok(record_within_limit(index, &changes))
}

impl State {
    /// Makes `changes` as plain writes, journaled as `record` (from [`record_within_limit`]).
    /// The caller has checked that no dump runs: these writes keep no pre-images.
    pub(super) fn write_journaled(
        &self,
        record: Vec<u8>,
        changes: &[Change],
    ) -> Result<(), StateError> {
        let journal = self.tree(JOURNAL_TREE)?;
        journal.insert(RUN, record)?;
        failpoint::hit("apply: journaled")?;
        for change in changes {
            self.make(change.tree, &change.key, change.value.as_deref())?;
            failpoint::hit("apply: changed")?;
        }
        journal.remove(RUN)?;
        failpoint::hit("apply: unjournaled")?;
        Ok(())
    }

    /// Makes again the changes of a run that a crash cut short, if the journal holds one, and
    /// empties the journal: at open, before anything reads the state. Returns the run's log
    /// index. A journal record that does not decode stops the open, as the state may then be
    /// half of one entry.
    pub(in crate::state) fn finish_journaled_run(&self) -> Result<Option<u64>, StateError> {
        let journal = self.tree(JOURNAL_TREE)?;
        let Some(record) = journal.get(RUN)? else {
            return Ok(None);
        };
        let (index, changes) = parse_record(&record)?;
        for change in &changes {
            self.make(change.tree, &change.key, change.value.as_deref())?;
        }
        journal.remove(RUN)?;
        Ok(Some(index))
    }

    /// Sets record `key` of data tree `tree` to `value`, or removes it.
    fn make(&self, tree: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), StateError> {
        let tree = self.data_trees()[usize::from(tree_number(tree))];
        match value {
            Some(v) => tree.insert(key, v)?,
            None => tree.remove(key)?,
        };
        Ok(())
    }

    /// The data trees, in the order of [`DATA_TREES`].
    pub(super) fn data_trees(&self) -> [&sled::Tree; DATA_TREES.len()] {
        [
            &self.keys,
            &self.policies,
            &self.identities,
            &self.enclaves,
            &self.meta,
            &self.requests,
            &self.request_log,
        ]
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
