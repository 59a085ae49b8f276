//! A key's versions. A rotation adds one; encrypt and generate use the newest; decrypt tries
//! each retained version, newest first, and the AEAD tag tells which one made a ciphertext (a
//! wrong key fails authentication, it never yields a wrong plaintext). KES ciphertexts name no
//! version, and MinIO sends none back, so trying is the only way that keeps every KES client
//! working.
//!
//! The HMAC key never changes: each new version carries the HMAC key of the version before it,
//! so every version holds the first one's. MinIO derives its root credentials from the HMAC of
//! its default key; an HMAC that changed with a rotation would lock it out.
//!
//! At rest, a key that was never rotated is exactly what it was before versions existed: the
//! KES protobuf record of its one key. Once rotated, it is [`MAGIC`] followed by a MessagePack
//! list of (version number, KES protobuf record) pairs and the minimum version that may
//! decrypt. The minimum is sealed with the versions so that someone who can write the data dir
//! cannot lower it: the copy in the key's entry beside the sealed record must agree with it.
//! Records written before the minimum was sealed start with [`MAGIC_V1`] and carry none; for
//! them the entry's copy is all there is, until their next change writes the current format.

use super::at_rest::{KeyFormatError, StoredKey, encode_protobuf, parse_protobuf};
use super::ciphertext;
use super::key::{DataKey, DecryptError, NoHmacKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The first bytes of a rotated key's record. A KES protobuf record starts with a field tag,
/// never with a zero byte.
const MAGIC: &[u8] = b"\0kes-cluster key versions\x02";

/// The first bytes of a rotated key's record written before the minimum decrypt version was
/// sealed with the versions (read, never written).
const MAGIC_V1: &[u8] = b"\0kes-cluster key versions\x01";

/// The most versions a record may hold: far above any `max_versions`, so that a damaged count
/// cannot make decoding allocate without bound.
const MOST_VERSIONS: usize = 100_000;

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    /// 1 for the key as created; each rotation adds one.
    pub number: u32,
    /// The key, as KES stores it.
    pub stored: StoredKey,
}

/// The retained versions of a key, oldest first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersions {
    versions: Vec<KeyVersion>,
    /// The lowest version that may decrypt (0 or 1: every one), as sealed; `None` for a
    /// record in the format that did not seal it.
    min_decrypt: Option<u32>,
}

/// A rotation, retirement or minimum version that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Retiring every version, the newest included.
    #[error("cannot retire the newest version ({0}): retire versions below it")]
    RetireNewest(u32),
    /// The version numbers ran out.
    #[error("the key has reached the highest version number")]
    Exhausted,
    /// A minimum decrypt version above the newest, which would leave nothing to decrypt.
    #[error("the key's newest version is {0}")]
    MinAboveNewest(u32),
}

/// The at-rest shape of a rotated key.
#[derive(Serialize, Deserialize)]
struct AtRest {
    versions: Vec<(u32, serde_bytes::ByteBuf)>,
    min_decrypt: u32,
}

/// The at-rest shape of a rotated key written before the minimum was sealed.
#[derive(Serialize, Deserialize)]
struct AtRestV1 {
    versions: Vec<(u32, serde_bytes::ByteBuf)>,
}

impl KeyVersions {
    /// A key as created: version 1 alone.
    pub fn first(stored: StoredKey) -> KeyVersions {
        KeyVersions {
            versions: vec![KeyVersion { number: 1, stored }],
            min_decrypt: Some(0),
        }
    }

    /// Reads a record written by [`KeyVersions::encode`], or a plain KES protobuf record (a
    /// key never rotated, or written before versions existed): version 1.
    pub fn decode(record: &[u8]) -> Result<KeyVersions, KeyFormatError> {
        let unknown = |_| KeyFormatError::UnknownEncoding;
        let (listed, min_decrypt) = if let Some(rest) = record.strip_prefix(MAGIC) {
            let r = crate::msgpack::from_slice::<AtRest>(rest).map_err(unknown)?;
            (r.versions, Some(r.min_decrypt))
        } else if let Some(rest) = record.strip_prefix(MAGIC_V1) {
            let r = crate::msgpack::from_slice::<AtRestV1>(rest).map_err(unknown)?;
            (r.versions, None)
        } else {
            return Ok(KeyVersions::first(parse_protobuf(record)?));
        };
        let at_rest: Zeroizing<Vec<(u32, Zeroizing<Vec<u8>>)>> = Zeroizing::new(
            listed
                .into_iter()
                .map(|(n, b)| (n, Zeroizing::new(b.into_vec())))
                .collect(),
        );
        if at_rest.is_empty() || at_rest.len() > MOST_VERSIONS {
            return Err(KeyFormatError::UnknownEncoding);
        }
        let mut versions = Vec::with_capacity(at_rest.len());
        for (number, bytes) in at_rest.iter() {
            if versions
                .last()
                .is_some_and(|v: &KeyVersion| v.number >= *number)
            {
                return Err(KeyFormatError::UnknownEncoding);
            }
            versions.push(KeyVersion {
                number: *number,
                stored: parse_protobuf(bytes)?,
            });
        }
        Ok(KeyVersions {
            versions,
            min_decrypt,
        })
    }

