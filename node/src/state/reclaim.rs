//! Freeing promptly what sled has let go of.
//!
//! sled frees replaced pages and written-out buffers through crossbeam-epoch, which runs
//! deferred frees only when a thread pins, and then at most 8 bags of 64 per 128 pins. A bulk
//! write defers far faster than that: a snapshot install of a million records (8 s) left
//! 1.8 GiB resident where the state needs 0.45 GiB, and a node that caught up by snapshot in a
//! 3-node cluster grew to 3.5 GiB. One thread that asks crossbeam to collect, a hundred times
//! a second, keeps up with the install; it costs next to nothing when there is nothing to free.

use std::time::Duration;

/// Collections per round: each runs up to 8 bags of up to 64 deferred frees.
const COLLECTIONS_PER_ROUND: usize = 64;

/// The pause between rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

/// Starts the reclaiming thread, once per process.
pub(super) fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sled-reclaim".into())
            .spawn(|| {
                loop {
                    for _ in 0..COLLECTIONS_PER_ROUND {
                        crossbeam_epoch::pin().flush();
                    }
                    std::thread::sleep(ROUND_PAUSE);
                }
            });
        if let Err(e) = spawned {
            // The node works without it, only with more memory after bulk writes.
            tracing::warn!("cannot start the thread that frees sled's deferred memory: {e}");
        }
    });
}
