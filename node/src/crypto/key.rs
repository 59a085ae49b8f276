//! A KES key: 32 bytes of material, the cipher they are used with, and an optional HMAC key.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::cipher::Cipher;
use super::ciphertext;
use super::message::{self, IV_LEN, NONCE_LEN};

/// Length of key material and of HMAC keys.
pub const KEY_LEN: usize = 32;

/// A KES key, ready to encrypt, decrypt and compute HMACs.
///
/// The material and the HMAC key are wiped from memory when the value is dropped, and `Debug`
/// shows only the cipher and the key ID.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Cipher,
    /// False for legacy keys stored as `{"bytes":…}` with no algorithm; such keys are AES256 but
    /// may decrypt legacy ciphertexts with the algorithm those name (see [`SecretKey::decrypt`]).
    cipher_explicit: bool,
    material: Zeroizing<[u8; KEY_LEN]>,
    hmac_key: Option<Zeroizing<[u8; KEY_LEN]>>,
}

/// Key material of the wrong size was given to [`SecretKey::import`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The material is not exactly 32 bytes.
    #[error("invalid key length: a key must be exactly 32 bytes, got {0} bytes")]
    InvalidLength(usize),
}

/// A ciphertext could not be decrypted.
///
/// Deliberately carries no reason (wrong key, wrong context, tampering, malformed input), so that
/// callers cannot turn it into an oracle; the message is the one KES returns with HTTP 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decryption failed: ciphertext is not authentic")]
pub struct DecryptError;

/// The key has no HMAC key: it was created by a KES release older than 2024-02-29.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key does not support HMAC")]
pub struct NoHmacKey;

/// A freshly generated data encryption key, as `/v1/key/generate` returns it.
pub struct DataKey {
    /// The 32-byte key for the caller to use.
    pub plaintext: Zeroizing<[u8; KEY_LEN]>,
    /// The same key encrypted under the KES key, in the raw ciphertext format.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Creates a key with random material and a random HMAC key, both from the OS RNG.
    pub fn generate(cipher: Cipher) -> SecretKey {
        SecretKey {
            cipher,
            cipher_explicit: true,
            material: random_key(),
            hmac_key: Some(random_key()),
        }
    }

    /// Creates a key from imported material, with a fresh random HMAC key (as KES does).
    pub fn import(cipher: Cipher, material: &[u8]) -> Result<SecretKey, KeyError> {
        let material: [u8; KEY_LEN] = material
            .try_into()
            .map_err(|_| KeyError::InvalidLength(material.len()))?;
        Ok(SecretKey {
            cipher,
            cipher_explicit: true,
            material: Zeroizing::new(material),
            hmac_key: Some(random_key()),
        })
    }

    /// Builds a key from decoded parts; `cipher_explicit` false means a legacy key without an
    /// algorithm, which is always AES256.
    pub(crate) fn from_parts(
        cipher: Cipher,
        cipher_explicit: bool,
        material: Zeroizing<[u8; KEY_LEN]>,
        hmac_key: Option<Zeroizing<[u8; KEY_LEN]>>,
    ) -> SecretKey {
        SecretKey {
            cipher: if cipher_explicit {
                cipher
            } else {
                Cipher::Aes256
            },
            cipher_explicit,
            material,
            hmac_key,
        }
    }

    /// The cipher this key encrypts with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Whether the cipher was stated when the key was made or stored. False only for legacy keys
    /// stored as `{"bytes":…}`, which KES treats as AES256.
    pub fn cipher_is_explicit(&self) -> bool {
        self.cipher_explicit
    }

    /// Whether the key can compute HMACs (keys from before 2024-02-29 cannot).
    pub fn has_hmac(&self) -> bool {
        self.hmac_key.is_some()
    }

    pub(crate) fn material(&self) -> &[u8; KEY_LEN] {
        &self.material
    }

    pub(crate) fn hmac_key(&self) -> Option<&[u8; KEY_LEN]> {
        self.hmac_key.as_deref()
    }