    /// The record to seal: plain KES protobuf while the key is version 1 alone (no minimum
    /// can restrict it then). A record read in the format that did not seal the minimum is
    /// written in it again, so a minimum never taken from its entry is never written as 0.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        if let [only] = self.versions.as_slice() {
            if only.number == 1 {
                return encode_protobuf(&only.stored);
            }
        }
        // By hand, into one buffer sized up front: no copy of a record is left behind in a
        // regrown or intermediate buffer.
        let records: Vec<Zeroizing<Vec<u8>>> = self
            .versions
            .iter()
            .map(|v| encode_protobuf(&v.stored))
            .collect();
        let size = MAGIC.len() + 20 + records.iter().map(|r| r.len() + 16).sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(size));
        out.extend_from_slice(if self.min_decrypt.is_some() {
            MAGIC
        } else {
            MAGIC_V1
        });
        let write = |out: &mut Vec<u8>| -> Result<(), rmp::encode::ValueWriteError> {
            // `AtRest` (`AtRestV1`) as rmp_serde reads a struct: an array of its fields.
            rmp::encode::write_array_len(out, if self.min_decrypt.is_some() { 2 } else { 1 })?;
            rmp::encode::write_array_len(out, records.len() as u32)?;
            for (v, record) in self.versions.iter().zip(&records) {
                rmp::encode::write_array_len(out, 2)?;
                rmp::encode::write_uint(out, u64::from(v.number))?;
                rmp::encode::write_bin(out, record)?;
            }
            if let Some(min) = self.min_decrypt {
                rmp::encode::write_uint(out, u64::from(min))?;
            }
            Ok(())
        };
        write(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// The newest version: the one encrypt and generate use.
    pub fn newest(&self) -> &KeyVersion {
        self.versions.last().expect("never empty")
    }

    /// The retained versions, oldest first.
    pub fn versions(&self) -> &[KeyVersion] {
        &self.versions
    }

    /// The lowest version that may decrypt (0 or 1: every one), as sealed in the record;
    /// `None` for a record in the format that did not seal it.
    pub fn min_decrypt(&self) -> Option<u32> {
        self.min_decrypt
    }

    /// These versions, with versions below `min` refusing to decrypt (0 or 1: none refuses).
    pub fn with_min_decrypt(&self, min: u32) -> Result<KeyVersions, VersionError> {
        let newest = self.newest().number;
        if min > newest {
            return Err(VersionError::MinAboveNewest(newest));
        }
        Ok(KeyVersions {
            versions: self.versions.clone(),
            min_decrypt: Some(min),
        })
    }

    /// These versions and a new one: fresh material for the newest's cipher, the same HMAC key.
    pub fn rotated(
        &self,
        created_at: OffsetDateTime,
        created_by: &str,
    ) -> Result<KeyVersions, VersionError> {
        let newest = self.newest();
        let number = newest
            .number
            .checked_add(1)
            .ok_or(VersionError::Exhausted)?;
        let mut versions = self.versions.clone();
        versions.push(KeyVersion {
            number,
            stored: StoredKey {
                key: newest.stored.key.next_version(),
                created_at: Some(created_at),
                created_by: created_by.to_owned(),
            },
        });
        Ok(KeyVersions {
            versions,
            min_decrypt: self.min_decrypt,
        })
    }

    /// These versions without those numbered below `below`. The newest always stays.
    pub fn retired_below(&self, below: u32) -> Result<KeyVersions, VersionError> {
        let newest = self.newest().number;
        if below > newest {
            return Err(VersionError::RetireNewest(newest));
        }
        Ok(KeyVersions {
            versions: self
                .versions
                .iter()
                .filter(|v| v.number >= below)
                .cloned()
                .collect(),
            min_decrypt: self.min_decrypt,
        })
    }

    /// Encrypts with the newest version.
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        self.newest().stored.key.encrypt(plaintext, associated_data)
    }

    /// A data key under the newest version.
    pub fn generate_data_key(&self, associated_data: &[u8]) -> DataKey {
        self.newest().stored.key.generate_data_key(associated_data)
    }

    /// The HMAC of `message` under the key's first HMAC key, which every version carries.
    pub fn hmac(&self, message: &[u8]) -> Result<[u8; 32], NoHmacKey> {
        self.newest().stored.key.hmac(message)
    }

    /// Decrypts with whichever retained version, numbered `min` or above, made `ciphertext`;
    /// answers the plaintext and that version's number. A legacy ciphertext that names a key
    /// id puts the version with that id first; a name that matches none changes nothing (KES
    /// ciphertexts carry ids that must be ignored).
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
        min: u32,
    ) -> Result<(Zeroizing<Vec<u8>>, u32), DecryptError> {
        let parts = ciphertext::parse(ciphertext).ok_or(DecryptError)?;
        let usable = || self.versions.iter().rev().filter(|v| v.number >= min);
        let named = parts
            .key_id
            .as_deref()
            .and_then(|id| usable().find(|v| v.stored.key.key_id().as_bytes() == id));
        let others = usable().filter(|v| named.is_none_or(|n| n.number != v.number));
        for version in named.into_iter().chain(others) {
            if let Ok(plaintext) = version.stored.key.open(&parts, associated_data) {
                return Ok((plaintext, version.number));
            }
        }
        Err(DecryptError)
    }
}

#[cfg(test)]
#[path = "versions_tests.rs"]
mod tests;
