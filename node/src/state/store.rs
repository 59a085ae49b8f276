//! The sled database behind the state machine, and how it is made durable.

use super::model::ClusterMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
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
    pub(super) dir: PathBuf,
    pub(super) keys: sled::Tree,
    pub(super) policies: sled::Tree,
    pub(super) identities: sled::Tree,
    pub(super) enclaves: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) requests: sled::Tree,
    pub(super) request_log: sled::Tree,
    /// The admin identity, once read (it never changes after `Init`).
    pub(super) admin_cache: std::sync::Arc<std::sync::OnceLock<String>>,
    /// What [`State::make_durable`] has synced besides `db`.
    synced: std::sync::Arc<std::sync::Mutex<SyncedFiles>>,
    /// What a running dump needs of the applies made meanwhile (`dump_view.rs`).
    pub(super) dump_view: std::sync::Arc<super::dump_view::DumpView>,
}

/// sled's segment size for new stores: 16 MiB, the largest sled 0.34 accepts.
///
/// sled writes a page (one tree node, with all its keys and values) whose encoding exceeds
/// `segment_size / 4 - 20` bytes, header of up to 32 bytes included, to its own file under
/// `blobs/` (pagecache/logger.rs `reserve_inner`, blob_io.rs `write_blob`), and never fsyncs
/// that file or `blobs/`. It also makes blobs on its own when it consolidates or relocates a
/// page, and then reuses the segment that held the old copy once the pointer to the blob is
/// written: so even syncing every blob before each acknowledgement would leave a window in
/// which the only copy of an acknowledged entry sits in an unsynced file. The complete fix is
/// that no page can become a blob, which [`LARGEST_PAGE`] proves for this size. The cost: sled
/// allocates its write buffer and grows `db` one 16 MiB segment at a time (an empty store's
/// `db` is 16 MiB, sparse where unwritten).
///
/// sled refuses to open a store with another segment size than it was made with, so `open`
/// copies a store made by an older version (512 KiB, sled's default) into a new one
/// (`migrate.rs`). Should that copy fail, the node keeps the old store: `make_durable` syncs its
/// blob files, and `open` warns.
pub(super) const SEGMENT_SIZE: usize = 16 << 20;

/// The directory inside the store's where the Raft log keeps its files (`raft/log_files.rs`):
/// a copy of the store's directory is a copy of everything the node made durable.
pub const RAFT_LOG_DIR: &str = "raft-log";

/// sled's page cache. Its default, 1 GiB, is most of what a node holding a million keys takes
/// (1.2 GiB RSS); the goal is at most 1 GiB. Reads of keys out of the cache cost a page read
/// from the OS's cache.
const PAGE_CACHE_BYTES: u64 = 512 << 20;

/// How often sled's flusher thread writes out what sled buffered, in milliseconds (sled's
/// default is 500). Runs of key creates are applied without transactions (`apply/journal.rs`),
/// so sled's buffer no longer goes out with every entry but with the flusher: at 500 ms, in
/// bursts of megabytes, and the Raft log's fdatasync on the same disk waited behind them (p99
/// of creates at 64 connections 17–24 → 31–34 ms, side by side). At 20 ms the bursts are small
/// and the p99 is back (17–19 ms). Not for durability: the Raft log makes entries durable, and
/// `make_durable` syncs the state before the log drops them.
const FLUSH_EVERY_MS: u64 = 20;

/// The largest value any tree holds: a Raft log entry (a command of at most
/// `MAX_ENTRY_BYTES`, plus its log id and framing), or a record made from one command.
pub(super) const LARGEST_VALUE: usize = crate::raft::MAX_ENTRY_BYTES + 4096;

/// The largest key: names are at most 80 bytes, ids 8 to 32.
pub(super) const LARGEST_KEY: usize = 1024;

/// The most items one sled page holds. A leaf splits once it holds more than 16 (node.rs
/// `should_split`), checked before every insert, so one writer leaves at most 17; a merge
/// folds a leaf of fewer than 4 into its left sibling (20); and each concurrent writer to the
/// same tree can add one more. Our trees have at most a few writers. Index pages split above
/// 256 children, but hold only keys and page ids.
const ITEMS_PER_PAGE: usize = 32;

