//! Moving a store made with sled's older, smaller segments to one made with [`SEGMENT_SIZE`].
//!
//! A store made with 512 KiB segments (sled's default, and what versions before the 16 MiB
//! segments made) writes large pages to files under `blobs/`. sled never syncs them, and when
//! it consolidates a page on its own it can write a blob and reuse the segment that held the
//! old copy: syncing every blob before each acknowledgement narrows that window but cannot
//! close it (the durability test caught one such blob, written by sled between our sync and the
//! acknowledgement). So such a store is copied, tree by tree, into a new store at open.
//!
//! The copy is made beside the store and swapped in by two renames, each step durable before
//! the next, so a crash at any point leaves either the old store or the complete new one:
//!
//! 1. copy into `<state>.migrating`, verify sled's checksum of every tree, sync it;
//! 2. rename `<state>` to `<state>.legacy`;
//! 3. rename `<state>.migrating` to `<state>`;
//! 4. remove `<state>.legacy`.
//!
//! [`finish_interrupted`] reads which step a crash stopped at from which of the three exist.
//! The copy needs as much free space as the store holds; when it fails, the node keeps the old
//! store (whose blobs `make_durable` still syncs) and says why.

use super::failpoint;
use super::store::{
    RAFT_LOG_DIR, SEGMENT_SIZE, StateError, open_when_unlocked, stored_segment_size,
};
use std::path::{Path, PathBuf};

/// How many items are copied per sled batch: large enough to amortise, small enough that a
/// batch of log entries at their largest stays a few MiB.
const COPY_BATCH: usize = 256;

/// The sibling paths a migration of `dir` uses.
struct Paths {
    store: PathBuf,
    migrating: PathBuf,
    legacy: PathBuf,
}

impl Paths {
    fn of(dir: &Path) -> Paths {
        let sibling = |suffix: &str| {
            let mut name = dir.file_name().unwrap_or_default().to_owned();
            name.push(suffix);
            dir.with_file_name(name)
        };
        Paths {
            store: dir.to_owned(),
            migrating: sibling(".migrating"),
            legacy: sibling(".legacy"),
        }
    }
}

/// Brings the store in `dir` to [`SEGMENT_SIZE`] segments, first finishing or undoing a
/// migration that a crash interrupted. A store that already has them, or none yet, is left as
/// it is. A failed copy leaves the old store in place and is logged, not returned: the node
/// still works on it, as before this migration existed.
pub(super) fn migrate_to_current_segments(dir: &Path) -> Result<(), StateError> {
    let paths = Paths::of(dir);
    finish_interrupted(&paths)?;
    let old_size = match stored_segment_size(dir)? {
        Some(size) if size != SEGMENT_SIZE => size,
        _ => return Ok(()),
    };
    let started = std::time::Instant::now();
    let copied = match copy(&paths, old_size) {
        Ok(copied) => copied,
        Err(e) => {
            tracing::error!(
                "could not move the state store in {} from {} KiB to {} MiB sled segments: {e}; \
                 the node keeps the old store, whose blob files are synced before each \
                 acknowledgement but which sled can still leave unsynced for a moment. Free \
                 as much space as the store takes and restart the node to retry",
                dir.display(),
                old_size / 1024,
                SEGMENT_SIZE >> 20
            );
            // What a failed copy left is removed at the next start, too.
            let _ = remove_dir_durably(&paths.migrating);
            return Ok(());
        }
    };
    failpoint::hit("migrate: copied")?;
    rename_durably(&paths.store, &paths.legacy)?;
    failpoint::hit("migrate: old store moved aside")?;
    rename_durably(&paths.migrating, &paths.store)?;
    failpoint::hit("migrate: copy in place")?;
    remove_dir_durably(&paths.legacy)?;
    tracing::info!(
        "moved the state store in {} from {} KiB to {} MiB sled segments: {copied} items in {:?}",
        dir.display(),
        old_size / 1024,
        SEGMENT_SIZE >> 20,
        started.elapsed()
    );
    Ok(())
}

