//! The node's latest Raft snapshot, in one file that only ever moves forward.
//!
//! Two writers can save at the same time: a snapshot build (openraft runs it in its own task
//! while applies and installs go on) and a snapshot install. The file stays whole and never
//! goes back because:
//! * each save writes its own temp file and fsyncs it, so no writer sees another's bytes;
//! * under one lock, a save compares its snapshot's last log id with the file's and renames
//!   its temp file over the file only if it is newer, then fsyncs the directory. A build that
//!   captured its state before an install therefore cannot replace the installed snapshot.
//!
//! The file is `encode((meta, data))`. Temp files sit next to it, named
//! `<file>.<pid>-<n>.tmp`; [`SnapshotFile::remove_stale_temps`] removes those a killed writer
//! left.

use super::{LogId, NodeId, NodeInfo, decode, encode, io_err};
use openraft::SnapshotMeta;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Meta = SnapshotMeta<NodeId, NodeInfo>;

/// What the file holds, as far as this process knows.
#[derive(Debug, Clone, Copy)]
enum OnDisk {
    Absent,
    Holds(Option<LogId>),
}

/// The snapshot file and the lock its writers take to replace it.
#[derive(Debug)]
pub(super) struct SnapshotFile {
    path: PathBuf,
    /// Read from the file at the first save, then kept up to date by the saves. Held from
    /// the comparison to the rename, so two writers cannot both decide they are newer.
    on_disk: Mutex<Option<OnDisk>>,
}

/// Makes temp file names unique among the writers of this process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl SnapshotFile {
    pub(super) fn new(path: PathBuf) -> Self {
        SnapshotFile {
            path,
            on_disk: Mutex::new(None),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Saves a snapshot durably, unless the file already holds one at least as new. Returns
    /// whether it replaced the file.
    pub(super) fn save(&self, meta: &Meta, data: &[u8]) -> std::io::Result<bool> {
        let temp = self.write_temp(meta, data)?;
        let replaced = crate::state::failpoint::hit("snapshot file: written")
            .and_then(|()| self.replace_if_newer(&temp, meta.last_log_id));
        if !matches!(replaced, Ok(true)) {
            // The temp file is useless now; a failure to remove it is cleaned up at start.
            let _ = std::fs::remove_file(&temp);
        }
        replaced
    }

    /// The snapshot in the file, if there is one.
    pub(super) fn load(&self) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let (meta, data): (Meta, serde_bytes::ByteBuf) = decode(&bytes).map_err(io_err)?;
                Ok(Some((meta, data.into_vec())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the temp files that writers killed before their rename left behind. Call it
    /// before anything saves.
    pub(super) fn remove_stale_temps(&self) -> std::io::Result<()> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(());
        };
        let prefix = format!("{}.", name.to_string_lossy());
        // `snapshot.tmp`: the one shared temp file of versions before unique temp names.
        let legacy = self.path.with_extension("tmp");
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let ours = file.starts_with(&prefix) && file.ends_with(".tmp");
            if ours || path == legacy {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn write_temp(&self, meta: &Meta, data: &[u8]) -> std::io::Result<PathBuf> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}-{n}.tmp", std::process::id()));
        let temp = self.path.with_file_name(name);
        // A snapshot is the whole sealed state, as sensitive as a backup: owner only.
        let mut f = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().write(true).create_new(true),
            0o600,
        )
        .open(&temp)?;
        let written = f
            .write_all(&encode(&(meta, serde_bytes::Bytes::new(data))))
            .and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(temp)
    }

    fn replace_if_newer(&self, temp: &Path, last_log_id: Option<LogId>) -> std::io::Result<bool> {
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|e| e.into_inner());
        let current = match *on_disk {
            Some(known) => known,
            None => self.read_on_disk(),
        };
        if let OnDisk::Holds(held) = current {
            if held >= last_log_id {
                *on_disk = Some(current);
                return Ok(false);
            }
        }
        std::fs::rename(temp, &self.path)?;
        // The file now holds this snapshot whether or not the directory sync below succeeds.
        *on_disk = Some(OnDisk::Holds(last_log_id));
        crate::dir_sync::sync_parent(&self.path)?;
        Ok(true)
    }

    fn read_on_disk(&self) -> OnDisk {
        match self.load() {
            Ok(Some((meta, _))) => OnDisk::Holds(meta.last_log_id),
            Ok(None) => OnDisk::Absent,
            Err(e) => {
                // Renames are atomic, so this is a damaged disk: any whole snapshot is better.
                tracing::warn!(file = %self.path.display(), error = %e,
                    "the snapshot file does not read; the next snapshot replaces it");
                OnDisk::Absent
            }
        }
    }
}
