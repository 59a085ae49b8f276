//! Where audit events are written besides the `/v1/log/audit` stream: stdout (`log.audit:
//! on`) and a file rotated by size (`log.audit_file`). A sink that fails is never ignored: each
//! failure is counted (`kes_audit_write_failures_total`) and raised as an error event, and with
//! `log.audit_failure: closed` requests are refused with 503 until an event is written again.
//!
//! A file that is deleted or replaced under the node (a careless cleanup, a log shipper's
//! rotation) would otherwise swallow every later event into an unlinked inode: its path is
//! checked once a second, and the file is opened again when it no longer names ours.

use crate::config::{AuditFailure, AuditFileConfig, LogConfig};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the file's path is compared with the open file.
const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// At most one error event per this long; the ones held back are counted in the next.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The audit sinks of a node.
#[derive(Debug)]
pub struct AuditSinks {
    stdout: bool,
    file: Option<Mutex<AuditFile>>,
    closed: bool,
    /// The last write failed.
    failing: AtomicBool,
    failures: prometheus::Counter,
    reports: Mutex<Reports>,
}

#[derive(Debug, Default)]
struct Reports {
    last: Option<Instant>,
    held_back: u64,
}

impl AuditSinks {
    /// The sinks `log` configures. Opens the audit file, so a path that cannot be written
    /// stops the node at start rather than losing every event. `failures` counts failed writes.
    pub fn new(log: &LogConfig, failures: prometheus::Counter) -> Result<Self, String> {
        let file = match &log.audit_file {
            Some(config) => Some(Mutex::new(AuditFile::open(config).map_err(|e| {
                format!("cannot open the audit file {}: {e}", config.path.display())
            })?)),
            None => None,
        };
        Ok(AuditSinks {
            stdout: log.audit,
            file,
            closed: log.audit_failure == AuditFailure::Closed,
            failing: AtomicBool::new(false),
            failures,
            reports: Mutex::default(),
        })
    }

    /// Whether any sink is configured (else events are built only for stream subscribers).
    pub fn any(&self) -> bool {
        self.stdout || self.file.is_some()
    }

    /// With `log.audit_failure: closed`, whether requests are refused now because the last
    /// event could not be written. The refusals' own events are written as usual, so the
    /// first one that is written lets requests through again.
    pub fn refusing(&self) -> bool {
        self.closed && self.failing.load(Ordering::Relaxed)
    }

    /// With `log.audit_failure: closed`, whether a request whose event was not written must be
    /// answered with 503.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Writes one event (a JSON line without its newline) to every sink. Returns whether all
    /// of them took it; a failure is counted and reported.
    pub fn write(&self, line: &str) -> bool {
        let mut failed: Vec<String> = Vec::new();
        // Files found replaced: reported and counted, though this event was written.
        let mut noticed: Vec<String> = Vec::new();
        if self.stdout {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
            {
                failed.push(format!("cannot write audit events to stdout: {e}"));
            }
        }
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = file.append(line, &mut |why| noticed.push(why)) {
                failed.push(format!(
                    "cannot write audit events to {}: {e}",
                    file.config.path.display()
                ));
            }
        }
        let written = failed.is_empty();
        self.failing.store(!written, Ordering::Relaxed);
        for why in failed.into_iter().chain(noticed) {
            self.failures.inc();
            self.report(why);
        }
        written
    }

    fn report(&self, why: String) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if reports
            .last
            .is_some_and(|last| now.duration_since(last) < REPORT_INTERVAL)
        {
            reports.held_back += 1;
            return;
        }
        let held_back = std::mem::take(&mut reports.held_back);
        reports.last = Some(now);
        drop(reports);
        if held_back > 0 {
            tracing::error!("{why} (and {held_back} more audit failures in the last second)");
        } else {
            tracing::error!("{why}");
        }
    }
}

/// The audit file, with what is known of it.
#[derive(Debug)]
struct AuditFile {
    config: AuditFileConfig,
    file: std::fs::File,
    /// Bytes in the file, for rotation.
    size: u64,
    /// Device and inode of the open file, to notice when the path names another.
    identity: (u64, u64),
    checked: Instant,
}