/// Finishes the renames of a migration a crash interrupted, or removes a copy it left
/// unfinished. Step 2 happens only once the copy is complete and synced, so a `.legacy` store
/// proves the `.migrating` one is whole.
fn finish_interrupted(paths: &Paths) -> Result<(), StateError> {
    let (store, migrating, legacy) = (
        paths.store.exists(),
        paths.migrating.exists(),
        paths.legacy.exists(),
    );
    match (store, migrating, legacy) {
        // Between steps 2 and 3.
        (false, true, true) => rename_durably(&paths.migrating, &paths.store)?,
        // Step 2 done and nothing to put in place cannot happen; put the old store back.
        (false, false, true) => rename_durably(&paths.legacy, &paths.store)?,
        // During step 1: the copy may be partial.
        (true, true, false) => remove_dir_durably(&paths.migrating)?,
        _ => {}
    }
    if paths.store.exists() && paths.legacy.exists() {
        // Between steps 3 and 4.
        remove_dir_durably(&paths.legacy)?;
    }
    Ok(())
}

/// Step 1: copies every tree of the store into a new one beside it, checks that both hold the
/// same items, and makes the copy durable. Returns how many items it copied.
fn copy(paths: &Paths, old_size: usize) -> Result<usize, StateError> {
    if paths.migrating.exists() {
        remove_dir_durably(&paths.migrating)?;
    }
    std::fs::create_dir(&paths.migrating)?;
    std::fs::set_permissions(
        &paths.migrating,
        std::fs::metadata(&paths.store)?.permissions(),
    )?;
    let old = open_when_unlocked(
        &sled::Config::new()
            .path(&paths.store)
            .segment_size(old_size),
    )?;
    let new = open_when_unlocked(
        &sled::Config::new()
            .path(&paths.migrating)
            .mode(sled::Mode::LowSpace)
            .segment_size(SEGMENT_SIZE),
    )?;
    let mut copied = 0;
    for name in old.tree_names() {
        let (from, to) = (old.open_tree(&name)?, new.open_tree(&name)?);
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in from.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            in_batch += 1;
            if in_batch == COPY_BATCH {
                to.apply_batch(std::mem::take(&mut batch))?;
                copied += in_batch;
                in_batch = 0;
            }
        }
        to.apply_batch(batch)?;
        copied += in_batch;
        failpoint::hit("migrate: tree copied")?;
    }
    if old.checksum()? != new.checksum()? {
        return Err(std::io::Error::other("the copy's checksum differs from the store's").into());
    }
    new.flush()?;
    drop((old, new));
    copy_raft_log(paths)?;
    sync_tree(&paths.migrating)?;
    crate::dir_sync::sync_parent(&paths.migrating)?;
    Ok(copied)
}

/// Copies the Raft log's files, which live in the store's directory (`RAFT_LOG_DIR`), so that
/// the swap carries them along: a store whose copy once failed may have had its log moved to
/// files since.
fn copy_raft_log(paths: &Paths) -> std::io::Result<()> {
    let from = paths.store.join(RAFT_LOG_DIR);
    if !from.exists() {
        return Ok(());
    }
    let to = paths.migrating.join(RAFT_LOG_DIR);
    std::fs::create_dir(&to)?;
    std::fs::set_permissions(&to, std::fs::metadata(&from)?.permissions())?;
    for entry in std::fs::read_dir(&from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// fsyncs every file under `dir` and every directory in it, itself included.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    crate::dir_sync::sync_dir(dir)
}

fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    crate::dir_sync::sync_parent(to)
}