/// The largest page sled can be asked to write, with room for sled's per-item framing.
const LARGEST_PAGE: usize = ITEMS_PER_PAGE * (LARGEST_VALUE + LARGEST_KEY + 64);

// sled's blob threshold (pagecache/logger.rs): `segment_size / MINIMUM_ITEMS_PER_SEGMENT (4)
// - SEG_HEADER_LEN (20)`, compared with the page plus a message header of up to 32 bytes.
const _: () = assert!(LARGEST_PAGE + 32 <= SEGMENT_SIZE / 4 - 20);
const _: () = assert!(257 * (LARGEST_KEY + 64) + 32 <= SEGMENT_SIZE / 4 - 20);

/// Opens a sled store, waiting up to 2 s for its file lock. sled releases the lock only when its
/// background threads let go of a store, a moment after its last handle is dropped, so opening
/// a store just closed (the migration closes the old one and opens it again) can find it still
/// locked.
pub(super) fn open_when_unlocked(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The segment size a store in `dir` was made with (from sled's `conf`), if it exists.
pub(super) fn stored_segment_size(dir: &Path) -> Result<Option<usize>, StateError> {
    let conf = match std::fs::read(dir.join("conf")) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // `key: value` lines, then a 4-byte checksum; sled checks the whole file itself.
    let text = String::from_utf8_lossy(&conf[..conf.len().saturating_sub(4)]).into_owned();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok()))
}

/// What [`State::make_durable`] has made durable besides `db`.
#[derive(Default)]
struct SyncedFiles {
    blobs: SyncedEntries,
    dir: SyncedEntries,
}

/// The entries of one directory as last synced: name and, for files, the length synced.
#[derive(Default)]
struct SyncedEntries(HashMap<std::ffi::OsString, u64>);

impl SyncedEntries {
    /// Syncs what changed in `dir` since the last call: each file that is new or grew (when
    /// `files`), and `dir` itself when an entry was added. sled writes a blob once and never
    /// appends, but a length read before the sync is a safe mark either way: a file that grows
    /// after it is synced again next time.
    fn sync(&mut self, dir: &Path, files: bool) -> std::io::Result<()> {
        let listing = match std::fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut now = HashMap::new();
        let mut added = false;
        for entry in listing {
            let entry = entry?;
            let name = entry.file_name();
            let len = if files {
                match gone_is_none(entry.metadata())? {
                    Some(m) => m.len(),
                    None => continue, // removed meanwhile (sled collects old blobs)
                }
            } else {
                0
            };
            if self.0.get(&name) != Some(&len) {
                added |= !self.0.contains_key(&name);
                if files {
                    if let Some(f) = gone_is_none(std::fs::File::open(entry.path()))? {
                        f.sync_data()?;
                    }
                }
            }
            now.insert(name, len);
        }
        if added {
            crate::dir_sync::sync_dir(dir)?;
        }
        self.0 = now;
        Ok(())
    }
}