impl AuditFile {
    fn open(config: &AuditFileConfig) -> std::io::Result<Self> {
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().append(true).create(true),
            0o600,
        )
        .open(&config.path)?;
        let meta = file.metadata()?;
        Ok(AuditFile {
            config: config.clone(),
            file,
            size: meta.len(),
            identity: (meta.dev(), meta.ino()),
            checked: Instant::now(),
        })
    }

    /// Appends one line, rotating first if it would pass `max_size`. `lost` hears of events
    /// that may have gone to a file no longer in place, and of a rotation that failed.
    fn append(&mut self, line: &str, lost: &mut dyn FnMut(String)) -> std::io::Result<()> {
        if self.checked.elapsed() >= PATH_CHECK_INTERVAL {
            self.checked = Instant::now();
            if !self.path_names_the_open_file() {
                lost(format!(
                    "the audit file {} was removed or replaced: events of up to the last {}s may \
                     be lost; writing to a new file there",
                    self.config.path.display(),
                    PATH_CHECK_INTERVAL.as_secs()
                ));
                *self = AuditFile::open(&self.config)?;
            }
        }
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.config.max_size {
            self.rotate(lost);
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // One write, so a line is never split between two writers or two files.
        self.file.write_all(&bytes)?;
        self.size += len;
        Ok(())
    }

    fn path_names_the_open_file(&self) -> bool {
        std::fs::metadata(&self.config.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity)
    }

    /// Whether the path itself (not what a symlink such as `/dev/stdout` points to) is a
    /// regular file, and the one open: only such a file is ever renamed.
    fn path_is_the_open_regular_file(&self) -> bool {
        std::fs::symlink_metadata(&self.config.path).is_ok_and(|meta| {
            meta.file_type().is_file() && (meta.dev(), meta.ino()) == self.identity
        })
    }

    /// `<path>.<keep-1>` → `<path>.<keep>`, ..., `<path>` → `<path>.1`, then a new `<path>`.
    /// Anything but our own regular file at the path (a device, a symlink, a file someone
    /// replaced) is never rotated: the line goes on to the open file. A rotation that fails
    /// keeps writing to the open file, counts from zero again (so it is not retried on every
    /// event) and is reported.
    fn rotate(&mut self, lost: &mut dyn FnMut(String)) {
        if !self.path_is_the_open_regular_file() {
            self.size = 0;
            return;
        }
        if let Err(e) = self.shift_and_reopen() {
            lost(format!(
                "cannot rotate the audit file {}: {e}; writing on to the open file",
                self.config.path.display()
            ));
            self.size = 0;
        }
    }

    fn shift_and_reopen(&mut self) -> std::io::Result<()> {
        let path = &self.config.path;
        if self.config.keep == 0 {
            std::fs::remove_file(path)?;
        } else {
            for n in (1..self.config.keep).rev() {
                match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(path, rotated(path, 1))?;
        }
        *self = AuditFile::open(&self.config)?;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sinks(dir: &Path, max_size: u64, keep: u32, failure: AuditFailure) -> AuditSinks {
        let log = LogConfig {
            audit_file: Some(AuditFileConfig {
                path: dir.join("audit.log"),
                max_size,
                keep,
            }),
            audit_failure: failure,
            ..LogConfig::default()
        };
        let failures = prometheus::Counter::new("f", "f").unwrap();
        AuditSinks::new(&log, failures).expect("open")
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Past `max_size` the file moves to `.1`, `.1` to `.2`, and the oldest beyond `keep` goes;
    /// every line lands whole in exactly one file.
    #[test]
    fn the_file_rotates_by_size_and_keeps_as_many_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let s = sinks(dir.path(), 4096, 2, AuditFailure::Open);
        let line = |i: usize| format!("{{\"n\":{i:04},\"pad\":\"{}\"}}", "x".repeat(1000));
        for i in 0..20 {
            assert!(s.write(&line(i)));
        }
        let path = dir.path().join("audit.log");
        let (now, one, two) = (
            lines(&path),
            lines(&rotated(&path, 1)),
            lines(&rotated(&path, 2)),
        );
        assert!(!rotated(&path, 3).exists(), "more kept than asked");
        for file in [&now, &one, &two] {
            assert!(!file.is_empty() && file.len() <= 4, "{}", file.len());
        }
        let kept: Vec<String> = [two, one, now].concat();
        let expected: Vec<String> = (20 - kept.len()..20).map(line).collect();
        assert_eq!(kept, expected, "lines lost, split or out of order");
        assert_eq!(s.failures.get(), 0.0);
    }

    /// A deleted file is noticed within a second, reported, and written anew.
    #[test]
    fn a_deleted_file_is_reported_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = sinks(dir.path(), 1 << 20, 1, AuditFailure::Open);
        let path = dir.path().join("audit.log");
        assert!(s.write("{\"n\":1}"));
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(PATH_CHECK_INTERVAL);
        assert!(s.write("{\"n\":2}"), "the event itself was written");
        assert_eq!(lines(&path), ["{\"n\":2}"]);
        assert_eq!(s.failures.get(), 1.0, "the deletion was not reported");
    }

    /// A path that is a symlink (`/dev/stdout` sent to a file) is written through and never
    /// renamed, however large the file behind it grows.
    #[test]
    fn a_symlink_is_never_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.log");
        let link = dir.path().join("audit.log");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let s = sinks(dir.path(), 4096, 2, AuditFailure::Open);
        for i in 0..20 {
            assert!(s.write(&format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(500))));
        }
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!rotated(&link, 1).exists(), "the symlink was rotated");
        assert_eq!(lines(&real).len(), 20);
        assert_eq!(s.failures.get(), 0.0);
    }

    /// A full disk (`/dev/full` answers every write with ENOSPC) fails the write: counted, and
    /// with `closed`, requests are refused until a write succeeds. `/dev/full` is never renamed.
    #[test]
    fn a_full_disk_is_counted_and_closed_mode_refuses() {
        let log = |failure| LogConfig {
            audit_file: Some(AuditFileConfig {
                path: "/dev/full".into(),
                max_size: 4096,
                keep: 1,
            }),
            audit_failure: failure,
            ..LogConfig::default()
        };
        for failure in [AuditFailure::Open, AuditFailure::Closed] {
            let failures = prometheus::Counter::new("f", "f").unwrap();
            let s = AuditSinks::new(&log(failure), failures).expect("open /dev/full");
            for _ in 0..10 {
                assert!(!s.write(&"x".repeat(1000)));
            }
            assert_eq!(s.failures.get(), 10.0);
            assert_eq!(s.refusing(), failure == AuditFailure::Closed);
        }
        assert!(
            Path::new("/dev/full").exists(),
            "rotation renamed /dev/full"
        );
        assert!(!Path::new("/dev/full.1").exists());
    }
}
