//! A file that goes to disk while it is written, a few MiB at a time, rather than all at once
//! at its final fsync.
//!
//! Why: a snapshot file is written through the page cache, and the kernel lets a tenth of the
//! memory stay dirty before it writes any back (2.4 GB on a 24 GiB machine). So a whole
//! snapshot went to disk in `SnapshotFile::place`'s fsync: 132 MB for 400,000 keys, and the
//! three nodes of the testbed, which share a disk, snapshot at the same log index. The disk
//! wrote 400 MB in one second, and every fdatasync of the Raft log in that second waited
//! behind it: under the steady soak of issue 10 (2,480 requests/s over three nodes, 80 of them
//! creates) the requests of that second were answered up to 0.8 s late, where the rest of the
//! run had a p99 of 6 ms. On a node with a disk of its own the same burst stalls its own log.
//!
//! Syncing every [`SYNC_EVERY`] bytes keeps at most that much dirty, so a log fdatasync waits
//! for at most that much of the snapshot's data. The snapshot takes as long as the disk needs
//! to write it, instead of as long as memory needs to copy it, and it is written in the
//! background (openraft's snapshot task, or an install's blocking task), so nothing waits
//! for it but the next snapshot.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

/// Bytes written between two syncs: some 20 ms at the 400 MB/s this disk wrote in that burst.
const SYNC_EVERY: u64 = 8 << 20;

pub(super) struct PacedWriteback {
    file: File,
    unsynced: u64,
}

impl PacedWriteback {
    pub(super) fn new(file: File) -> Self {
        PacedWriteback { file, unsynced: 0 }
    }

    /// The file, with up to [`SYNC_EVERY`] bytes not yet synced: the caller still syncs it.
    pub(super) fn into_file(self) -> File {
        self.file
    }
}

impl Write for PacedWriteback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for PacedWriteback {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn what_is_written_reads_back_and_the_count_restarts_at_each_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = PacedWriteback::new(File::create(&path).unwrap());
        let chunk = vec![7u8; (SYNC_EVERY / 3) as usize + 1];
        for _ in 0..4 {
            out.write_all(&chunk).unwrap();
        }
        // Three chunks pass SYNC_EVERY once; the fourth is what is left unsynced.
        assert_eq!(out.unsynced, chunk.len() as u64);
        out.seek(SeekFrom::Start(0)).unwrap();
        out.write_all(b"head").unwrap();
        out.into_file().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 4 * chunk.len());
        assert_eq!(&back[..4], b"head");
        assert!(back[4..].iter().all(|b| *b == 7));
    }
}
