//! Clock skew for the `loss-skew` scenario, with libfaketime (Debian's `faketime`): every
//! node runs with the library preloaded and reads its offset from a file of its own, which the
//! harness rewrites to step that node's wall clock.
//!
//! Only the wall clock (`CLOCK_REALTIME`) moves. The monotonic and boot clocks stay true
//! (`FAKETIME_DONT_FAKE_MONOTONIC`): leases and timeouts run on those, and no kernel steps
//! them, whereas an NTP correction or a bad RTC steps the wall clock all the time. A node whose
//! wall clock is off must still serve correctly; what it stamps (audit times, `created_at`) is
//! off by as much.

use std::path::{Path, PathBuf};

/// Where Debian installs the thread-safe libfaketime.
const LIBRARY_DIRS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
];

/// The per-node offset files of one scenario.
pub struct Clocks {
    dir: tempfile::TempDir,
    library: PathBuf,
}

impl Clocks {
    /// Offset files for `nodes` nodes, every clock true to begin with. The error says what to
    /// install when libfaketime is missing.
    pub fn new(nodes: usize) -> Result<Clocks, String> {
        let library = LIBRARY_DIRS
            .iter()
            .map(|d| Path::new(d).join("libfaketimeMT.so.1"))
            .find(|p| p.exists())
            .ok_or("libfaketime is not installed: apt-get install faketime")?;
        let dir = tempfile::Builder::new()
            .prefix("jepsen-lite-clock-")
            .tempdir()
            .map_err(|e| format!("clock files: {e}"))?;
        let clocks = Clocks { dir, library };
        for i in 0..nodes {
            clocks.set(i, 0)?;
        }
        Ok(clocks)
    }

    fn file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", i + 1))
    }

    /// The environment that makes node `i` read its wall clock through its offset file.
    pub fn env(&self, i: usize) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", self.library.display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                self.file(i).display().to_string(),
            ),
            // Reread once a second: rereading on every clock call would slow the node down.
            ("FAKETIME_CACHE_DURATION", "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Steps node `i`'s wall clock to `seconds` away from the true time.
    pub fn set(&self, i: usize, seconds: i64) -> Result<(), String> {
        std::fs::write(self.file(i), format!("{seconds:+}s\n"))
            .map_err(|e| format!("clock file of node {}: {e}", i + 1))
    }
}
