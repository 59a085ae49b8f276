//! Failpoints for the process-level tests, read from the environment in debug builds only: a
//! release build compiles none of them in.
//!
//! - `KES_TEST_NEVER_CAMPAIGN`: this node never starts an election (it still votes), so a
//!   test can choose which node leads.
//! - `KES_TEST_CRASH_AFTER_INITIALIZE`: a bootstrapping node dies (as by `kill -9`) right
//!   after Raft is initialised, before the cluster's `Init` is committed.
//! - `KES_TEST_SLOW_UNSEAL_MS`: this node's seal takes that many milliseconds to unwrap a
//!   cluster key, as a remote HSM or KMS may, so it holds a new cluster key late.
//! - `KES_TEST_DISK_IMAGE`: after every sync of the state store, a copy of the store goes to
//!   that directory: what the disk would hold if the power failed before the next sync.
//! - `KES_TEST_SLOW_APPLY_MS`: this node's state machine waits that many milliseconds before
//!   applying each batch of committed entries, so it lags behind its commit index.
//! - `KES_TEST_SLOW_LOG_SYNC_MS`: this node's Raft log syncer waits that many milliseconds
//!   before each fdatasync, so its appends are acknowledged late (a slow disk).
//! - `KES_TEST_LATE_APPLY_REPORT_MS`: this node's state machine tells openraft that many
//!   milliseconds late that it has applied a batch (its store already holds the batch).
//! - `KES_TEST_RESTORE_PAUSE_MS`: a restore through this node waits that many milliseconds
//!   after its last chunk, before it commits the finish that adopts the snapshot's key.

/// Applies `KES_TEST_NEVER_CAMPAIGN`: whether this node must never start an election.
pub(crate) fn never_campaign() -> bool {
    #[cfg(debug_assertions)]
    if std::env::var_os("KES_TEST_NEVER_CAMPAIGN").is_some() {
        tracing::warn!("test failpoint: this node never starts an election");
        return true;
    }
    false
}

/// Applies `KES_TEST_CRASH_AFTER_INITIALIZE`.
pub(crate) fn crash_after_initialize() {
    #[cfg(debug_assertions)]
    if std::env::var_os("KES_TEST_CRASH_AFTER_INITIALIZE").is_some() {
        tracing::warn!("test failpoint: dying between initialize and Init");
        std::process::abort();
    }
}

/// Applies `KES_TEST_SLOW_UNSEAL_MS`, before each unseal.
pub(crate) async fn slow_unseal() {
    wait_for("KES_TEST_SLOW_UNSEAL_MS").await;
}

/// Applies `KES_TEST_SLOW_APPLY_MS`, before each batch of entries is applied.
pub(crate) async fn slow_apply() {
    wait_for("KES_TEST_SLOW_APPLY_MS").await;
}

/// Applies `KES_TEST_SLOW_LOG_SYNC_MS`, on the Raft log syncer's thread before each sync.
pub(crate) fn slow_log_sync() {
    if let Some(delay) = delay_of("KES_TEST_SLOW_LOG_SYNC_MS") {
        std::thread::sleep(delay);
    }
}

/// Applies `KES_TEST_RESTORE_PAUSE_MS`, before a restore commits its finish.
pub(crate) async fn restore_pause() {
    wait_for("KES_TEST_RESTORE_PAUSE_MS").await;
}

/// Applies `KES_TEST_DISK_IMAGE`, right after the store in `state_dir` was synced.
#[cfg_attr(not(debug_assertions), allow(unused_variables))]
pub(crate) fn disk_image(state_dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(debug_assertions)]
    if let Some(image) = std::env::var_os("KES_TEST_DISK_IMAGE") {
        // One image at a time: two syncs may end together.
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
        let image = std::path::PathBuf::from(image);
        let _ = std::fs::remove_dir_all(&image);
        copy_dir(state_dir, &image)?;
    }
    Ok(())
}

#[cfg(debug_assertions)]
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Applies `KES_TEST_LATE_APPLY_REPORT_MS`, after a batch is applied and before openraft hears.
pub(crate) async fn late_apply_report() {
    wait_for("KES_TEST_LATE_APPLY_REPORT_MS").await;
}

/// Sleeps the milliseconds that the variable `name` holds, if it is set.
async fn wait_for(name: &str) {
    if let Some(delay) = delay_of(name) {
        tokio::time::sleep(delay).await;
    }
}

/// The milliseconds that the failpoint `name` sets, in a debug build.
#[cfg_attr(not(debug_assertions), allow(unused_variables))]
fn delay_of(name: &str) -> Option<std::time::Duration> {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        return Some(std::time::Duration::from_millis(ms));
    }
    None
}
