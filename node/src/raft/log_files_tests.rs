//! The log files after every kind of crash a power cut can leave: torn tails, interrupted file
//! creations, truncates and purges stopped halfway, and damage that must not be served.

use super::*;

fn entry(index: u64) -> (u64, Vec<u8>) {
    (
        index,
        format!("entry {index}")
            .repeat(1 + index as usize % 7)
            .into_bytes(),
    )
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(entry).collect()
}

/// Every index the log holds, read back and checked against what was appended.
fn held(log: &LogFiles) -> Vec<u64> {
    let (Some(first), Some(last)) = (log.first_index(), log.last_index()) else {
        return Vec::new();
    };
    (first..=last)
        .inspect(|&i| assert_eq!(log.read(i).unwrap(), Some(entry(i).1), "entry {i}"))
        .collect()
}

/// The file whose first entry is `first`.
fn file_of(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A log in `dir` split over several files: entries 0..=99, a new file every 20.
fn split_log(dir: &Path) -> LogFiles {
    let mut log = LogFiles::open(dir, None).unwrap();
    for chunk in entries(0..=99).chunks(20) {
        log.append(chunk).unwrap();
        let next = chunk.last().unwrap().0 + 1;
        log.start_segment(next).unwrap();
    }
    log
}

#[test]
fn appended_entries_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    log.append(&entries(0..=9)).unwrap();
    log.append(&entries(10..=10)).unwrap();
    assert_eq!(held(&log), (0..=10).collect::<Vec<_>>());
    drop(log);
    let log = LogFiles::open(dir.path(), None).unwrap();
    assert_eq!(held(&log), (0..=10).collect::<Vec<_>>());
    assert_eq!(log.read(11).unwrap(), None);
}

#[test]
fn an_append_that_leaves_a_gap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    log.append(&entries(1..=3)).unwrap();
    let err = log.append(&entries(5..=5)).unwrap_err();
    assert!(
        err.to_string().contains("entry 5 appended after entry 3"),
        "{err}"
    );
    assert_eq!(held(&log), vec![1, 2, 3]);
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_log_goes_on() {
    for cut in [1, HEADER as u64 - 1, HEADER as u64, HEADER as u64 + 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFiles::open(dir.path(), None).unwrap();
        log.append(&entries(0..=4)).unwrap();
        let whole = log.segments.back().unwrap().len;
        log.append(&entries(5..=5)).unwrap();
        drop(log);
        // The crash wrote only the first `cut` bytes of entry 5's record.
        let path = file_of(dir.path(), 0);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(whole + cut)
            .unwrap();
        let mut log = LogFiles::open(dir.path(), None).unwrap();
        assert_eq!(held(&log), (0..=4).collect::<Vec<_>>(), "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            whole,
            "tail cut off"
        );
        log.append(&entries(5..=6)).unwrap();
        drop(log);
        assert_eq!(held(&LogFiles::open(dir.path(), None).unwrap()).len(), 7);
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_is_cut_off_but_one_earlier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = split_log(dir.path());
    let last = log.segments.back().unwrap().path.clone();
    let first_file = log.segments.front().unwrap().path.clone();
    drop(log);
    // The last file holds no entry yet (start_segment made it after entry 99): it goes.
    let log = LogFiles::open(dir.path(), None).unwrap();
    assert!(!last.exists(), "an empty last file is removed");
    assert_eq!(held(&log), (0..=99).collect::<Vec<_>>());
    drop(log);
    let flip = |path: &Path, from_end: u64| {
        let bytes = std::fs::read(path).unwrap();
        let mut bytes = bytes.clone();
        let at = bytes.len() - from_end as usize;
        bytes[at] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    };
    // In the last file's last record: a torn write, cut off.
    let last = file_of(dir.path(), 80);
    flip(&last, 2);
    let log = LogFiles::open(dir.path(), None).unwrap();
    assert_eq!(log.last_index(), Some(98));
    drop(log);
    // In an earlier file: damage, refused, and the file is left as it is.
    flip(&first_file, 2);
    let before = std::fs::read(&first_file).unwrap();
    let err = LogFiles::open(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("is damaged"), "{err}");
    assert_eq!(std::fs::read(&first_file).unwrap(), before);
}

#[test]
fn a_file_whose_creation_was_interrupted_is_removed() {
    for len in [0usize, 3, MAGIC.len()] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFiles::open(dir.path(), None).unwrap();
        log.append(&entries(0..=4)).unwrap();
        drop(log);
        let stray = file_of(dir.path(), 5);
        std::fs::write(&stray, vec![0u8; len]).unwrap();
        let mut log = LogFiles::open(dir.path(), None).unwrap();
        assert!(!stray.exists(), "a {len}-byte file is removed");
        log.append(&entries(5..=5)).unwrap();
        assert_eq!(held(&log).len(), 6);
    }
}

#[test]
fn a_missing_file_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(split_log(dir.path()));
    std::fs::remove_file(file_of(dir.path(), 40)).unwrap();
    let err = LogFiles::open(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("starts at entry 60"), "{err}");
}