    /// The KES key ID: hex of the first 16 bytes of SHA-256 of the material, as embedded in
    /// era A–D ciphertexts.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.material.as_slice());
        hex::encode(&digest[..16])
    }

    /// Encrypts `plaintext`, binding `associated_data` (the request's `context`), and returns the
    /// current raw format `aead_out || iv(16) || nonce(12)`, 44 bytes longer than the plaintext.
    ///
    /// # Panics
    /// If the OS RNG fails, or the plaintext exceeds 64 GiB (no request body can be that large).
    pub fn encrypt(&self, plaintext: &[u8], associated_data: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; IV_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut iv);
        fill_random(&mut nonce);
        self.encrypt_with(&iv, &nonce, plaintext, associated_data)
    }

    /// [`SecretKey::encrypt`] with the randomness supplied, so tests can compare exact bytes.
    pub(crate) fn encrypt_with(
        &self,
        iv: &[u8; IV_LEN],
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Vec<u8> {
        message::seal(
            self.cipher,
            &self.material,
            iv,
            nonce,
            plaintext,
            associated_data,
        )
    }

    /// Makes a random 32-byte data key and returns it with its encryption under this key.
    ///
    /// # Panics
    /// If the OS RNG fails.
    pub fn generate_data_key(&self, associated_data: &[u8]) -> DataKey {
        let plaintext = random_key();
        let ciphertext = self.encrypt(&*plaintext, associated_data);
        DataKey {
            plaintext,
            ciphertext,
        }
    }

    /// The next version of this key: fresh material for the same cipher, and the same HMAC key
    /// (`versions.rs` says why it must not change).
    pub fn next_version(&self) -> SecretKey {
        SecretKey {
            cipher: self.cipher,
            cipher_explicit: true,
            material: random_key(),
            hmac_key: self.hmac_key.clone(),
        }
    }

    /// Decrypts a ciphertext in any format KES ever produced (raw, MessagePack or JSON), checking
    /// that it was made with `associated_data`.
    ///
    /// The key ID embedded in legacy formats is ignored, as in current KES. The algorithm they
    /// name is used only when this key has no explicit cipher: current KES always uses the key's
    /// cipher, which made legacy `{"bytes":…}` keys unable to read ChaCha20 ciphertexts written
    /// on hosts without AES acceleration; honouring the named algorithm there reads both.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let parts = ciphertext::parse(ciphertext).ok_or(DecryptError)?;
        self.open(&parts, associated_data)
    }

    /// [`SecretKey::decrypt`] of a ciphertext already parsed.
    pub(crate) fn open(
        &self,
        parts: &ciphertext::Parts<'_>,
        associated_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let cipher = match parts.named_cipher {
            Some(named) if !self.cipher_explicit => named,
            _ => self.cipher,
        };
        message::open(
            cipher,
            &self.material,
            &parts.iv,
            &parts.nonce,
            &parts.aead_out,
            associated_data,
        )
    }

    /// HMAC-SHA256 of `message` under the key's separate HMAC key (`/v1/key/hmac`).
    pub fn hmac(&self, message: &[u8]) -> Result<[u8; 32], NoHmacKey> {
        let hmac_key = self.hmac_key.as_deref().ok_or(NoHmacKey)?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(hmac_key)
            .expect("HMAC accepts keys of any length");
        mac.update(message);
        Ok(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("cipher", &self.cipher)
            .field("cipher_explicit", &self.cipher_explicit)
            .field("key_id", &self.key_id())
            .field("has_hmac", &self.has_hmac())
            .finish_non_exhaustive()
    }
}

/// Compares in constant time, so equality checks cannot leak material through timing.
impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        let hmac_eq = match (&self.hmac_key, &other.hmac_key) {
            (Some(a), Some(b)) => a[..].ct_eq(&b[..]),
            (None, None) => 1.into(),
            _ => 0.into(),
        };
        let material_eq = self.material[..].ct_eq(&other.material[..]);
        self.cipher == other.cipher
            && self.cipher_explicit == other.cipher_explicit
            && bool::from(material_eq & hmac_eq)
    }
}

impl Eq for SecretKey {}

fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut *key);
    key
}

/// Fills `buf` from the OS RNG. A failing OS RNG leaves no safe way to make keys or nonces, so
/// this panics rather than return something an error path might ignore.
fn fill_random(buf: &mut [u8]) {
    if OsRng.try_fill_bytes(buf).is_err() {
        buf.zeroize();
        panic!("the operating system's random number generator failed");
    }
}
