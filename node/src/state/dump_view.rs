//! A dump of the state as it stood when the dump began, written while applies go on.
//!
//! A snapshot must be a consistent view, and sled has none: an iterator sees writes made after
//! it started. The dump used to be written between two applies, so every apply waited for it,
//! and on a node holding some 600,000 keys each snapshot (every 10,000 entries) stopped applies
//! for about a second, and every linearizable read on the node with them (BENCHMARKS.md, the
//! soak's p99 of 1.15 s).
//!
//! Instead, while a dump runs, every write to a data tree first keeps the record's value from
//! before the dump began: its pre-image (`None` for a record that did not exist then). Only
//! the first write of a record keeps anything, so what is kept is always the value at the
//! start. The dump then reads each tree in order and, for every record that has a pre-image,
//! writes the pre-image instead of what sled holds now; it also writes, in their places in the
//! order, the records that were deleted since. Why that is exact, for a record R:
//! - R unchanged since the start: no pre-image; sled's iterator returns it (it existed the whole
//!   time), with its value from the start.
//! - R changed before the iterator passed it: its pre-image was kept before the change was
//!   made, so it is found when the iterator returns R, or, if R is gone from sled by then,
//!   when the iterator passes R's place.
//! - R changed after the iterator passed it: the iterator read its start value; a pre-image
//!   found now is the same value.
//!
//! The writers that keep pre-images are `apply`'s transaction (sled's insert and remove hand
//! back the value they replace, so this costs no read) and `record_applied`. The bulk writers
//! (a snapshot install clears whole trees; the index rebuild and the sweep of expired request
//! records at start rewrite many) wait for a running dump to end instead: they are rare.

use super::failpoint;
use super::store::{State, StateError};
use sled::IVec;
use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::ops::Bound;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Pre-images, keyed by the tree's number in [`super::snapshot::DATA_TREES`] followed by the
/// record's key.
type Preimages = BTreeMap<Vec<u8>, Option<IVec>>;

/// The pre-images of the dump that runs, if one runs (at most one at a time).
#[derive(Debug, Default)]
pub(super) struct DumpView {
    running: Mutex<Option<Preimages>>,
    ended: Condvar,
}

fn tree_number(tree: &str) -> u8 {
    let n = super::snapshot::DATA_TREES.iter().position(|t| *t == tree);
    // Only the data trees are written through here; the test below checks every name.
    n.expect("a data tree") as u8
}

fn composite(tree: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(tree);
    k.extend_from_slice(key);
    k
}

impl DumpView {
    fn lock(&self) -> MutexGuard<'_, Option<Preimages>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts keeping pre-images for a new dump, once any dump that runs has ended.
    fn begin(&self) {
        let mut running = self.lock();
        while running.is_some() {
            running = self.ended.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running = Some(Preimages::new());
    }

    fn end(&self) {
        *self.lock() = None;
        self.ended.notify_all();
    }

    /// Waits until no dump runs. The caller must be the only writer, so none begins meanwhile.
    pub(super) fn wait_idle(&self) {
        let mut running = self.lock();
        while running.is_some() {
            running = self.ended.wait(running).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Before record `key` of data tree `tree` changes: `old` is its value now, which is kept
    /// if a dump runs and nothing was kept for the record yet.
    pub(super) fn keep(&self, tree: &str, key: &[u8], old: Option<IVec>) {
        if let Some(kept) = self.lock().as_mut() {
            kept.entry(composite(tree_number(tree), key)).or_insert(old);
        }
    }

    /// [`DumpView::keep`] for a writer that does not know the value it replaces: reads it
    /// from `tree` (named `name`) only if a dump runs.
    pub(super) fn keep_current(
        &self,
        name: &str,
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<(), StateError> {
        if let Some(kept) = self.lock().as_mut() {
            let k = composite(tree_number(name), key);
            if let std::collections::btree_map::Entry::Vacant(first) = kept.entry(k) {
                first.insert(tree.get(key)?);
            }
        }
        Ok(())
    }

    /// The pre-images kept so far in tree `tree` between `after` (excluded; `None`: the tree's
    /// start) and `before` (excluded; `None`: the tree's end).
    fn kept_between(
        &self,
        tree: u8,
        after: Option<&[u8]>,
        before: Option<&[u8]>,
    ) -> Vec<(Vec<u8>, Option<IVec>)> {
        let running = self.lock();
        let Some(kept) = running.as_ref().filter(|k| !k.is_empty()) else {
            return Vec::new();
        };
        let low = match after {
            Some(a) => Bound::Excluded(composite(tree, a)),
            None => Bound::Included(vec![tree]),
        };
        let high = match before {
            Some(b) => Bound::Excluded(composite(tree, b)),
            None => match tree.checked_add(1) {
                Some(next) => Bound::Excluded(vec![next]),
                None => Bound::Unbounded,
            },
        };
        kept.range((low, high))
            .map(|(k, v)| (k[1..].to_vec(), v.clone()))
            .collect()
    }

    /// The pre-image kept for record `key` of tree `tree`, if one was.
    fn kept(&self, tree: u8, key: &[u8]) -> Option<Option<IVec>> {
        let running = self.lock();
        let kept = running.as_ref().filter(|k| !k.is_empty())?;
        kept.get(&composite(tree, key)).cloned()
    }
}

/// A dump that has begun: it writes the state as it stood at [`State::begin_dump`], however
/// many applies run meanwhile. Pre-images are kept until it is dropped.
pub struct RunningDump {
    state: State,
}

impl Drop for RunningDump {
    fn drop(&mut self) {
        self.state.dump_view.end();
    }
}

impl State {
    /// Begins a dump of the state as it stands now. The caller must not apply while this
    /// runs (the Raft state machine calls it between two applies); once it returns, applies
    /// may go on while [`RunningDump::write_into`] writes. Waits for a dump that runs to end.
    pub fn begin_dump(&self) -> RunningDump {
        self.dump_view.begin();
        RunningDump {
            state: self.clone(),
        }
    }
}

impl RunningDump {
    /// Writes every data tree to `out`, as it stood when the dump began, one record at a time,
    /// and returns `out` positioned after the dump.
    pub fn write_into<W: Write + Seek>(&self, out: W) -> Result<W, StateError> {
        let view = &self.state.dump_view;
        let mut dump = super::dump_format::DumpWriter::new(out)?;
        for (number, name) in super::snapshot::DATA_TREES.iter().enumerate() {
            let number = number as u8;
            failpoint::hit("dump: tree")?;
            dump.tree(name)?;
            let mut after: Option<IVec> = None;
            for kv in self.state.db.open_tree(name)?.iter() {
                let (key, now) = kv?;
                // Records deleted since the dump began, which sort before this one.
                for (gone, was) in view.kept_between(number, after.as_deref(), Some(&key)) {
                    if let Some(was) = was {
                        dump.record(&gone, &was)?;
                    }
                }
                match view.kept(number, &key) {
                    None => dump.record(&key, &now)?,
                    Some(Some(was)) => dump.record(&key, &was)?,
                    // Made after the dump began.
                    Some(None) => {}
                }
                after = Some(key);
                failpoint::hit("dump: record")?;
            }
            for (gone, was) in view.kept_between(number, after.as_deref(), None) {
                if let Some(was) = was {
                    dump.record(&gone, &was)?;
                }
            }
        }
        Ok(dump.finish()?)
    }
}

#[cfg(test)]
#[path = "dump_view_tests.rs"]
mod tests;
