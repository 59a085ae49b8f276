//! Freeing promptly what sled has let go of.
//!
//! sled frees replaced pages and written-out buffers through crossbeam-epoch, which runs
//! deferred frees only when a thread pins, and then at most 8 bags of 64 per 128 pins. A bulk
//! write defers far faster than that: a snapshot install of a million records (8 s) left
//! 1.8 GiB resident where the state needs 0.45 GiB, and a node that caught up by snapshot in a
//! 3-node cluster grew to 3.5 GiB. One thread that asks crossbeam to collect, a hundred times
//! a second, keeps up with the install; it costs next to nothing when there is nothing to free.
//! Every ten seconds it also hands the heap pages glibc holds free back to the OS.

use std::time::Duration;

/// Collections per round: each runs up to 8 bags of up to 64 deferred frees.
const COLLECTIONS_PER_ROUND: usize = 64;

/// The pause between rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

/// How often free heap pages go back to the OS ([`return_free_heap`]).
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// A trim that returned at least this much is logged.
const TRIM_WORTH_LOGGING: u64 = 64 << 20;

/// Starts the reclaiming thread, once per process.
pub(super) fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sled-reclaim".into())
            .spawn(|| {
                let mut last_trim = std::time::Instant::now();
                loop {
                    for _ in 0..COLLECTIONS_PER_ROUND {
                        crossbeam_epoch::pin().flush();
                    }
                    std::thread::sleep(ROUND_PAUSE);
                    if last_trim.elapsed() >= TRIM_INTERVAL {
                        return_free_heap();
                        last_trim = std::time::Instant::now();
                    }
                }
            });
        if let Err(e) = spawned {
            // The node works without it, only with more memory after bulk writes.
            tracing::warn!("cannot start the thread that frees sled's deferred memory: {e}");
        }
    });
}

/// What hands free heap pages back to the OS: set by the binary (`main.rs`), because this
/// crate has no unsafe code and glibc's `malloc_trim` is a foreign call.
static HEAP_TRIMMER: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what [`return_free_heap`] calls; the first call wins.
pub fn set_heap_trimmer(trim: fn()) {
    let _ = HEAP_TRIMMER.set(trim);
}

/// Hands the heap pages that are free back to the OS. glibc keeps what a thread freed in its
/// arena for that arena's next allocations, and a node that bulk-loaded (a snapshot install
/// and the catch-up after it, or a full key list that fills sled's page cache) keeps the
/// peak: a node that caught up with a million keys by snapshot stayed at 1,076 MiB, and went
/// from 919 to 737 MiB resident at the first trim after its install. The walk holds each
/// arena's lock while it runs, which is why it runs every [`TRIM_INTERVAL`] and not after
/// every free, as mimalloc's purging did (which cost writes their latency: see
/// docs/bench/analysis.md).
fn return_free_heap() {
    let Some(trim) = HEAP_TRIMMER.get() else {
        return;
    };
    let before = resident_bytes();
    let started = std::time::Instant::now();
    trim();
    let took = started.elapsed();
    if let (Some(before), Some(after)) = (before, resident_bytes())
        && before >= after + TRIM_WORTH_LOGGING
    {
        tracing::info!(
            "returned {} MiB of freed heap to the OS in {took:?}: resident {} MiB now",
            (before - after) >> 20,
            after >> 20
        );
    }
}

/// This process's resident set, from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
