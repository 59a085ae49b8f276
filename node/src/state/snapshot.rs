//! Whole-state dumps for Raft snapshots, and installing one.
//!
//! A dump is every data tree, MessagePack-encoded. Key records in it are sealed already, so a
//! snapshot file is useless without the root key.
//!
//! Installing a dump clears and refills the data trees, which sled cannot do atomically. So
//! the install is bracketed by a record in the `snapshot_install` tree, which holds no state
//! and which the install never clears: it is written and synced before the first tree is
//! touched, and removed only after the whole new state is synced. A node that finds the record
//! at start knows its trees may be half old, half new, and must redo the install before it
//! serves (`raft::recover_snapshot_install` does, from the snapshot file saved first).

use super::failpoint;
use super::store::{State, StateError};
use serde::{Deserialize, Serialize};

/// The trees a snapshot carries: every tree of the replicated state, and only those (the Raft
/// log and the install record are the node's own). A tree that `State::open` opens belongs
/// here; the test `every_tree_state_opens_is_snapshotted` fails until it is.
const DATA_TREES: [&str; 7] = [
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

#[derive(Serialize, Deserialize)]
struct Dump {
    trees: Vec<DumpTree>,
}

impl State {
    fn data_tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Every data tree as one blob. The caller must not apply concurrently (the Raft state
    /// machine calls this between applies), so the view is consistent.
    pub fn dump(&self) -> Result<Vec<u8>, StateError> {
        let mut trees = Vec::with_capacity(DATA_TREES.len());
        for name in DATA_TREES {
            failpoint::hit("dump: tree")?;
            let mut items = Vec::new();
            for kv in self.data_tree(name)?.iter() {
                let (k, v) = kv?;
                items.push((
                    serde_bytes::ByteBuf::from(k.to_vec()),
                    serde_bytes::ByteBuf::from(v.to_vec()),
                ));
            }
            trees.push((name.to_owned(), items));
        }
        Ok(Self::encode_dump(trees))
    }

    /// Encodes trees as a dump (the inverse of [`State::parse_dump`]).
    pub fn encode_dump(trees: Vec<DumpTree>) -> Vec<u8> {
        rmp_serde::to_vec(&Dump { trees }).expect("dumps always encode")
    }

    /// Replaces the whole state with a dump, durably, and records `applied` and `marks` as
    /// [`State::record_applied`] does. `install_id` names the snapshot: it is what
    /// [`State::unfinished_install`] returns if this install does not end. A dump that does not
    /// decode changes nothing.
    pub async fn install(
        &self,
        blob: &[u8],
        applied: u64,
        marks: &[(&[u8], Vec<u8>)],
        install_id: &[u8],
    ) -> Result<(), StateError> {
        let trees = Self::parse_dump(blob)?;
        if let Some((name, _)) = trees
            .iter()
            .find(|(name, _)| !DATA_TREES.contains(&name.as_str()))
        {
            return Err(StateError::Corrupt {
                tree: "snapshot",
                reason: format!("unknown tree '{name}'"),
            });
        }
        failpoint::hit("install: begin")?;
        let progress = self.db.open_tree(INSTALL_TREE)?;
        progress.insert(INSTALLING, install_id)?;
        self.make_durable().await?;
        failpoint::hit("install: recorded")?;
        for name in DATA_TREES {
            self.data_tree(name)?.clear()?;
            failpoint::hit("install: cleared")?;
        }
        for (name, items) in trees {
            let tree = self.data_tree(&name)?;
            // In batches of a bounded size: one batch of a million keys made a node that
            // caught up by snapshot grow to 8.4 GiB. The install need not be atomic, as the
            // record above makes a node that dies in it redo the install.
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                let mut batch = sled::Batch::default();
                for (k, v) in items.by_ref().take(INSTALL_BATCH) {
                    batch.insert(k.into_vec(), v.into_vec());
                }
                tree.apply_batch(batch)?;
            }
            failpoint::hit("install: filled")?;
        }
        self.record_applied(applied, marks)?;
        failpoint::hit("install: marked")?;
        // The whole new state is on disk before the record that vouches for it goes.
        self.make_durable().await?;
        failpoint::hit("install: synced")?;
        progress.remove(INSTALLING)?;
        self.make_durable().await
    }

    /// The id of a snapshot install that did not end (the process died in it), if any: the
    /// data trees may be half old, half new until that snapshot is installed again.
    pub fn unfinished_install(&self) -> Result<Option<Vec<u8>>, StateError> {
        let progress = self.db.open_tree(INSTALL_TREE)?;
        Ok(progress.get(INSTALLING)?.map(|id| id.to_vec()))
    }

    /// The trees of a dump, for a restore that replays them through the log.
    pub fn parse_dump(blob: &[u8]) -> Result<Vec<DumpTree>, StateError> {
        let dump: Dump = crate::msgpack::from_slice(blob).map_err(|e| StateError::Corrupt {
            tree: "snapshot",
            reason: e.to_string(),
        })?;
        Ok(dump.trees)
    }

    /// Whether any enclave holds a key.
    pub fn holds_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// A tree of the same database for other parts of the node (the Raft log lives here too).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StateError> {
        Ok(self.db.open_tree(name)?)
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
