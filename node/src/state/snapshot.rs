//! Whole-state dumps for Raft snapshots, and installing one.
//!
//! A dump is every data tree, MessagePack-encoded. Key records in it are sealed already, so a
//! snapshot file is useless without the root key. Installing one is not atomic in sled (trees
//! are cleared and refilled), so a marker in `meta` brackets it: a node that crashes in the
//! middle finds the marker at start and refuses to serve diverged state.

use super::store::{State, StateError};
use serde::{Deserialize, Serialize};

/// The trees a snapshot carries.
const DATA_TREES: [&str; 7] = [
    "keys",
    "policies",
    "identities",
    "enclaves",
    "meta",
    "requests",
    "request_log",
];

const META_INSTALLING: &[u8] = b"snapshot_installing";

/// One tree of a dump: its name and its raw records.
pub type DumpTree = (String, Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>);

#[derive(Serialize, Deserialize)]
struct Dump {
    trees: Vec<DumpTree>,
}

impl State {
    fn data_tree(&self, name: &str) -> &sled::Tree {
        match name {
            "keys" => &self.keys,
            "policies" => &self.policies,
            "identities" => &self.identities,
            "enclaves" => &self.enclaves,
            "meta" => &self.meta,
            "requests" => &self.requests,
            _ => &self.request_log,
        }
    }

    /// Every data tree as one blob. The caller must not apply concurrently (the Raft state
    /// machine calls this between applies), so the view is consistent.
    pub fn dump(&self) -> Result<Vec<u8>, StateError> {
        let mut trees = Vec::with_capacity(DATA_TREES.len());
        for name in DATA_TREES {
            super::failpoint::hit("dump: tree")?;
            let mut items = Vec::new();
            for kv in self.data_tree(name).iter() {
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

    /// Replaces the whole state with a dump, durably.
    pub async fn load(&self, blob: &[u8]) -> Result<(), StateError> {
        let dump: Dump = rmp_serde::from_slice(blob).map_err(|e| StateError::Corrupt {
            tree: "snapshot",
            reason: e.to_string(),
        })?;
        for (name, _) in &dump.trees {
            if !DATA_TREES.contains(&name.as_str()) {
                return Err(StateError::Corrupt {
                    tree: "snapshot",
                    reason: format!("unknown tree '{name}'"),
                });
            }
        }
        self.meta.insert(META_INSTALLING, &[1u8])?;
        self.make_durable().await?;
        super::failpoint::hit("install: marked")?;
        for name in DATA_TREES {
            self.data_tree(name).clear()?;
            super::failpoint::hit("install: cleared")?;
        }
        for (name, items) in dump.trees {
            let tree = self.data_tree(&name);
            let mut batch = sled::Batch::default();
            for (k, v) in items {
                batch.insert(k.into_vec(), v.into_vec());
            }
            tree.apply_batch(batch)?;
            super::failpoint::hit("install: filled")?;
        }
        self.meta.remove(META_INSTALLING)?;
        super::failpoint::hit("install: unmarked")?;
        self.make_durable().await
    }

    /// The trees of a dump, for a restore that replays them through the log.
    pub fn parse_dump(blob: &[u8]) -> Result<Vec<DumpTree>, StateError> {
        let dump: Dump = rmp_serde::from_slice(blob).map_err(|e| StateError::Corrupt {
            tree: "snapshot",
            reason: e.to_string(),
        })?;
        Ok(dump.trees)
    }

    /// Whether any enclave holds a key.
    pub fn holds_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether a snapshot install was interrupted: the state may be half old, half new.
    pub fn install_interrupted(&self) -> Result<bool, StateError> {
        Ok(self.meta.contains_key(META_INSTALLING)?)
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
