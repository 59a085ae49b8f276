//! The seal: the root key guards the cluster key, which guards everything stored.
//!
//! ```text
//! root key (file today; KMS / HSM providers come with the seal issue)
//!   └─ wraps the cluster key (32 random bytes, one per cluster)
//!        └─ HKDF-SHA256 derives the storage key, the metadata MAC key and the join key
//!             └─ every key record is sealed with the storage key under a length-prefixed AAD
//! ```
//!
//! Nothing here is called on the request hot path: handlers use the [`Unsealed`] keys that
//! [`SealState`] hands out, and the state machine only ever sees sealed bytes.

mod aws_kms;
mod build;
mod cluster_key;
mod failed;
mod file;
mod kes_upstream;
mod key_entry;
mod metadata;
mod pkcs11;
mod provider;
mod record;
mod seals;
mod state;

pub use aws_kms::AwsKmsRootKey;
pub use build::build_seals;
pub use cluster_key::{ClusterKey, PreviousKeys, Unsealed};
pub use failed::FailedSeal;
pub use file::{FileRootKey, FileSeal};
pub use kes_upstream::KesRootKey;
pub use key_entry::open_key_entry;
pub use metadata::{sign, verify, verify_all, verify_dump};
pub use pkcs11::Pkcs11RootKey;
pub use provider::{ProviderError, ProviderFuture, RootKeyProvider};
#[cfg(test)]
pub(crate) use record::record_shaped_under;
pub use record::{RecordAad, open_record, record_version, seal_record};
pub use seals::{Seals, UnsealFailure, WrappedCopy, wrap_aad, wrap_with};
pub use state::{KeySource, SealState};

/// Why a seal operation failed. Messages never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The root key could not unwrap the cluster key: a different root key, or tampered data.
    #[error(
        "the root key cannot unwrap the cluster key: wrong root key, or the stored copy was altered"
    )]
    WrongRootKey,
    /// A root key file is missing, unreadable or malformed.
    #[error("root key file {path}: {reason}")]
    RootKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A sealed record did not authenticate.
    #[error(
        "sealed record is not authentic: it was altered, or belongs to another name or cluster key"
    )]
    RecordNotAuthentic,
    /// A sealed record was made by a storage key version this node does not hold.
    #[error("sealed record uses storage key version {0}, which this node does not hold")]
    UnknownKeyVersion(u32),
}

/// The 12-byte AES-GCM nonce stored at `offset`; callers have checked the length.
fn nonce_at(buf: &[u8], offset: usize) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n.copy_from_slice(&buf[offset..offset + 12]);
    n.into()
}
