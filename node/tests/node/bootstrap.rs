//! A node that dies while it founds its cluster finishes the job at its next start.

use crate::support::{TestNode, call, free_port};
use kes_cluster::Method;
use std::time::{Duration, Instant};

/// Before: Raft was initialised, the process died before `Init` was committed, and every later
/// start skipped the bootstrap (Raft was initialised) yet had no cluster key: sealed forever.
/// After: the start sees a membership of this node alone and no cluster record, and finishes.
#[tokio::test]
async fn a_bootstrap_cut_between_initialize_and_init_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let args = vec![
        "--dev".to_owned(),
        "--addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ];
    let mut n = TestNode::with_args(dir, data, port, args);
    n.env
        .push(("KES_TEST_CRASH_AFTER_INITIALIZE".into(), "1".into()));
    n.spawn();
    let t0 = Instant::now();
    while n.is_running() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the failpoint never fired:\n{}",
            n.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        n.log().contains("dying between initialize and Init"),
        "{}",
        n.log()
    );

    n.env.clear();
    n.start().await;
    let admin = n.admin();
    let r = call(&admin, Method::PUT, "/v1/key/create/after-restart", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&admin, Method::PUT, "/v1/key/generate/after-restart", "{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        n.log().contains("interrupted before Init: finishing it"),
        "{}",
        n.log()
    );
}
