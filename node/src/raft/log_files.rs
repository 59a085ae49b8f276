//! The Raft log's entries in append-only segment files of our own, beside the sled store.
//!
//! Why not sled: every sled insert or batch seals an I/O buffer of its own, which sled writes
//! and waits for with `sync_file_range` before our fdatasync, about 0.9 ms per append against
//! 0.25 ms for the fdatasync (docs/bench/analysis.md). Here an append is one `pwrite`, and its
//! fdatasync runs on the syncer thread (`log_syncer.rs`).
//!
//! Layout: `raft-log/<index of the first entry, 20 digits>.log`. Each file starts with
//! [`MAGIC`], then records: the entry's length (u32 LE), a CRC-32 of index and entry (u32 LE),
//! the entry's index (u64 LE), the entry as `encode` made it. Indexes run on without a gap,
//! from file to file.
//!
//! What a crash can leave, and what [`LogFiles::open`] does with it:
//! - Only the last file can end in a torn or half-written record: a file is synced in full
//!   before the next one is made. Such a tail was never acknowledged (its fdatasync had not
//!   returned), so open cuts it off. It is at most [`UNSYNCED_MOST`] long: openraft 0.9 waits
//!   for each append to be flushed before it appends again, and an append larger than that is
//!   synced on the way. A bad record further from the end, or in any other file, is damage:
//!   open refuses, rather than drop entries that were acknowledged.
//! - A new file gets its magic, a sync, and a sync of the directory before any entry goes in;
//!   a last file shorter than its magic is a creation the crash interrupted, and is removed.
//! - The purge mark lives in sled (`log_store.rs`) and is made durable before files are
//!   removed; files and entries at or below it that a crash left behind are dropped at open.
//! - A truncate removes whole files from the back, syncing the directory after each, and only
//!   then cuts the file that holds its first entry, so a crash leaves the log whole up to a
//!   point.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first bytes of every segment: the format, for a later version to recognise.
const MAGIC: &[u8; 8] = b"KESRLOG1";

/// A record's header: length, CRC, index.
const HEADER: usize = 16;

/// A new file is started once the current one holds this much.
const SEGMENT_BYTES: u64 = 64 << 20;

/// The largest entry a record may hold: far above any entry Raft makes (commands are at most
/// `MAX_ENTRY_BYTES`), so a damaged length can never make open allocate without bound.
const LARGEST_RECORD: usize = 16 << 20;

/// The most bytes at the end of the log that may not be synced, so the longest tail a crash
/// can tear: an append syncs what it wrote so far before it goes past this.
const UNSYNCED_MOST: u64 = 32 << 20;

/// Where one entry is.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// The first index of the file that holds it (its name).
    segment: u64,
    /// Where its record starts in that file.
    offset: u64,
    /// The length of the entry (without the header).
    len: u32,
}

/// One file of the log.
#[derive(Debug)]
struct Segment {
    /// The index of its first entry, which is also its name.
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// How many bytes it holds that belong to the log (magic and whole records).
    len: u64,
}

/// The log's files and where each entry is.
#[derive(Debug)]
pub(super) struct LogFiles {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    /// The entries' positions, the first one at index `first`.
    positions: VecDeque<Position>,
    first: u64,
}

/// A damaged log: open refuses it rather than serve a hole.
fn damaged(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the Raft log file {} is damaged: {what}", path.display()),
    )
}

fn checksum(index: u64, entry: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(entry);
    h.finalize()
}

/// `entry` at `index` as a record.
fn append_record(out: &mut Vec<u8>, index: u64, entry: &[u8]) {
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(index, entry).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(entry);
}

/// The header's three fields.
fn parse_header(h: &[u8; HEADER]) -> (usize, u32, u64) {
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let index = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    (len, crc, index)
}

/// What reading one file found.
struct Scanned {
    /// The records that are whole and in order: (index, offset, length).
    records: Vec<(u64, u64, u32)>,
    /// Where the whole records end.
    good_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    stopped: Option<String>,
}

