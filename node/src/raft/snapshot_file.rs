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
//! The file is `encode((meta, dump))`: a MessagePack array of the meta and a `bin` holding the
//! dump, written and read as a stream (`snapshot_body.rs`), never held in memory whole. The
//! dump is the last thing in the file, so it runs from the header's end to the file's. Temp
//! files sit next to it, named `<file>.<pid>-<n>.tmp`, and so do received snapshots while they
//! arrive; [`SnapshotFile::remove_stale_temps`] removes those a killed writer left.

use super::paced_writeback::PacedWriteback;
use super::snapshot_body::{DumpInFile, TempFile, create_owner_only};
use super::{LogId, NodeId, NodeInfo, encode, io_err};
use openraft::SnapshotMeta;
use std::io::{BufWriter, Seek, SeekFrom, Write};
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

/// A snapshot written to its temp file and not yet in place; the temp file goes with it.
pub(super) struct Written {
    temp: TempFile,
    dump: DumpInFile,
    last_log_id: Option<LogId>,
}

/// The snapshot in the file at `path`, for a backup: its meta, and its dump as a file
/// positioned at the dump's first byte, with the dump's length. The file stays readable if a
/// newer snapshot replaces it meanwhile.
pub fn open_dump(path: &Path) -> std::io::Result<Option<(Meta, std::fs::File, u64)>> {
    let Some((meta, dump)) = SnapshotFile::new(path.to_owned()).open()? else {
        return Ok(None);
    };
    let (file, len) = dump.into_positioned()?;
    Ok(Some((meta, file, len)))
}

/// MessagePack's `bin 32` marker.
const BIN32: u8 = 0xc6;

/// The write buffer of a snapshot file.
const WRITE_BUFFER: usize = 1 << 20;

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

    /// Writes a snapshot to a temp file of its own: the header, then what `dump` writes, which
    /// must be a dump. Not synced yet: [`SnapshotFile::place`] does that.
    pub(super) fn write(
        &self,
        meta: &Meta,
        dump: impl FnOnce(&mut BufWriter<PacedWriteback>) -> std::io::Result<()>,
    ) -> std::io::Result<Written> {
        let temp = TempFile(self.temp_path());
        let file = create_owner_only(&temp.0)?;
        // Onto the disk as it is written, not in one burst at `place` (`paced_writeback.rs`).
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, PacedWriteback::new(file));
        rmp::encode::write_array_len(&mut out, 2)?;
        out.write_all(&encode(meta))?;
        // `bin 32`, its length filled in once the dump is written.
        let length_at = out.stream_position()? + 1;
        out.write_all(&[BIN32, 0, 0, 0, 0])?;
        let start = out.stream_position()?;
        dump(&mut out)?;
        let end = out.stream_position()?;
        let length = u32::try_from(end - start).map_err(|_| {
            std::io::Error::other("the snapshot's dump is larger than 4 GiB, the format's limit")
        })?;
        out.seek(SeekFrom::Start(length_at))?;
        out.write_all(&length.to_be_bytes())?;
        let file = out.into_inner().map_err(|e| e.into_error())?.into_file();
        Ok(Written {
            temp,
            dump: DumpInFile::new(file, start),
            last_log_id: meta.last_log_id,
        })
    }

    /// Syncs a written snapshot and renames it over the file, unless the file already holds
    /// one at least as new. Returns its dump, which reads whether or not it replaced the file,
    /// and whether it did.
    pub(super) fn place(&self, written: Written) -> std::io::Result<(DumpInFile, bool)> {
        let Written {
            temp,
            dump,
            last_log_id,
        } = written;
        dump.sync_all()?;
        crate::state::failpoint::hit("snapshot file: written")?;
        // The temp file is removed when `temp` goes; after a rename, nothing is left to remove.
        let replaced = self.replace_if_newer(&temp.0, last_log_id)?;
        Ok((dump, replaced))
    }

    /// Saves a snapshot durably from a dump in memory, unless the file already holds one at
    /// least as new. Returns whether it replaced the file.
    #[cfg(test)]
    pub(super) fn save(&self, meta: &Meta, dump: &[u8]) -> std::io::Result<bool> {
        let written = self.write(meta, |out| out.write_all(dump))?;
        Ok(self.place(written)?.1)
    }

    /// The snapshot in the file, if there is one: its meta, and its dump.
    pub(super) fn open(&self) -> std::io::Result<Option<(Meta, DumpInFile)>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let mut header = std::io::BufReader::new(file);
        let damaged = |reason: String| io_err(format!("damaged snapshot file: {reason}"));
        match rmp::decode::read_array_len(&mut header) {
            Ok(2) => {}
            Ok(n) => return Err(damaged(format!("an array of {n}, not 2"))),
            Err(e) => return Err(damaged(e.to_string())),
        }
        let meta: Meta =
            crate::msgpack::from_read(&mut header).map_err(|e| damaged(e.to_string()))?;
        let length = rmp::decode::read_bin_len(&mut header).map_err(|e| damaged(e.to_string()))?;
        let start = header.stream_position()?;
        if start + u64::from(length) != size {
            return Err(damaged(format!(
                "its dump should be {length} bytes, and {} follow the header",
                size.saturating_sub(start)
            )));
        }
        Ok(Some((meta, DumpInFile::new(header.into_inner(), start))))
    }

    /// The snapshot in the file, read into memory: its meta and its dump.
    #[cfg(test)]
    pub(super) fn load(&self) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
        let Some((meta, dump)) = self.open()? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        dump.copy_to(&mut bytes)?;
        Ok(Some((meta, bytes)))
    }

    /// A new, unique temp file name next to the file.
    pub(super) fn temp_path(&self) -> PathBuf {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}-{n}.tmp", std::process::id()));
        self.path.with_file_name(name)
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
        match self.open() {
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