#[test]
fn truncate_removes_exactly_its_range_across_files() {
    for from in [0u64, 1, 19, 20, 21, 59, 60, 99, 100, 150] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = split_log(dir.path());
        log.truncate(from).unwrap();
        let expect: Vec<u64> = (0..from.min(100)).collect();
        assert_eq!(held(&log), expect, "truncate from {from}");
        // The log goes on from the cut, in the same files, and reopens whole.
        log.append(&entries(from.min(100)..=from.min(100) + 2))
            .unwrap();
        drop(log);
        let log = LogFiles::open(dir.path(), None).unwrap();
        assert_eq!(held(&log).len() as u64, from.min(100) + 3, "after {from}");
    }
}

#[test]
fn purge_forgets_its_range_and_removes_files_that_hold_nothing_else() {
    for upto in [0u64, 18, 19, 20, 79, 98, 99, 150] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = split_log(dir.path());
        log.purge(upto).unwrap();
        let expect: Vec<u64> = (upto + 1..=99).collect();
        assert_eq!(held(&log), expect, "purge to {upto}");
        // Files before the one holding the first entry left are gone.
        let first_file = (upto + 1) / 20 * 20;
        for name in files_in(dir.path()) {
            let first = segment_first(&name).unwrap();
            assert!(
                first >= first_file || first == 100,
                "{name} kept after purge to {upto}"
            );
        }
        // The next append after a purge past the end starts a file of its own.
        let next = upto.max(99) + 1;
        log.append(&entries(next..=next)).unwrap();
        drop(log);
        let log = LogFiles::open(dir.path(), Some(upto)).unwrap();
        assert_eq!(
            log.first_index(),
            Some(upto + 1).filter(|_| upto < 99).or(Some(next))
        );
        assert_eq!(log.last_index(), Some(next));
    }
}

#[test]
fn open_drops_entries_a_crash_left_below_the_purge_mark() {
    let dir = tempfile::tempdir().unwrap();
    drop(split_log(dir.path()));
    // The mark reached the disk; the crash came before any file was removed.
    let log = LogFiles::open(dir.path(), Some(45)).unwrap();
    assert_eq!(held(&log), (46..=99).collect::<Vec<_>>());
    assert!(!file_of(dir.path(), 20).exists());
    assert!(file_of(dir.path(), 40).exists());
}

#[test]
fn open_refuses_a_log_that_starts_after_its_purge_mark() {
    let dir = tempfile::tempdir().unwrap();
    drop(split_log(dir.path()));
    std::fs::remove_file(file_of(dir.path(), 0)).unwrap();
    let err = LogFiles::open(dir.path(), Some(10)).unwrap_err();
    assert!(err.to_string().contains("entries are missing"), "{err}");
}

#[test]
fn a_damaged_length_cannot_make_open_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    log.append(&entries(0..=1)).unwrap();
    let second = log.positions[1].offset;
    drop(log);
    let path = file_of(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second as usize..second as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let log = LogFiles::open(dir.path(), None).unwrap();
    assert_eq!(held(&log), vec![0]);
}

#[test]
fn a_record_changed_after_open_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    log.append(&entries(0..=2)).unwrap();
    let at = log.positions[1].offset + HEADER as u64;
    log.segments[0].file.write_all_at(b"X", at).unwrap();
    let err = log.read(1).unwrap_err();
    assert!(
        err.to_string().contains("changed since it was written"),
        "{err}"
    );
    assert_eq!(log.read(2).unwrap(), Some(entry(2).1));
}

#[test]
fn a_full_file_rolls_over_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    let big = vec![7u8; (SEGMENT_BYTES / 5) as usize];
    let batch: Vec<(u64, Vec<u8>)> = (0..11).map(|i| (i, big.clone())).collect();
    log.append(&batch).unwrap();
    assert_eq!(files_in(dir.path()).len(), 3, "{:?}", files_in(dir.path()));
    drop(log);
    let log = LogFiles::open(dir.path(), None).unwrap();
    assert_eq!(log.last_index(), Some(10));
    assert_eq!(log.read(4).unwrap(), Some(big));
}

#[test]
fn damage_further_back_than_any_unsynced_write_is_refused_even_in_the_last_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFiles::open(dir.path(), None).unwrap();
    let mib = vec![1u8; 1 << 20];
    let batch: Vec<(u64, Vec<u8>)> = (0..40).map(|i| (i, mib.clone())).collect();
    log.append(&batch).unwrap();
    assert_eq!(files_in(dir.path()).len(), 1, "one file of 40 MiB");
    let at = log.positions[0].offset + HEADER as u64;
    log.segments[0].file.write_all_at(b"X", at).unwrap();
    drop(log);
    let err = LogFiles::open(dir.path(), None).unwrap_err();
    assert!(err.to_string().contains("bad checksum"), "{err}");
}

#[test]
fn open_skips_files_below_the_purge_mark_even_with_a_hole_among_them() {
    let dir = tempfile::tempdir().unwrap();
    drop(split_log(dir.path()));
    // A purge to 59 removed the file of entries 20..=39, and the crash kept the one before.
    std::fs::remove_file(file_of(dir.path(), 20)).unwrap();
    let log = LogFiles::open(dir.path(), Some(59)).unwrap();
    assert_eq!(held(&log), (60..=99).collect::<Vec<_>>());
    assert!(!file_of(dir.path(), 0).exists());
}