/// Reads the records of a file whose first entry must be at `first`.
fn scan(file: &File, first: u64) -> io::Result<Scanned> {
    let file_len = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; MAGIC.len()];
    if file_len < MAGIC.len() as u64 {
        return Ok(Scanned {
            records: Vec::new(),
            good_len: 0,
            stopped: Some("shorter than its magic".into()),
        });
    }
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Ok(Scanned {
            records: Vec::new(),
            good_len: 0,
            stopped: Some("not a Raft log file (wrong magic)".into()),
        });
    }
    let mut scanned = Scanned {
        records: Vec::new(),
        good_len: MAGIC.len() as u64,
        stopped: None,
    };
    let mut entry = Vec::new();
    let mut expected = first;
    while scanned.good_len < file_len {
        let offset = scanned.good_len;
        let left = file_len - offset;
        let mut header = [0u8; HEADER];
        if left < HEADER as u64 {
            scanned.stopped = Some(format!("a record header cut off at byte {offset}"));
            break;
        }
        reader.read_exact(&mut header)?;
        let (len, crc, index) = parse_header(&header);
        if len > LARGEST_RECORD || (len + HEADER) as u64 > left {
            scanned.stopped = Some(format!("a record cut off at byte {offset}"));
            break;
        }
        entry.resize(len, 0);
        reader.read_exact(&mut entry)?;
        if crc != checksum(index, &entry) {
            scanned.stopped = Some(format!("a record with a bad checksum at byte {offset}"));
            break;
        }
        if index != expected {
            scanned.stopped = Some(format!(
                "entry {index} at byte {offset} where entry {expected} belongs"
            ));
            break;
        }
        scanned.records.push((index, offset, len as u32));
        scanned.good_len = offset + (HEADER + len) as u64;
        expected += 1;
    }
    Ok(scanned)
}

