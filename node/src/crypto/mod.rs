//! KES-compatible key cryptography: keys, per-message encryption, the three ciphertext formats
//! and the key-at-rest codecs.
//!
//! Everything here is byte-compatible with MinIO KES (contract §4): ciphertexts made by any KES
//! release decrypt here, ours decrypt in KES, and key values from any KES key store parse.
//!
//! ```text
//!            ┌──────────── SecretKey (cipher, material, HMAC key) ───────────┐
//!  encrypt:  │ iv ─▶ sub-key (HMAC-SHA256 | HChaCha20) ─▶ AEAD(nonce, ctx)   │─▶ aead_out‖iv‖nonce
//!  decrypt:  │ raw | msgpack | JSON ─▶ ciphertext::parse ─▶ same, reversed    │─▶ plaintext
//!  hmac:     │ HMAC-SHA256(HMAC key, message)                                │
//!            └───────────────────────────────────────────────────────────────┘
//!  at rest:  stored bytes ◀──▶ StoredKey (SecretKey + created_at + created_by)
//! ```
//!
//! Non-features: this module knows nothing of key names, enclaves, storage or sealing. It does
//! not implement FIPS mode (which refuses ChaCha20) and never writes the legacy formats.

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod at_rest;
mod cipher;
mod ciphertext;
mod key;
mod message;
mod versions;

#[cfg(test)]
mod tests;

pub use at_rest::{KeyFormatError, StoredKey, encode_protobuf, parse_key_at_rest, parse_protobuf};
pub use cipher::{Cipher, default_cipher};
pub use key::{DataKey, DecryptError, KEY_LEN, KeyError, NoHmacKey, SecretKey};
pub use versions::{KeyVersion, KeyVersions, VersionError};
// For `crate::fuzzing`: the fuzz targets read ciphertexts through the parser decryption uses.
pub(crate) use ciphertext::parse as parse_ciphertext;
pub(crate) use message::{IV_LEN, NONCE_LEN};