fn remove_dir_durably(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(dir)?;
    crate::dir_sync::sync_parent(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    /// A store made with 512 KiB segments, holding values large enough to become blob files.
    fn legacy_store(dir: &Path) -> sled::Db {
        let db = sled::Config::new()
            .path(dir)
            .segment_size(512 * 1024)
            .open()
            .unwrap();
        let log = db.open_tree("raft_log").unwrap();
        for i in 0..40u64 {
            log.insert(i.to_be_bytes(), vec![i as u8; 60_000]).unwrap();
        }
        db.open_tree("keys").unwrap().insert(b"k", b"v").unwrap();
        db.insert(b"in the default tree", b"too").unwrap();
        db.flush().unwrap();
        // A log already in files (the store's copy failed once, the log moved since).
        std::fs::create_dir(dir.join(RAFT_LOG_DIR)).unwrap();
        std::fs::write(dir.join(RAFT_LOG_DIR).join("0.log"), b"log file").unwrap();
        db
    }

    /// Every item of every tree but the ones an empty store has (which `State::open` adds).
    type Contents = Vec<(sled::IVec, sled::IVec, sled::IVec)>;

    fn contents(db: &sled::Db) -> Contents {
        let mut out = Vec::new();
        for name in db.tree_names() {
            for item in db.open_tree(&name).unwrap().iter() {
                let (k, v) = item.unwrap();
                out.push((name.clone(), k, v));
            }
        }
        out.sort(); // tree_names comes in no set order
        out
    }

    /// Opens the store in `dir` as a node does, and checks that it was moved whole.
    fn assert_migrated(dir: &Path, before: &Contents) {
        let state = State::open(dir).unwrap();
        assert_eq!(stored_segment_size(dir).unwrap(), Some(SEGMENT_SIZE));
        let paths = Paths::of(dir);
        assert!(!paths.migrating.exists() && !paths.legacy.exists());
        let blobs = std::fs::read_dir(dir.join("blobs")).map(|mut d| d.next().is_some());
        assert!(!blobs.unwrap_or(false), "the new store has blob files");
        assert!(
            contents(&state.db) == *before,
            "the copy lost or changed items"
        );
        let log = std::fs::read(dir.join(RAFT_LOG_DIR).join("0.log"));
        assert_eq!(log.unwrap(), b"log file", "the Raft log's files came along");
        assert_eq!(
            state
                .tree("raft_log")
                .unwrap()
                .get(39u64.to_be_bytes())
                .unwrap()
                .unwrap()
                .len(),
            60_000
        );
    }

    #[test]
    fn a_store_with_older_segments_is_copied_whole_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let before = contents(&legacy_store(&dir));
        assert!(
            dir.join("blobs").read_dir().unwrap().next().is_some(),
            "no blob: the test covers nothing"
        );
        assert_migrated(&dir, &before);
    }

    #[test]
    fn a_crash_after_any_step_leaves_a_store_that_opens_whole() {
        for step in [
            "migrate: copied",
            "migrate: old store moved aside",
            "migrate: copy in place",
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("state");
            let before = contents(&legacy_store(&dir));
            // The process dies at `step`: nothing after it runs.
            failpoint::set(move |point| match point == step {
                true => Err(std::io::Error::other("crash")),
                false => Ok(()),
            });
            let crashed = migrate_to_current_segments(&dir);
            failpoint::clear();
            assert!(crashed.is_err(), "{step}: the failpoint was not reached");
            assert_migrated(&dir, &before);
        }
    }

    #[test]
    fn a_partial_copy_left_by_a_crash_is_discarded_and_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let before = contents(&legacy_store(&dir));
        let partial = Paths::of(&dir).migrating;
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("db"), b"half a copy").unwrap();
        assert_migrated(&dir, &before);
    }

    #[tokio::test]
    async fn a_failed_copy_keeps_the_old_store_and_syncs_its_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let before = contents(&legacy_store(&dir));
        // The copy fails after its first tree, as it would on a full disk.
        failpoint::set(|point| match point {
            "migrate: tree copied" => Err(std::io::Error::other("No space left on device")),
            _ => Ok(()),
        });
        let state = State::open(&dir);
        failpoint::clear();
        let state = state.unwrap();
        assert!(
            !Paths::of(&dir).migrating.exists(),
            "the failed copy was left behind"
        );
        assert_eq!(stored_segment_size(&dir).unwrap(), Some(512 * 1024));
        assert!(contents(&state.db) == before);
        state
            .tree("raft_log")
            .unwrap()
            .insert(b"more", vec![1u8; 60_000])
            .unwrap();
        state.make_durable().await.unwrap();
        let synced = state.synced_blobs();
        for entry in std::fs::read_dir(dir.join("blobs")).unwrap() {
            let entry = entry.unwrap();
            let len = entry.metadata().unwrap().len();
            assert_eq!(
                synced.get(&entry.file_name()),
                Some(&len),
                "{entry:?} not synced"
            );
        }
    }
}
