//! The data directory: created readable by the node's user only.
//!
//! It holds sealed records, the Raft log and snapshots. Sealed is not public: a copy lets
//! anyone who later obtains the root key read every key, so the directory is 0700 from the
//! first moment, not after an operator remembers to tighten it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700. An existing directory is left as it
/// is, but one that others may read gets a warning.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    crate::dir_sync::create_dirs_durably(
        std::fs::DirBuilder::new().recursive(true).mode(0o700),
        dir,
    )?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the data dir {} has mode {:o}: other users may read it; `chmod 700` it",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_dirs_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        create_private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700, "created parents too");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "creating again changes nothing");
    }
}
