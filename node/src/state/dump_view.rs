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
//! back the value they replace, so this costs no read), `record_applied` and the index rebuild.
//! Those run on the Raft state machine's worker, which is also where a dump begins. `apply`
//! writes a run of key creates and deletes without a transaction and without keeping anything
//! (`apply/journal.rs`), but only while no dump runs, which that worker alone can know stays so.
//! A snapshot install clears whole trees, so it waits for a running dump to end; the sweep of
//! expired request records at start, which runs beside Raft, removes records only while no dump
//! runs and keeps one from beginning meanwhile ([`DumpView::without_dump`]).
//!
//! What is kept is bounded by what the applies change while one dump is written: at some 7,000
//! creates a second and a dump of two seconds, a few tens of thousands of small records. A
//! forced enclave delete or a restore chunk applied meanwhile keeps every record it replaces.

use super::failpoint;
use super::store::{State, StateError};
use sled::IVec;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::{Seek, Write};
use std::ops::Bound;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The pre-images of one dump.
#[derive(Debug, Default)]
struct Preimages {
    /// Keyed by the tree's number in [`super::snapshot::DATA_TREES`] followed by the record's
    /// key.
    kept: BTreeMap<Vec<u8>, Option<IVec>>,
    /// How many of them each tree has: most dumps see changes to a few `meta` records only, and
    /// a tree with none is read at sled's pace.
    per_tree: [usize; super::snapshot::DATA_TREES.len()],
}

/// The pre-images of the dump that runs, if one runs (at most one at a time).
#[derive(Debug, Default)]
pub(super) struct DumpView {
    running: Mutex<Option<Preimages>>,
    ended: Condvar,
    /// Held by [`DumpView::begin`], and by a writer that keeps no pre-images for as long as it
    /// writes, so that no dump begins under such a writer.
    unkept_writes: Mutex<()>,
}

/// The number of data tree `tree`: its place in [`super::snapshot::DATA_TREES`].
pub(super) fn tree_number(tree: &str) -> u8 {
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

    /// Waits, holding `running`, until no dump runs.
    fn idle(&self) -> MutexGuard<'_, Option<Preimages>> {
        let mut running = self.lock();
        while running.is_some() {
            running = self.ended.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        running
    }

    /// Starts keeping pre-images for a new dump, once any dump that runs has ended.
    fn begin(&self) {
        let _no_unkept_writes = self.unkept_writes.lock().unwrap_or_else(|e| e.into_inner());
        *self.idle() = Some(Preimages::default());
    }

    fn end(&self) {
        *self.lock() = None;
        self.ended.notify_all();
    }

    /// Whether a dump runs. Only the state machine's worker, where dumps begin, may rely on the
    /// answer staying true until it next begins one.
    pub(super) fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Waits until no dump runs. The caller must write on the state machine's worker, where
    /// dumps begin, so that none begins before it writes.
    pub(super) fn wait_idle(&self) {
        drop(self.idle());
    }

    /// Runs `write`, which keeps no pre-images, once no dump runs, and keeps a dump from
    /// beginning until it returns: for a writer beside the state machine's worker.
    pub(super) fn without_dump<R>(&self, write: impl FnOnce() -> R) -> R {
        let _no_dump_begins = self.unkept_writes.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.idle());
        write()
    }

    /// Before record `key` of data tree `tree` changes: `old` is its value now, which is kept
    /// if a dump runs and nothing was kept for the record yet.
    pub(super) fn keep(&self, tree: &str, key: &[u8], old: Option<IVec>) {
        if let Some(p) = self.lock().as_mut() {
            let n = tree_number(tree);
            if let Entry::Vacant(first) = p.kept.entry(composite(n, key)) {
                first.insert(old);
                p.per_tree[usize::from(n)] += 1;
            }
        }
    }

    /// [`DumpView::keep`] for a writer that does not know the value it replaces: reads it
    /// from `tree` (named `name`) if a dump runs. Only the state machine's worker calls this:
    /// no dump begins between the look and the read, and no other writer changes the record.
    /// The read is made without the lock, as `keep` takes the lock under sled's.
    pub(super) fn keep_current(
        &self,
        name: &str,
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<(), StateError> {
        if self.lock().is_some() {
            self.keep(name, key, tree.get(key)?);
        }
        Ok(())
    }

    /// For the dump's iterator, which has just read record `key` of tree `tree` and, before it,
    /// `after` (`None`: none yet): the pre-images kept so far between the two (records deleted
    /// since the dump began, in order), and the one kept for `key`, if any. With `key` `None`,
    /// those after `after` to the end of the tree.
    fn kept_around(&self, tree: u8, after: Option<&[u8]>, key: Option<&[u8]>) -> Kept {
        let running = self.lock();
        let Some(p) = running
            .as_ref()
            .filter(|p| p.per_tree[usize::from(tree)] > 0)
        else {
            return Kept::default();
        };
        let low = match after {
            Some(a) => Bound::Excluded(composite(tree, a)),
            None => Bound::Included(vec![tree]),
        };
        let this = key.map(|k| composite(tree, k));
        let high = match &this {
            Some(k) => Bound::Excluded(k.clone()),
            None => match tree.checked_add(1) {
                Some(next) => Bound::Excluded(vec![next]),
                None => Bound::Unbounded,
            },
        };
        Kept {
            deleted: p
                .kept
                .range((low, high))
                .filter_map(|(k, v)| Some((k[1..].to_vec(), v.clone()?)))
                .collect(),
            this: this.and_then(|k| p.kept.get(&k).cloned()),
        }
    }
}

/// What [`DumpView::kept_around`] found.
#[derive(Default)]
struct Kept {
    /// Records that existed when the dump began and are gone from where the iterator read.
    deleted: Vec<(Vec<u8>, IVec)>,
    /// The pre-image of the record the iterator read: `Some(None)` if it did not exist then.
    this: Option<Option<IVec>>,
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
                let kept = view.kept_around(number, after.as_deref(), Some(&key));
                for (gone, was) in kept.deleted {
                    dump.record(&gone, &was)?;
                }
                match kept.this {
                    None => dump.record(&key, &now)?,
                    Some(Some(was)) => dump.record(&key, &was)?,
                    // Made after the dump began.
                    Some(None) => {}
                }
                after = Some(key);
                failpoint::hit("dump: record")?;
            }
            for (gone, was) in view.kept_around(number, after.as_deref(), None).deleted {
                dump.record(&gone, &was)?;
            }
        }
        Ok(dump.finish()?)
    }
}

#[cfg(test)]
#[path = "dump_view_tests.rs"]
mod tests;
