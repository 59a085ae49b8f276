//! The cluster key and the keys derived from it.

use super::{SealError, nonce_at};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// 32 random bytes made once per cluster; wrapped by every seal's root key.
pub struct ClusterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The keys a node needs while it is unsealed. Zeroized when dropped.
pub struct Unsealed {
    /// Version of the storage key, recorded in every sealed record.
    pub storage_version: u32,
    /// Seals key records in log entries, state and snapshots.
    pub storage_key: Zeroizing<[u8; 32]>,
    /// Authenticates metadata records (policies, identities, enclaves, membership).
    pub mac_key: Zeroizing<[u8; 32]>,
    /// Proves that a joining node could unseal.
    pub join_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unsealed(storage v{})", self.storage_version)
    }
}

const WRAP_FORMAT: u8 = 1;

impl ClusterKey {
    /// A fresh random cluster key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        ClusterKey(k)
    }

    /// Derives the working keys. Distinct HKDF labels keep the uses apart, so a MAC key can
    /// never open a record and vice versa.
    pub fn derive(&self, storage_version: u32) -> Unsealed {
        let hk = Hkdf::<Sha256>::new(Some(b"kes-cluster v1"), self.0.as_ref());
        let expand = |label: &[u8]| {
            let mut out = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's limit, so this cannot fail.
            hk.expand(label, out.as_mut())
                .expect("HKDF output of 32 bytes is always valid");
            out
        };
        Unsealed {
            storage_version,
            storage_key: expand(format!("storage key {storage_version}").as_bytes()),
            mac_key: expand(b"metadata mac key"),
            join_key: expand(b"join key"),
        }
    }

    /// Wraps this key under a 32-byte root key with AES-256-GCM, bound to the cluster id so
    /// a copy cannot be moved to another cluster. Layout: format(1) ‖ nonce(12) ‖ ciphertext.
    pub fn wrap(&self, root: &[u8; 32], cluster_id: &str) -> Vec<u8> {
        let cipher = Aes256Gcm::new(root.into());
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = wrap_aad(cluster_id);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: self.0.as_ref(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(WRAP_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Reverses [`ClusterKey::wrap`].
    pub fn unwrap(wrapped: &[u8], root: &[u8; 32], cluster_id: &str) -> Result<Self, SealError> {
        if wrapped.len() != 1 + 12 + 32 + 16 || wrapped[0] != WRAP_FORMAT {
            return Err(SealError::WrongRootKey);
        }
        let cipher = Aes256Gcm::new(root.into());
        let aad = wrap_aad(cluster_id);
        let pt = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce_at(wrapped, 1),
                    Payload {
                        msg: &wrapped[13..],
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::WrongRootKey)?,
        );
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&pt);
        Ok(ClusterKey(k))
    }
}

fn wrap_aad(cluster_id: &str) -> Vec<u8> {
    let mut aad = b"kes-cluster cluster key v1\0".to_vec();
    aad.extend_from_slice(cluster_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_and_binds_root_and_cluster() {
        let ck = ClusterKey::generate();
        let root = [7u8; 32];
        let w = ck.wrap(&root, "c1");
        let back = ClusterKey::unwrap(&w, &root, "c1").expect("unwrap");
        assert_eq!(back.0.as_ref(), ck.0.as_ref());
        assert!(ClusterKey::unwrap(&w, &[8u8; 32], "c1").is_err());
        assert!(ClusterKey::unwrap(&w, &root, "c2").is_err());
        assert!(ClusterKey::unwrap(&w[..10], &root, "c1").is_err());
    }

    #[test]
    fn derived_keys_differ() {
        let u = ClusterKey::generate().derive(1);
        assert_ne!(u.storage_key.as_ref(), u.mac_key.as_ref());
        assert_ne!(u.mac_key.as_ref(), u.join_key.as_ref());
        assert!(!format!("{u:?}").contains(&hex::encode(u.storage_key.as_ref())));
    }
}