/// `Ok(None)` for a file that was removed meanwhile.
fn gone_is_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
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
    /// Opens (or creates) the store in `dir`, and makes every file sled made there durable.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        super::reclaim::start();
        super::migrate::migrate_to_current_segments(dir)?;
        let config = Self::sled_config(dir)?;
        if config.segment_size != SEGMENT_SIZE {
            tracing::warn!(
                "the state store in {} still has {} KiB sled segments, as its copy to {} MiB \
                 segments failed (see above): sled moves large pages to files under blobs/, \
                 which are synced before each acknowledgement, but sled can also make them \
                 on its own between our sync and an acknowledgement",
                dir.display(),
                config.segment_size / 1024,
                SEGMENT_SIZE >> 20
            );
        }
        let db = open_when_unlocked(&config)?;
        let tree = |name: &str| db.open_tree(name);
        let state = State {
            keys: tree("keys")?,
            policies: tree("policies")?,
            identities: tree("identities")?,
            enclaves: tree("enclaves")?,
            meta: tree("meta")?,
            requests: tree("requests")?,
            request_log: tree("request_log")?,
            admin_cache: Default::default(),
            synced: Default::default(),
            dump_view: Default::default(),
            dir: dir.to_owned(),
            db,
        };
        // sled writes `conf` without a sync, and makes `db`, `blobs/` and its own snapshot
        // files without syncing the directories that hold them.
        std::fs::File::open(dir.join("conf"))?.sync_all()?;
        crate::dir_sync::sync_parent(dir)?;
        state.sync_files()?;
        if let Some(index) = state.finish_journaled_run()? {
            tracing::info!(
                "finished applying log entry {index}, which the last run of the node left half \
                 written"
            );
        }
        Ok(state)
    }

    /// sled's configuration for the store in `dir`: the segment size it was made with, or
    /// [`SEGMENT_SIZE`] for a new one. Anything that opens the store directly must use it, as
    /// sled refuses to open a store with another segment size.
    pub fn sled_config(dir: &Path) -> Result<sled::Config, StateError> {
        Ok(sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(PAGE_CACHE_BYTES)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .segment_size(stored_segment_size(dir)?.unwrap_or(SEGMENT_SIZE)))
    }

    /// Makes every write so far durable, before it is acknowledged.
    ///
    /// sled's flush ends in `sync_file_range`, which is not an fsync on Linux, so the
    /// database file is fdatasync'ed as well (STACK.md, sled rule 1). A store made with
    /// [`SEGMENT_SIZE`] has no blob files; one made by an older version may, and sled writes
    /// each before the write that makes it returns, so syncing the ones present after the flush
    /// covers every write made before this call.
    pub async fn make_durable(&self) -> Result<(), StateError> {
        self.db.flush_async().await?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            state.sync_files()?;
            crate::test_hooks::disk_image(&state.dir)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(())
    }

    /// fdatasyncs `db`; fsyncs each blob file that is new or grew, and a directory whose
    /// entries changed since the last call.
    fn sync_files(&self) -> std::io::Result<()> {
        std::fs::File::open(self.dir.join("db"))?.sync_data()?;
        // One caller at a time: a second one lists again after the first, so it sees its own
        // writes' files.
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        synced.blobs.sync(&self.dir.join("blobs"), true)?;
        synced.dir.sync(&self.dir, false)
    }

    /// The blob files synced so far, with the length synced.
    #[cfg(test)]
    pub(super) fn synced_blobs(&self) -> HashMap<std::ffi::OsString, u64> {
        self.synced.lock().unwrap().blobs.0.clone()
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
    crate::msgpack::from_slice(v).map_err(|e| StateError::Corrupt {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_files(dir: &Path) -> Vec<(std::ffi::OsString, u64)> {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().len())
            })
            .collect()
    }

    /// Writes the largest values the node stores, in the orders the log and the trees write
    /// them: appends, inserts before existing keys, one batch, and removals (which merge pages).
    async fn write_largest_pages(state: &State) {
        let tree = state.tree("raft_log").unwrap();
        let value = vec![7u8; LARGEST_VALUE];
        for i in 0..64u64 {
            tree.insert(i.to_be_bytes(), value.as_slice()).unwrap();
        }
        for i in (100..164u64).rev() {
            tree.insert(i.to_be_bytes(), value.as_slice()).unwrap();
        }
        let mut batch = sled::Batch::default();
        for i in 200..264u64 {
            batch.insert(&i.to_be_bytes(), value.as_slice());
        }
        tree.apply_batch(batch).unwrap();
        for i in (0..60u64).chain(120..150) {
            tree.remove(i.to_be_bytes()).unwrap();
        }
        state.make_durable().await.unwrap();
    }

    #[tokio::test]
    async fn the_largest_pages_never_become_blob_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        write_largest_pages(&state).await;
        assert_eq!(blob_files(dir.path()), vec![], "sled made blob files");
    }
}
