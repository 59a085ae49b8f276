//! Making new directory entries survive a crash.
//!
//! On Linux, fsync on a file makes its bytes durable but not its name: a file (or directory)
//! that was just created, or renamed into place, can vanish in a power loss until the
//! directory that holds it is fsync'ed too. Every file the node writes before it acknowledges
//! anything goes through [`sync_parent`] once it is made (the durability test under
//! `node/tests/node/durability.rs` checks this with strace).

use std::path::Path;

/// fsyncs the directory `dir`, so the entries made in it so far are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// fsyncs the directory that holds `path` (relative paths: the current directory).
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and its missing parents with `builder`, then fsyncs the parent of every
/// directory it made, top down, so the whole new path survives a crash.
pub(crate) fn create_dirs_durably(
    builder: &std::fs::DirBuilder,
    dir: &Path,
) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    builder.create(dir)?;
    for made in missing.iter().rev() {
        sync_parent(made)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_missing_level() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/c");
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        create_dirs_durably(&b, &dir).unwrap();
        assert!(dir.is_dir());
        create_dirs_durably(&b, &dir).unwrap();
        sync_parent(Path::new("relative-name")).unwrap();
    }
}
