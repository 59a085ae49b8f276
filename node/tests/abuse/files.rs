//! What a node writes to disk is for its own user only.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_is_private_and_key_files_are_0600() {
    let n = TestNode::dev().await;
    assert_eq!(mode(&n.data), 0o700);
    assert_eq!(mode(&n.file("state")), 0o700, "the state directory");
    for key in ["root.key", "admin.key", "server.key"] {
        assert_eq!(mode(&n.file(key)), 0o600, "{key}");
    }
}
