//! What a node writes to disk is for its own user only.

use crate::support::*;
use kes_cluster::Method;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_is_private_and_key_files_are_0600() {
    let _turn = crate::take_turn().await;
    // Snapshot often, so the snapshot file is written within the test.
    let n = TestNode::dev_with_config(Some("cluster:\n  snapshot_every: 3\n")).await;
    for i in 0..6 {
        let r = call(&n.admin(), Method::PUT, &format!("/v1/key/create/k{i}"), "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let t0 = Instant::now();
    while !n.file("snapshot.bin").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no snapshot was written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mode(&n.file("snapshot.bin")), 0o600, "the Raft snapshot");
    assert_eq!(mode(&n.data), 0o700);
    assert_eq!(mode(&n.file("state")), 0o700, "the state directory");
    for key in ["root.key", "admin.key", "server.key"] {
        assert_eq!(mode(&n.file(key)), 0o600, "{key}");
    }
}
