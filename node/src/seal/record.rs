//! Sealing of key records with the storage key.
//!
//! The whole record (material, cipher, HMAC key, creation facts) is sealed, under an AAD that
//! binds it to its place: format version, storage-key version, enclave, name and creation id.
//! A record copied to another name, or a deleted-and-recreated name, never opens as the other.
//! Each AAD field is length-prefixed so that no two field lists encode alike.

use super::{SealError, Unsealed, nonce_at};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const RECORD_FORMAT: u8 = 1;
const HEADER: usize = 1 + 4 + 12;

/// Where a sealed record belongs.
#[derive(Debug, Clone, Copy)]
pub struct RecordAad<'a> {
    /// The enclave of the key.
    pub enclave: &'a str,
    /// The key name.
    pub name: &'a str,
    /// A unique id of this incarnation of the name, chosen when the key is created.
    pub creation_id: u128,
}

impl RecordAad<'_> {
    fn encode(&self, storage_version: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.enclave.len() + self.name.len());
        for field in [
            &[RECORD_FORMAT][..],
            &storage_version.to_be_bytes()[..],
            self.enclave.as_bytes(),
            self.name.as_bytes(),
            &self.creation_id.to_be_bytes()[..],
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

/// Seals `plaintext`. Layout: format(1) ‖ storage-key version(4, BE) ‖ nonce(12) ‖ ciphertext.
pub fn seal_record(keys: &Unsealed, aad: RecordAad<'_>, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new((&*keys.storage_key).into());
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let ad = aad.encode(keys.storage_version);
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .expect("AES-GCM encryption of a small record cannot fail");
    let mut out = Vec::with_capacity(HEADER + ct.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&keys.storage_version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The storage-key version in a sealed record's header (readable without any key).
pub fn record_version(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER + 16 || sealed[0] != RECORD_FORMAT {
        return None;
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&sealed[1..5]);
    Some(u32::from_be_bytes(v))
}

/// Bytes shaped like a record sealed under storage-key version `version`, for tests of the
/// state machine, which reads a record's version and never opens it.
#[cfg(test)]
pub(crate) fn record_shaped_under(version: u32) -> Vec<u8> {
    let mut r = vec![RECORD_FORMAT];
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&[0; HEADER - 5 + 32]);
    r
}

/// Opens a record sealed by [`seal_record`].
pub fn open_record(
    keys: &Unsealed,
    aad: RecordAad<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < HEADER + 16 || sealed[0] != RECORD_FORMAT {
        return Err(SealError::RecordNotAuthentic);
    }
    let version = record_version(sealed).ok_or(SealError::RecordNotAuthentic)?;
    let key = keys
        .storage_key_for(version)
        .ok_or(SealError::UnknownKeyVersion(version))?;
    let cipher = Aes256Gcm::new(key.into());
    let ad = aad.encode(version);
    cipher
        .decrypt(
            &nonce_at(sealed, 5),
            Payload {
                msg: &sealed[HEADER..],
                aad: &ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::RecordNotAuthentic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::ClusterKey;

    #[test]
    fn records_open_only_in_their_place() {
        let keys = ClusterKey::generate().derive(1);
        let aad = RecordAad {
            enclave: "default",
            name: "k",
            creation_id: 42,
        };
        let sealed = seal_record(&keys, aad, b"secret record");
        assert_eq!(
            open_record(&keys, aad, &sealed).expect("open").as_slice(),
            b"secret record"
        );
        let moved = RecordAad { name: "k2", ..aad };
        assert!(open_record(&keys, moved, &sealed).is_err());
        let recreated = RecordAad {
            creation_id: 43,
            ..aad
        };
        assert!(open_record(&keys, recreated, &sealed).is_err());
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        let a = RecordAad {
            enclave: "ab",
            name: "c",
            creation_id: 1,
        };
        let b = RecordAad {
            enclave: "a",
            name: "bc",
            creation_id: 1,
        };
        let s = seal_record(&keys, a, b"x");
        assert!(open_record(&keys, b, &s).is_err());
        let other = ClusterKey::generate().derive(1);
        assert!(open_record(&other, aad, &sealed).is_err());
        assert!(open_record(&keys, aad, &sealed[..5]).is_err());
    }
}