/// The first index a segment's name states.
fn segment_first(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn open_segment(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

impl LogFiles {
    /// Opens the log in `dir` (made if missing), whose entries up to `purged` are gone.
    /// Cuts off a torn last record; refuses a log with a hole or a damaged record before its
    /// end.
    pub(super) fn open(dir: &Path, purged: Option<u64>) -> io::Result<LogFiles> {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            crate::dir_sync::create_dirs_durably(&builder, dir)?;
        }
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            match segment_first(&name) {
                Some(first) => firsts.push(first),
                None if name.ends_with(".log") => {
                    return Err(damaged(&dir.join(&*name), "not a log file name"));
                }
                None => {}
            }
        }
        firsts.sort_unstable();
        // Files that hold only purged entries (the next one starts at or below the mark + 1)
        // are not read: a crash in a purge may have removed a later one and not them.
        if let Some(purged) = purged {
            let mut removed = false;
            while firsts.len() >= 2 && firsts[1] <= purged.saturating_add(1) {
                std::fs::remove_file(dir.join(format!("{:020}.log", firsts[0])))?;
                firsts.remove(0);
                removed = true;
            }
            if removed {
                crate::dir_sync::sync_dir(dir)?;
            }
        }
        let mut log = LogFiles {
            dir: dir.to_owned(),
            segments: VecDeque::new(),
            positions: VecDeque::new(),
            first: 0,
        };
        for (n, &first) in firsts.iter().enumerate() {
            let is_last = n + 1 == firsts.len();
            log.load_segment(first, is_last)?;
        }
        if let Some(purged) = purged {
            log.purge(purged)?;
            if !log.positions.is_empty() && Some(log.first) != purged.checked_add(1) {
                return Err(damaged(
                    dir,
                    format!(
                        "its entries start at {} but everything up to {purged} was purged: \
                         entries are missing",
                        log.first
                    ),
                ));
            }
        }
        Ok(log)
    }

    /// Reads the file of entries from `first` on, after the ones loaded so far.
    fn load_segment(&mut self, first: u64, is_last: bool) -> io::Result<()> {
        let path = self.dir.join(format!("{first:020}.log"));
        if let Some(last) = self.last_index() {
            if last.checked_add(1) != Some(first) {
                return Err(damaged(
                    &path,
                    format!("it starts at entry {first}, but the file before ends at {last}"),
                ));
            }
        }
        let file = open_segment(&path)?;
        let scanned = scan(&file, first)?;
        let file_len = file.metadata()?.len();
        if let Some(why) = &scanned.stopped {
            if !is_last || file_len - scanned.good_len > UNSYNCED_MOST {
                return Err(damaged(&path, why));
            }
            // A last file no longer than its magic is a creation the crash interrupted (its
            // magic may not have reached the disk); anything longer must start with it.
            if scanned.good_len == 0 && file_len > MAGIC.len() as u64 {
                return Err(damaged(&path, why));
            }
        }
        if scanned.records.is_empty() {
            if !is_last {
                return Err(damaged(
                    &path,
                    "it holds no entry, and a later file follows",
                ));
            }
            // Made, but the crash came before its first entry was synced: it never held an
            // acknowledged entry, and its name may not fit the next append.
            tracing::warn!(
                "removing {}, a Raft log file that a crash left without an entry",
                path.display()
            );
            drop(file);
            std::fs::remove_file(&path)?;
            return crate::dir_sync::sync_dir(&self.dir);
        }
        if let Some(why) = &scanned.stopped {
            // Never acknowledged: the last fdatasync before the crash had not covered it.
            tracing::warn!(
                "cutting {} bytes off the end of {} ({why}): a write the crash interrupted, \
                 never acknowledged",
                file_len - scanned.good_len,
                path.display()
            );
            file.set_len(scanned.good_len)?;
            file.sync_all()?;
        }
        if self.positions.is_empty() {
            self.first = first;
        }
        self.positions
            .extend(scanned.records.iter().map(|&(_, offset, len)| Position {
                segment: first,
                offset,
                len,
            }));
        self.segments.push_back(Segment {
            first,
            path,
            file: Arc::new(file),
            len: scanned.good_len,
        });
        Ok(())
    }

    /// The index of the first entry held, if any.
    pub(super) fn first_index(&self) -> Option<u64> {
        (!self.positions.is_empty()).then_some(self.first)
    }

    /// The index of the last entry held, if any.
    pub(super) fn last_index(&self) -> Option<u64> {
        (!self.positions.is_empty()).then(|| self.first + self.positions.len() as u64 - 1)
    }

    /// The entry at `index`, as it was appended; `None` if the log does not hold it.
    pub(super) fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(at) = index.checked_sub(self.first) else {
            return Ok(None);
        };
        let Some(pos) = self.positions.get(at as usize) else {
            return Ok(None);
        };
        let segment = self.segment(pos.segment);
        let mut record = vec![0u8; HEADER + pos.len as usize];
        segment.file.read_exact_at(&mut record, pos.offset)?;
        let header: &[u8; HEADER] = record[..HEADER].try_into().expect("header length");
        let (len, crc, stored_index) = parse_header(header);
        let entry = &record[HEADER..];
        if len != entry.len() || stored_index != index || crc != checksum(index, entry) {
            return Err(damaged(
                &segment.path,
                format!("the record of entry {index} changed since it was written"),
            ));
        }
        // In place: the entry moves to the front of the buffer it was read into.
        record.drain(..HEADER);
        Ok(Some(record))
    }

    fn segment(&self, first: u64) -> &Segment {
        self.segments
            .iter()
            .rev()
            .find(|s| s.first == first)
            .expect("every position names a file that is held")
    }

    /// Writes `entries` (index and encoded entry, in order, the first one right after the last
    /// held) and answers the files written to, for the syncer. Not yet durable.
    pub(super) fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<Vec<Arc<File>>> {
        let mut written = Vec::new();
        let mut pending = Vec::new();
        let mut pending_positions = Vec::new();
        for (index, entry) in entries {
            if let Some(last) = self.last_index_with(&pending_positions) {
                if last.checked_add(1) != Some(*index) {
                    return Err(io::Error::other(format!(
                        "Raft log: entry {index} appended after entry {last}"
                    )));
                }
            }
            if entry.len() > LARGEST_RECORD {
                return Err(io::Error::other(format!(
                    "Raft log: entry {index} of {} bytes is larger than a record may be",
                    entry.len()
                )));
            }
            let full = self
                .segments
                .back()
                .is_none_or(|s| s.len + pending.len() as u64 >= SEGMENT_BYTES);
            if full {
                self.write_pending(&mut pending, &mut pending_positions, &mut written)?;
                self.start_segment(*index)?;
            } else if (pending.len() + HEADER + entry.len()) as u64 > UNSYNCED_MOST {
                self.write_pending(&mut pending, &mut pending_positions, &mut written)?;
                self.segments.back().expect("written").file.sync_data()?;
            }
            let segment = self.segments.back().expect("a segment to append to");
            pending_positions.push((
                *index,
                Position {
                    segment: segment.first,
                    offset: segment.len + pending.len() as u64,
                    len: entry.len() as u32,
                },
            ));
            append_record(&mut pending, *index, entry);
        }
        self.write_pending(&mut pending, &mut pending_positions, &mut written)?;
        Ok(written)
    }

    /// The last index, counting positions about to be added.
    fn last_index_with(&self, pending: &[(u64, Position)]) -> Option<u64> {
        pending.last().map(|(i, _)| *i).or(self.last_index())
    }

    /// Writes `pending` records at the end of the last file and takes them into the log.
    fn write_pending(
        &mut self,
        pending: &mut Vec<u8>,
        positions: &mut Vec<(u64, Position)>,
        written: &mut Vec<Arc<File>>,
    ) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let segment = self.segments.back_mut().expect("a segment to append to");
        segment.file.write_all_at(pending, segment.len)?;
        segment.len += pending.len() as u64;
        if !written.iter().any(|f| Arc::ptr_eq(f, &segment.file)) {
            written.push(segment.file.clone());
        }
        if self.positions.is_empty() {
            self.first = positions[0].0;
        }
        self.positions.extend(positions.drain(..).map(|(_, p)| p));
        pending.clear();
        Ok(())
    }

    /// Makes the file whose first entry is `first` the one appended to, after syncing the
    /// current one in full (so only the last file can ever hold a torn record).
    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(current) = self.segments.back() {
            current.file.sync_data()?;
        }
        let path = self.dir.join(format!("{first:020}.log"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all_at(MAGIC, 0)?;
        file.sync_all()?;
        crate::dir_sync::sync_dir(&self.dir)?;
        self.segments.push_back(Segment {
            first,
            path,
            file: Arc::new(file),
            len: MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Removes the entries from `from` on, durably.
    pub(super) fn truncate(&mut self, from: u64) -> io::Result<()> {
        let keep = from.saturating_sub(self.first) as usize;
        let Some(cut) = self.positions.get(keep).copied() else {
            return Ok(());
        };
        // First, so that reads never reach a file removed below, even if a removal fails (a
        // failed truncate stops Raft on this node; only reads follow).
        self.positions.truncate(keep);
        while let Some(last) = self.segments.back() {
            if last.first < cut.segment {
                break;
            }
            if last.first == cut.segment && cut.offset > MAGIC.len() as u64 {
                break;
            }
            std::fs::remove_file(&last.path)?;
            self.segments.pop_back();
            // One at a time, from the back: a crash must never keep a later file and lose an
            // earlier one, which would leave a hole.
            crate::dir_sync::sync_dir(&self.dir)?;
        }
        if let Some(last) = self.segments.back_mut() {
            if last.first == cut.segment {
                last.file.set_len(cut.offset)?;
                last.file.sync_all()?;
                last.len = cut.offset;
            }
        }
        Ok(())
    }

    /// Forgets the entries up to `upto` and removes the files that hold nothing else. The
    /// caller has made the purge mark durable first.
    pub(super) fn purge(&mut self, upto: u64) -> io::Result<()> {
        while !self.positions.is_empty() && self.first <= upto {
            self.positions.pop_front();
            self.first += 1;
        }
        let mut removed = false;
        while let Some(oldest) = self.segments.front() {
            // A file holds nothing past `upto` when the next one starts at or below `upto + 1`,
            // or, for the last file, when no entry is left at all.
            let holds_nothing_left = match self.segments.get(1) {
                Some(next) => next.first <= upto.saturating_add(1),
                None => self.positions.is_empty(),
            };
            if !holds_nothing_left {
                break;
            }
            std::fs::remove_file(&oldest.path)?;
            self.segments.pop_front();
            removed = true;
        }
        if removed {
            crate::dir_sync::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_files_tests.rs"]
mod tests;
