//! The cluster key and the keys derived from it.

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

/// The (storage-key version, storage key, MAC key) of the cluster key a rekey replaces.
pub type PreviousKeys = (u32, Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

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
    /// During a rekey: the previous (version, storage key, MAC key), for records not re-sealed
    /// or re-signed yet.
    pub previous: Option<PreviousKeys>,
}

impl Unsealed {
    /// The storage key of `version`, if this node holds it.
    pub fn storage_key_for(&self, version: u32) -> Option<&[u8; 32]> {
        if version == self.storage_version {
            return Some(&self.storage_key);
        }
        match &self.previous {
            Some((v, k, _)) if *v == version => Some(k),
            _ => None,
        }
    }

    /// The metadata MAC key of `version`, if this node holds it.
    pub fn mac_key_for(&self, version: u32) -> Option<&[u8; 32]> {
        if version == self.storage_version {
            return Some(&self.mac_key);
        }
        match &self.previous {
            Some((v, _, m)) if *v == version => Some(m),
            _ => None,
        }
    }

    /// Keeps the previous cluster key's storage key next to the current one (during a rekey).
    pub fn with_previous(mut self, previous: Unsealed) -> Self {
        self.previous = Some((
            previous.storage_version,
            previous.storage_key.clone(),
            previous.mac_key.clone(),
        ));
        self
    }
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unsealed(storage v{})", self.storage_version)
    }
}

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
            previous: None,
        }
    }

    /// The key bytes, for a provider to wrap. Never logged, never stored in plaintext.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key a provider unwrapped.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        ClusterKey(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ() {
        let u = ClusterKey::generate().derive(1);
        assert_ne!(u.storage_key.as_ref(), u.mac_key.as_ref());
        assert_ne!(u.mac_key.as_ref(), u.join_key.as_ref());
        assert!(!format!("{u:?}").contains(&hex::encode(u.storage_key.as_ref())));
    }
}
