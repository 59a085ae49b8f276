//! The `file` root key: 32 raw bytes in a file of mode 0600, for development and tests.

use super::SealError;
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A root key read from a file.
pub struct FileRootKey {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for FileRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileRootKey({})", self.path.display())
    }
}

impl FileRootKey {
    /// Reads the key. The file must hold exactly 32 bytes and be private to its owner, because
    /// whoever reads it can open every sealed record.
    pub fn load(path: &Path) -> Result<Self, SealError> {
        let err = |reason: String| SealError::RootKeyFile {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            err(format!(
                "{e}; create one with 32 random bytes (e.g. `head -c 32 /dev/urandom > {0}; chmod 600 {0}`)",
                path.display()
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets others read it; run `chmod 600 {}`",
                meta.permissions().mode() & 0o777,
                path.display()
            )));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        if bytes.len() != 32 {
            return Err(err(format!(
                "holds {} bytes; a root key file holds exactly 32 raw bytes",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        Ok(FileRootKey {
            path: path.to_owned(),
            key,
        })
    }

    /// Writes a new random key with mode 0600, refusing to overwrite an existing file.
    pub fn create(path: &Path) -> Result<Self, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| SealError::RootKeyFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        f.write_all(key.as_ref())
            .and_then(|_| f.sync_all())
            .map_err(|e| SealError::RootKeyFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(FileRootKey {
            path: path.to_owned(),
            key,
        })
    }

    /// The key bytes, for wrapping and unwrapping the cluster key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_and_refuse_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("root.key");
        let k = FileRootKey::create(&p).expect("create");
        assert_eq!(FileRootKey::load(&p).expect("load").key(), k.key());
        assert!(FileRootKey::create(&p).is_err(), "must not overwrite");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(FileRootKey::load(&p).is_err(), "world-readable key refused");
        let short = dir.path().join("short.key");
        std::fs::write(&short, b"abc").expect("write");
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = FileRootKey::load(&short).expect_err("short key");
        assert!(e.to_string().contains("exactly 32"));
    }
}
