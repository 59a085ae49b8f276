//! Failpoints for the process-level tests, read from the environment in debug builds only: a
//! release build compiles none of them in.
//!
//! - `KES_TEST_NEVER_CAMPAIGN`: this node never starts an election (it still votes), so a
//!   test can choose which node leads.
//! - `KES_TEST_CRASH_AFTER_INITIALIZE`: a bootstrapping node dies (as by `kill -9`) right
//!   after Raft is initialised, before the cluster's `Init` is committed.
//! - `KES_TEST_SLOW_UNSEAL_MS`: this node's seal takes that many milliseconds to unwrap a
//!   cluster key, as a remote HSM or KMS may, so it holds a new cluster key late.

use crate::raft::Raft;

/// Applies `KES_TEST_NEVER_CAMPAIGN`.
#[cfg_attr(not(debug_assertions), allow(unused_variables))]
pub(super) fn never_campaign(raft: &Raft) {
    #[cfg(debug_assertions)]
    if std::env::var_os("KES_TEST_NEVER_CAMPAIGN").is_some() {
        tracing::warn!("test failpoint: this node never starts an election");
        raft.runtime_config().elect(false);
    }
}

/// Applies `KES_TEST_CRASH_AFTER_INITIALIZE`.
pub(super) fn crash_after_initialize() {
    #[cfg(debug_assertions)]
    if std::env::var_os("KES_TEST_CRASH_AFTER_INITIALIZE").is_some() {
        tracing::warn!("test failpoint: dying between initialize and Init");
        std::process::abort();
    }
}

/// Applies `KES_TEST_SLOW_UNSEAL_MS`, before each unseal.
pub(super) async fn slow_unseal() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("KES_TEST_SLOW_UNSEAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
