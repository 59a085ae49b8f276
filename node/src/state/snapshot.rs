//! Whole-state dumps for Raft snapshots, and installing one.
//!
//! A dump is every data tree, MessagePack-encoded and streamed both ways (`dump_format.rs`).
//! Key records in it are sealed already, so a snapshot file is useless without the root key.
//!
//! Installing a dump clears and refills the data trees, which sled cannot do atomically. So
//! the install is bracketed by a record in the `snapshot_install` tree, which holds no state
//! and which the install never clears: it is written and synced before the first tree is
//! touched, and removed only after the whole new state is synced. A node that finds the record
//! at start knows its trees may be half old, half new, and must redo the install before it
//! serves (`raft::recover_snapshot_install` does, from the snapshot file saved first).

use super::dump_format::{DumpItem, DumpWriter, read_dump};
use super::failpoint;
use super::store::{State, StateError};
use crate::obs::Laps;
use std::io::{Read, Seek, Write};

/// The trees a snapshot carries: every tree of the replicated state, and only those (the Raft
/// log and the install record are the node's own). A tree that `State::open` opens belongs
/// here; the test `every_tree_state_opens_is_snapshotted` fails until it is.
pub(super) const DATA_TREES: [&str; 7] = [
    "keys",
    "policies",
    "identities",
    "enclaves",
    "meta",
    "requests",
    "request_log",
];

/// Records per sled batch when a snapshot is installed.
const INSTALL_BATCH: usize = 1024;

/// The tree that records an install in progress; never part of a dump, never cleared.
const INSTALL_TREE: &str = "snapshot_install";
/// Its one record: the id of the snapshot being installed.
const INSTALLING: &[u8] = b"installing";

/// One tree of a dump: its name and its raw records.
pub type DumpTree = (String, Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>);

/// Where an install reads its dump. It reads it twice, a check and then the fill, so it asks
/// for a fresh reader each time.
pub trait DumpSource: Sync {
    /// A reader from the first byte of the dump to its last.
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>>;
}

impl DumpSource for Vec<u8> {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.as_slice()))
    }
}

impl State {
    fn data_tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Writes every data tree to `out` as a dump, one record at a time, and returns `out`
    /// positioned after it: the state as it stands when this is called, whatever is applied
    /// while it writes (`dump_view.rs`).
    pub fn dump_into<W: Write + Seek>(&self, out: W) -> Result<W, StateError> {
        self.begin_dump().write_into(out)
    }

    /// [`State::dump_into`] memory: for tests, and for states known to be small.
    pub fn dump(&self) -> Result<Vec<u8>, StateError> {
        Ok(self
            .dump_into(std::io::Cursor::new(Vec::new()))?
            .into_inner())
    }

    /// Encodes trees as a dump (the inverse of [`State::parse_dump`]).
    pub fn encode_dump(trees: &[DumpTree]) -> Vec<u8> {
        let mut dump = DumpWriter::new(std::io::Cursor::new(Vec::new())).expect("writes to memory");
        for (name, records) in trees {
            dump.tree(name).expect("writes to memory");
            for (k, v) in records {
                dump.record(k, v).expect("writes to memory");
            }
        }
        dump.finish().expect("writes to memory").into_inner()
    }

    /// Reads a dump through without keeping it: whether it is whole, well formed, and holds
    /// only trees of the replicated state.
    pub fn check_dump(dump: &dyn DumpSource) -> Result<(), StateError> {
        read_dump(dump.open()?, |item| match item {
            DumpItem::Tree(name) => known_tree(name).map(|_| ()),
            DumpItem::Record(..) => Ok(()),
        })
    }

    /// Replaces the whole state with a dump, durably, and records `applied` and `marks` as
    /// [`State::record_applied`] does. `install_id` names the snapshot: it is what
    /// [`State::unfinished_install`] returns if this install does not end. The dump is checked
    /// whole first: one that does not decode changes nothing.
    pub async fn install(
        &self,
        dump: &dyn DumpSource,
        applied: u64,
        marks: &[(&[u8], Vec<u8>)],
        install_id: &[u8],
    ) -> Result<(), StateError> {
        // Each step's time goes to the log: an install is rare, and a slow one (a new node's
        // catch-up) is then taken apart from what the node says.
        let mut steps = Laps::started();
        Self::check_dump(dump)?;
        steps.done("checked");
        // Clearing trees keeps no pre-images, so a snapshot being built must end first.
        let view = self.dump_view.clone();
        tokio::task::spawn_blocking(move || view.wait_idle())
            .await
            .map_err(std::io::Error::other)?;
        steps.done("waited for a snapshot build");
        failpoint::hit("install: begin")?;
        let progress = self.db.open_tree(INSTALL_TREE)?;
        progress.insert(INSTALLING, install_id)?;
        self.make_durable().await?;
        steps.done("recorded");
        failpoint::hit("install: recorded")?;
        for name in DATA_TREES {
            self.data_tree(name)?.clear()?;
            failpoint::hit("install: cleared")?;
        }
        steps.done("cleared");
        let records = self.fill(dump)?;
        steps.done("filled");
        self.record_applied(applied, marks)?;
        failpoint::hit("install: marked")?;
        // The whole new state is on disk before the record that vouches for it goes.
        self.make_durable().await?;
        steps.done("synced");
        failpoint::hit("install: synced")?;
        progress.remove(INSTALLING)?;
        self.make_durable().await?;
        steps.done("unrecorded");
        tracing::info!(
            applied,
            records,
            steps = %steps,
            "installed a snapshot into the state"
        );
        Ok(())
    }

