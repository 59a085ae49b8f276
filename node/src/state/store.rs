//! The sled database behind the state machine, and how it is made durable.

use super::model::ClusterMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A failure of the storage itself (not of a command, see `Outcome`).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// sled failed.
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not decode: the data dir is damaged or from an incompatible version.
    #[error(
        "state store: record in tree '{tree}' does not decode ({reason}); the data dir is damaged"
    )]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The fsync after a write failed.
    #[error("state store: cannot make writes durable: {0}")]
    Io(#[from] std::io::Error),
}

/// The applied state: one sled `Db`, opened once per process.
#[derive(Clone)]
pub struct State {
    pub(super) db: sled::Db,
    dir: PathBuf,
    pub(super) keys: sled::Tree,
    pub(super) policies: sled::Tree,
    pub(super) identities: sled::Tree,
    pub(super) enclaves: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) requests: sled::Tree,
    pub(super) request_log: sled::Tree,
    /// The admin identity, once read (it never changes after `Init`).
    pub(super) admin_cache: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "State({})", self.dir.display())
    }
}

pub(super) const META_APPLIED: &[u8] = b"applied";
pub(super) const META_CLUSTER: &[u8] = b"cluster";
/// Where the signed membership is kept in `meta`.
pub const META_MEMBERSHIP: &[u8] = b"membership_sig";

impl State {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let tree = |name: &str| db.open_tree(name);
        Ok(State {
            keys: tree("keys")?,
            policies: tree("policies")?,
            identities: tree("identities")?,
            enclaves: tree("enclaves")?,
            meta: tree("meta")?,
            requests: tree("requests")?,
            request_log: tree("request_log")?,
            admin_cache: Default::default(),
            dir: dir.to_owned(),
            db,
        })
    }

    /// Makes every applied write durable. sled's flush ends in `sync_file_range`, which is not
    /// an fsync on Linux, so the database file is fdatasync'ed as well (STACK.md, sled rule 1).
    pub async fn make_durable(&self) -> Result<(), StateError> {
        self.db.flush_async().await?;
        let file = self.dir.join("db");
        tokio::task::spawn_blocking(move || std::fs::File::open(file)?.sync_data())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(())
    }

    /// The index of the last applied command (0 before the first).
    pub fn applied_index(&self) -> u64 {
        match self.meta.get(META_APPLIED) {
            Ok(Some(v)) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                u64::from_be_bytes(b)
            }
            _ => 0,
        }
    }

    /// Whether `spki` belongs to a removed member.
    pub fn is_tombstoned(&self, spki: &str) -> bool {
        self.meta.contains_key(tombstone_key(spki)).unwrap_or(true)
    }

    /// The membership as last signed by a leader.
    pub fn signed_membership(&self) -> Result<Option<super::model::SignedMembership>, StateError> {
        get(&self.meta, "meta", META_MEMBERSHIP)
    }

    /// Which seal each node last unsealed with.
    pub fn seal_uses(&self) -> Result<Vec<(u64, String)>, StateError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(b"sealuse/") {
            let (k, v) = kv?;
            if k.len() == 8 + 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[8..]);
                out.push((
                    u64::from_be_bytes(b),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            }
        }
        Ok(out)
    }

    /// The cluster facts, once `Init` has been applied.
    pub fn cluster_meta(&self) -> Result<Option<ClusterMeta>, StateError> {
        get(&self.meta, "meta", META_CLUSTER)
    }
}

/// Where a removed member's SPKI is kept in `meta`.
pub(super) fn tombstone_key(spki: &str) -> Vec<u8> {
    format!("tombstone/{spki}").into_bytes()
}

/// Where the seal a node last unsealed with is kept in `meta`.
pub(super) fn seal_use_key(node_id: u64) -> Vec<u8> {
    let mut k = b"sealuse/".to_vec();
    k.extend_from_slice(&node_id.to_be_bytes());
    k
}

/// The record key of a policy or identity: `<enclave>\0<name>` (what metadata MACs cover).
pub fn scoped_key(enclave: &str, name: &str) -> Vec<u8> {
    scoped(enclave, name)
}

/// `<enclave>\0<name>`: NUL never appears in valid names, so keys of one enclave sort together
/// and a prefix scan over `<enclave>\0` sees exactly that enclave.
pub(super) fn scoped(enclave: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(enclave.len() + 1 + name.len());
    k.extend_from_slice(enclave.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Encodes a record as the trees store it (MessagePack with field names).
pub fn encode_record<T: Serialize>(v: &T) -> Vec<u8> {
    encode(v)
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain structs always encode; a failure would be a bug.
    rmp_serde::to_vec_named(v).expect("state records always encode")
}

pub(super) fn decode<T: DeserializeOwned>(tree: &'static str, v: &[u8]) -> Result<T, StateError> {
    rmp_serde::from_slice(v).map_err(|e| StateError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

pub(super) fn get<T: DeserializeOwned>(
    t: &sled::Tree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    match t.get(key)? {
        Some(v) => Ok(Some(decode(name, &v)?)),
        None => Ok(None),
    }
}
