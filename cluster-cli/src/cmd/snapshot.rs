//! `kes-cluster snapshot save|restore FILE`.
//!
//! A snapshot stays sealed under the cluster's root key: the file is useless
//! without it, but it is still written owner-only, like every key file here.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use kes_cluster::client::{MEMBERSHIP_TIMEOUT, explain_not_a_cluster};
use kes_cluster::{Client, Error, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Write a consistent snapshot of the cluster state to FILE (mode 0600).
    Save {
        /// Where to write it.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(short, long)]
        force: bool,
    },
    /// Restore a snapshot into a new, empty cluster (same root key).
    Restore {
        /// A file written by `snapshot save`.
        file: PathBuf,
    },
}

pub(crate) async fn run(command: SnapshotCommand, client: &Client) -> Result<String> {
    let client = client.with_timeout(MEMBERSHIP_TIMEOUT);
    match command {
        SnapshotCommand::Save { file, force } => {
            // Refuse before a possibly long download, not after.
            if !force && fs::symlink_metadata(&file).is_ok() {
                return Err(exists(&file));
            }
            let snapshot = client
                .cluster_snapshot()
                .await
                .map_err(explain_not_a_cluster)?;
            save(&file, &snapshot, force)?;
            Ok(format!(
                "Wrote a snapshot of {} to {}.\n",
                size(snapshot.len()),
                file.display()
            ))
        }
        SnapshotCommand::Restore { file } => {
            let snapshot = fs::read(&file).map_err(|e| Error::file("read", &file, e))?;
            let len = snapshot.len();
            let answer = client
                .cluster_restore(snapshot)
                .await
                .map_err(explain_not_a_cluster)?;
            let mut text = format!("Restored {} from {}.\n", size(len), file.display());
            let answer = String::from_utf8_lossy(&answer);
            if !answer.trim().is_empty() {
                text.push_str(answer.trim());
                text.push('\n');
            }
            Ok(text)
        }
    }
}

/// Writes `data` to `file` with mode 0600. Without `force` the file must not
/// exist; with it, an old file is replaced only once the new one is complete
/// (written beside it, then renamed over it).
fn save(file: &Path, data: &[u8], force: bool) -> Result<()> {
    let target = if force {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name =
            name.ok_or_else(|| Error::Config(format!("{} does not name a file", file.display())))?;
        file.with_file_name(format!(".{name}.partial"))
    } else {
        file.to_path_buf()
    };
    write_new(&target, data, force)?;
    if force {
        fs::rename(&target, file).map_err(|e| {
            let _ = fs::remove_file(&target);
            Error::file("replace", file, e)
        })?;
    }
    Ok(())
}

fn write_new(path: &Path, data: &[u8], replace: bool) -> Result<()> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists && !replace {
            exists(path)
        } else {
            Error::file("write", path, e)
        }
    };
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut out = options.open(path).map_err(io)?;
    let written = out
        .set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| out.write_all(data))
        .and_then(|()| out.sync_all());
    if let Err(e) = written {
        // Leave no truncated snapshot behind; the error says what happened.
        let _ = fs::remove_file(path);
        return Err(io(e));
    }
    Ok(())
}

fn exists(file: &Path) -> Error {
    Error::Config(format!(
        "{} already exists: pass --force to replace it",
        file.display()
    ))
}

/// `1234 bytes (1.2 KiB)`.
fn size(bytes: usize) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{bytes} bytes ({:.1} KiB)", bytes as f64 / 1024.0),
        _ => format!("{bytes} bytes ({:.1} MiB)", bytes as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saving_never_clobbers_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.bin");
        save(&file, b"one", false).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = save(&file, b"two", false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"one");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        save(&file, b"three", true).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"three");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no partial file is left");
        assert!(save(&dir.path().join("no/such/dir/f"), b"x", false).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size(12), "12 bytes");
        assert_eq!(size(2048), "2048 bytes (2.0 KiB)");
        assert_eq!(size(3 * 1_048_576), "3145728 bytes (3.0 MiB)");
    }
}
