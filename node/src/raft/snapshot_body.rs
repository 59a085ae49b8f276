//! A snapshot's dump as openraft sends and receives it: a file, seen from where its dump
//! starts, so a snapshot is never held in memory whole.
//!
//! In the snapshot file the dump is the last thing (`snapshot_file.rs`), so a [`SnapshotBody`]
//! reading one shifts seeks by the header's length and otherwise reads the file to its end. A
//! body receiving a snapshot writes an unlinked temp file of its own.

use crate::state::DumpSource;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Buffer of the reader an install parses a dump through.
const READ_BUFFER: usize = 1 << 20;

/// A dump in a file: from `start` to the end of the file.
#[derive(Debug)]
pub(super) struct DumpInFile {
    file: std::fs::File,
    start: u64,
}

impl DumpInFile {
    pub(super) fn new(file: std::fs::File, start: u64) -> Self {
        DumpInFile { file, start }
    }

    /// fsyncs the file.
    pub(super) fn sync_all(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }

    /// The file positioned at the dump's first byte, and the dump's length.
    pub(super) fn into_positioned(self) -> std::io::Result<(std::fs::File, u64)> {
        let DumpInFile { mut file, start } = self;
        let len = file.metadata()?.len().saturating_sub(start);
        file.seek(SeekFrom::Start(start))?;
        Ok((file, len))
    }

    /// Copies the dump to `out`.
    pub(super) fn copy_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        std::io::copy(&mut self.open()?, out).map(drop)
    }
}

impl DumpSource for DumpInFile {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        // A clone shares the file's position; readers are opened one after the other.
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(self.start))?;
        Ok(Box::new(std::io::BufReader::with_capacity(
            READ_BUFFER,
            file,
        )))
    }
}

/// Creates a new file for a snapshot, readable and writable by the owner only: a snapshot is
/// the whole sealed state, as sensitive as a backup.
pub(super) fn create_owner_only(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true),
        0o600,
    )
    .open(path)
}

/// A temp file that is removed when this is dropped.
#[derive(Debug)]
pub(super) struct TempFile(pub(super) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // Already renamed into place, or never made: either way nothing is left to remove.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// openraft's `SnapshotData`.
#[derive(Debug)]
pub struct SnapshotBody {
    file: tokio::fs::File,
    /// Where the dump starts in the file.
    start: u64,
    /// When this body began to receive a snapshot; `None` when it reads the snapshot file.
    receiving_since: Option<Instant>,
}

impl SnapshotBody {
    /// A body that reads `dump`, positioned at its first byte.
    pub(super) fn reading(dump: DumpInFile) -> std::io::Result<Self> {
        let DumpInFile { mut file, start } = dump;
        file.seek(SeekFrom::Start(start))?;
        Ok(SnapshotBody {
            file: tokio::fs::File::from_std(file),
            start,
            receiving_since: None,
        })
    }

    /// A body that receives a snapshot into a new file, made at `temp` and unlinked at once:
    /// everything reads it through its handle, so its space is freed with the last handle,
    /// whether the install ends, fails, is abandoned by the leader (openraft may keep an
    /// abandoned transfer until the next one), or the process dies.
    pub(super) fn receiving(temp: PathBuf) -> std::io::Result<Self> {
        let file = create_owner_only(&temp)?;
        std::fs::remove_file(&temp)?;
        Ok(SnapshotBody {
            file: tokio::fs::File::from_std(file),
            start: 0,
            receiving_since: Some(Instant::now()),
        })
    }

    /// The dump this body received, once openraft has written its last chunk, and how long
    /// it took from the first chunk to the last.
    pub(super) async fn into_received(self) -> std::io::Result<(DumpInFile, Duration)> {
        let SnapshotBody {
            mut file,
            receiving_since,
            ..
        } = self;
        let Some(since) = receiving_since else {
            return Err(std::io::Error::other("this snapshot was not received"));
        };
        // tokio writes in the background: wait for the last write to reach the file.
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        let took = since.elapsed();
        Ok((DumpInFile::new(file.into_std().await, 0), took))
    }
}

impl AsyncRead for SnapshotBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBody {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

/// Seeks never go before the dump: relative seeks backwards are refused (openraft seeks to
/// offsets from the start and to the end). So the file's position is always at or past
/// `start`, and subtracting `start` from what tokio reports is exact, including tokio's answer
/// before any seek (0, where the body starts at the dump's first byte).
impl AsyncSeek for SnapshotBody {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        let position = match position {
            SeekFrom::Start(n) => SeekFrom::Start(
                this.start
                    .checked_add(n)
                    .ok_or_else(|| std::io::Error::other("seek past the largest offset"))?,
            ),
            SeekFrom::End(n) | SeekFrom::Current(n) if n < 0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "a snapshot body seeks backwards only from its start",
                ));
            }
            forwards => forwards,
        };
        Pin::new(&mut this.file).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let this = self.get_mut();
        Pin::new(&mut this.file)
            .poll_complete(cx)
            .map_ok(|at| at.saturating_sub(this.start))
    }
}
