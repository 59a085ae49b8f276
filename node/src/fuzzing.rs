//! Entry points for the cargo-fuzz targets in `fuzz/`: the narrowest public view of the parsers
//! that are otherwise private to their module. Not an API; nothing but `fuzz/` calls it.
//!
//! Everything else the targets fuzz is public already: [`crate::crypto::parse_key_at_rest`],
//! [`crate::config::Config::from_yaml`], [`crate::auth`], [`crate::raft::decode`],
//! [`crate::cluster::Backup::parse`] and [`crate::state::State::parse_dump`].

use crate::crypto::{Cipher, IV_LEN, KEY_LEN, NONCE_LEN, SecretKey};
use zeroize::Zeroizing;

pub use crate::api::fuzzing::{ApiBody, CryptoFields, DecodedBody, decode_api_body};

/// A ciphertext in any of the three formats, split as decryption sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiphertextParts {
    /// The algorithm a legacy (msgpack or JSON) ciphertext names; `None` for the raw format.
    pub named_cipher: Option<Cipher>,
    /// The per-message IV.
    pub iv: [u8; IV_LEN],
    /// The AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Encrypted bytes followed by the tag.
    pub aead_out: Vec<u8>,
}

/// Splits a ciphertext with the parser [`SecretKey::decrypt`] uses.
pub fn parse_ciphertext(ciphertext: &[u8]) -> Option<CiphertextParts> {
    crate::crypto::parse_ciphertext(ciphertext).map(|p| CiphertextParts {
        named_cipher: p.named_cipher,
        iv: p.iv,
        nonce: p.nonce,
        aead_out: p.aead_out.into_owned(),
    })
}

/// A key with fixed material and HMAC key; `cipher_explicit` false makes a legacy key that
/// decrypts with the algorithm a legacy ciphertext names.
pub fn fixed_key(cipher: Cipher, cipher_explicit: bool, material: [u8; KEY_LEN]) -> SecretKey {
    SecretKey::from_parts(
        cipher,
        cipher_explicit,
        Zeroizing::new(material),
        Some(Zeroizing::new([0x5a; KEY_LEN])),
    )
}

/// [`SecretKey::encrypt`] with the IV and nonce given, so a target can compare exact bytes.
pub fn encrypt_with(
    key: &SecretKey,
    iv: &[u8; IV_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    associated_data: &[u8],
) -> Vec<u8> {
    key.encrypt_with(iv, nonce, plaintext, associated_data)
}

#[cfg(test)]
mod seeds;

/// A journal record of the state's apply (`state/apply/journal.rs`) read as the redo at open
/// reads it and written again as a run writes it: `Err` with the reason for a record the open
/// would refuse, `Ok(None)` for one too large to be written again as one record.
pub fn reencode_journal_record(record: &[u8]) -> Result<Option<Vec<u8>>, String> {
    crate::state::reencode_journal_record(record).map_err(|e| e.to_string())
}
