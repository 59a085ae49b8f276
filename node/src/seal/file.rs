//! The `file` root key: 32 raw bytes in a file of mode 0600, for development and tests.

use super::{ProviderError, ProviderFuture, RootKeyProvider, SealError, nonce_at};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
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
            .and_then(|_| crate::dir_sync::sync_parent(path))
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

const WRAP_FORMAT: u8 = 1;

/// The `file` seal: the key file is read at every use, so an operator who fixes a wrong key
/// file sees the node unseal at its next attempt, without a restart.
#[derive(Debug, Clone)]
pub struct FileSeal {
    path: PathBuf,
}

impl FileSeal {
    /// The seal of the key file at `path` (which must exist: see [`FileRootKey::load`]).
    pub fn new(path: &Path) -> Result<Self, SealError> {
        FileRootKey::load(path)?;
        Ok(FileSeal {
            path: path.to_owned(),
        })
    }
}

fn load_for_use(path: &Path) -> Result<FileRootKey, ProviderError> {
    FileRootKey::load(path).map_err(|e| ProviderError::Config(e.to_string()))
}

impl RootKeyProvider for FileSeal {
    fn id(&self) -> String {
        match FileRootKey::load(&self.path) {
            Ok(k) => k.id(),
            Err(_) => format!("file:{} (unreadable)", self.path.display()),
        }
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move { load_for_use(&self.path)?.wrap(plaintext, aad).await })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        Box::pin(async move { load_for_use(&self.path)?.unwrap(wrapped, aad).await })
    }
}

impl RootKeyProvider for FileRootKey {
    /// A fingerprint of the key, not its path: nodes keep the same key at different paths, and
    /// their copies must match. The fingerprint is a one-way hash and reveals nothing.
    fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"kes-cluster file seal id\0");
        h.update(self.key.as_ref());
        format!("file:{}", hex::encode(&h.finalize()[..8]))
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let cipher = Aes256Gcm::new((&*self.key).into());
            let mut nonce = [0u8; 12];
            rand::rng().fill_bytes(&mut nonce);
            let ct = cipher
                .encrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: plaintext,
                        aad,
                    },
                )
                .map_err(|_| ProviderError::Refused("AES-GCM wrap failed".into()))?;
            let mut out = Vec::with_capacity(1 + 12 + ct.len());
            out.push(WRAP_FORMAT);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&ct);
            Ok(out)
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        Box::pin(async move {
            let refused = || {
                ProviderError::Refused(format!(
                    "the root key {} cannot unwrap the cluster key: wrong root key, or the stored copy was altered",
                    self.path.display()
                ))
            };
            if wrapped.len() != 1 + 12 + 32 + 16 || wrapped[0] != WRAP_FORMAT {
                return Err(refused());
            }
            let cipher = Aes256Gcm::new((&*self.key).into());
            let pt = Zeroizing::new(
                cipher
                    .decrypt(
                        &nonce_at(wrapped, 1),
                        Payload {
                            msg: &wrapped[13..],
                            aad,
                        },
                    )
                    .map_err(|_| refused())?,
            );
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(&pt);
            Ok(k)
        })
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

    #[tokio::test]
    async fn wraps_and_unwraps_bound_to_the_aad() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = FileRootKey::create(&dir.path().join("a.key")).expect("create");
        let other = FileRootKey::create(&dir.path().join("b.key")).expect("create");
        let w = k.wrap(&[5u8; 32], b"c1").await.expect("wrap");
        assert_eq!(*k.unwrap(&w, b"c1").await.expect("unwrap"), [5u8; 32]);
        assert!(matches!(
            k.unwrap(&w, b"c2").await,
            Err(ProviderError::Refused(_))
        ));
        assert!(matches!(
            other.unwrap(&w, b"c1").await,
            Err(ProviderError::Refused(_))
        ));
        assert!(k.unwrap(&w[..10], b"c1").await.is_err());
        assert_ne!(k.id(), other.id());
        assert!(!k.id().contains(&hex::encode(k.key())));
    }
}