    /// Writes a dump's records into the cleared trees, in batches of a bounded size: one batch
    /// of a million keys made a node that caught up by snapshot grow to 8.4 GiB. The fill need
    /// not be atomic, as the install record makes a node that dies in it redo the install.
    /// Returns how many records it wrote.
    fn fill(&self, dump: &dyn DumpSource) -> Result<u64, StateError> {
        let mut records = 0u64;
        let mut filling: Option<(sled::Tree, sled::Batch, usize)> = None;
        let end_tree = |filling: &mut Option<(sled::Tree, sled::Batch, usize)>| {
            if let Some((tree, batch, _)) = filling.take() {
                tree.apply_batch(batch)?;
                failpoint::hit("install: filled")?;
            }
            Ok::<_, StateError>(())
        };
        read_dump(dump.open()?, |item| match item {
            DumpItem::Tree(name) => {
                end_tree(&mut filling)?;
                filling = Some((self.data_tree(known_tree(name)?)?, Default::default(), 0));
                Ok(())
            }
            DumpItem::Record(k, v) => {
                let (tree, batch, len) = filling.as_mut().ok_or_else(record_before_tree)?;
                batch.insert(k, v);
                *len += 1;
                records += 1;
                if *len == INSTALL_BATCH {
                    tree.apply_batch(std::mem::take(batch))?;
                    *len = 0;
                }
                Ok(())
            }
        })?;
        end_tree(&mut filling)?;
        Ok(records)
    }

    /// The id of a snapshot install that did not end (the process died in it), if any: the
    /// data trees may be half old, half new until that snapshot is installed again.
    pub fn unfinished_install(&self) -> Result<Option<Vec<u8>>, StateError> {
        let progress = self.db.open_tree(INSTALL_TREE)?;
        Ok(progress.get(INSTALLING)?.map(|id| id.to_vec()))
    }

    /// The trees of a dump, in memory: for a restore that replays them through the log.
    pub fn parse_dump(blob: &[u8]) -> Result<Vec<DumpTree>, StateError> {
        let mut trees: Vec<DumpTree> = Vec::new();
        read_dump(blob, |item| {
            match item {
                DumpItem::Tree(name) => trees.push((name.to_owned(), Vec::new())),
                DumpItem::Record(k, v) => {
                    let (_, records) = trees.last_mut().ok_or_else(record_before_tree)?;
                    records.push((k.to_vec().into(), v.to_vec().into()));
                }
            }
            Ok(())
        })?;
        Ok(trees)
    }

    /// Whether any enclave holds a key.
    pub fn holds_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// A tree of the same database for other parts of the node (the Raft log's marks live here
    /// too).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        Ok(self.db.open_tree(name)?)
    }

    /// The tree `name`, if the database has one (without making it).
    pub fn existing_tree(&self, name: &str) -> Result<Option<sled::Tree>, StateError> {
        let exists = self.db.tree_names().iter().any(|n| n == name.as_bytes());
        Ok(if exists { Some(self.tree(name)?) } else { None })
    }

    /// Removes the tree `name` and everything in it (not synced).
    pub fn drop_tree(&self, name: &str) -> Result<(), StateError> {
        self.db.drop_tree(name)?;
        Ok(())
    }

    /// The directory the store is in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Writes everything to the file (not synced): what a process killed right now leaves.
    #[cfg(test)]
    pub(crate) fn flush_now(&self) {
        self.db.flush().expect("flush sled");
    }

    /// A `meta` entry written by [`State::apply`]'s marks.
    pub fn meta_get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StateError> {
        Ok(self.meta.get(key)?)
    }
}

/// `name` if it is a tree of the replicated state; a dump naming another is damaged.
fn known_tree(name: &str) -> Result<&'static str, StateError> {
    DATA_TREES
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| StateError::Corrupt {
            tree: "snapshot",
            reason: format!("unknown tree '{name}'"),
        })
}

/// What [`read_dump`] never hands out, but which is an error and not a panic if it did.
fn record_before_tree() -> StateError {
    StateError::Corrupt {
        tree: "snapshot",
        reason: "a record before any tree".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{DATA_TREES, INSTALL_BATCH, State};

    /// A dump larger than one install batch, over a store that held other records, installs
    /// whole: every record of the dump, none of the old ones.
    #[tokio::test]
    async fn a_dump_of_many_batches_installs_whole() {
        let from = tempfile::tempdir().expect("tempdir");
        let source = State::open(from.path()).expect("open");
        let n = INSTALL_BATCH * 2 + 7;
        for i in 0..n {
            source
                .keys
                .insert(format!("default\0k{i}"), &b"sealed"[..])
                .unwrap();
        }
        let blob = source.dump().expect("dump");
        let to = tempfile::tempdir().expect("tempdir");
        let target = State::open(to.path()).expect("open");
        target.keys.insert("default\0stale", &b"old"[..]).unwrap();
        target.install(&blob, 9, &[], b"s1").await.expect("install");
        assert_eq!(target.keys.len(), n);
        assert!(target.keys.get("default\0stale").unwrap().is_none());
        assert_eq!(target.unfinished_install().unwrap(), None);
    }

    #[test]
    fn every_tree_state_opens_is_snapshotted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = State::open(dir.path()).expect("open");
        let mut opened: Vec<String> = state
            .db
            .tree_names()
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .filter(|name| name != "__sled__default")
            // The node's own: empty between applies, so never part of a dump.
            .filter(|name| name != super::super::apply::JOURNAL_TREE)
            .collect();
        opened.sort();
        let mut carried = DATA_TREES.map(String::from).to_vec();
        carried.sort();
        assert_eq!(
            opened, carried,
            "a tree of the replicated state is missing from DATA_TREES, so snapshots drop it"
        );
    }
}
