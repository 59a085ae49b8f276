//! The root-key providers: where the root key lives and how it wraps the cluster key.
//!
//! A provider never hands out the root key: it wraps and unwraps the 32-byte cluster key
//! (AES-GCM inside an HSM, KMS Encrypt/Decrypt, an upstream KES key). The errors separate
//! what the unseal loop must treat differently: a refusal seals the node, an unreachable
//! provider is tolerated for `seal.offline_grace`, and an authentication failure is never
//! retried automatically (real HSMs lock the token after a few wrong PINs).

use std::future::Future;
use std::pin::Pin;
use zeroize::Zeroizing;

/// Why a provider could not wrap or unwrap. Messages never carry key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered and refused: wrong key, key deleted or disabled, access revoked,
    /// or the wrapped bytes are not authentic. The node seals itself.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or failed transiently (network, timeout, 5xx).
    #[error("{0}")]
    Unreachable(String),
    /// Our credentials were rejected (wrong PIN, bad access key). Never retried automatically.
    #[error("{0}")]
    Auth(String),
    /// The provider is misconfigured (missing module, unknown token or key label).
    #[error("{0}")]
    Config(String),
}

/// A boxed future, so the trait stays object-safe.
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// One root-key holder.
pub trait RootKeyProvider: Send + Sync + std::fmt::Debug {
    /// A stable id of this seal, e.g. `file:/etc/kes/root.key`, `pkcs11:kes-cluster/kes-root`,
    /// `kes:https://kes:7373/root-key`, `aws-kms:eu-west-1/<key id>`. Wrapped copies in the
    /// replicated state are stored under it.
    fn id(&self) -> String;

    /// Wraps `plaintext` (the cluster key) bound to `aad`.
    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>>;

    /// Unwraps what [`RootKeyProvider::wrap`] made, with the same `aad`.
    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>>;
}
