//! A seal that could not be set up (wrong PIN at login, unreachable KMS at start): it keeps
//! its error, so the node starts sealed and says why instead of refusing to start.

use super::{ProviderError, ProviderFuture, RootKeyProvider};
use zeroize::Zeroizing;

/// A configured seal whose construction failed.
#[derive(Debug)]
pub struct FailedSeal {
    id: String,
    error: ProviderError,
}

impl FailedSeal {
    /// Remembers why the seal `id` is unusable.
    pub fn new(id: String, error: ProviderError) -> Self {
        FailedSeal { id, error }
    }
}

impl RootKeyProvider for FailedSeal {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn wrap<'a>(&'a self, _: &'a [u8; 32], _: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move { Err(self.error.clone()) })
    }

    fn unwrap<'a>(&'a self, _: &'a [u8], _: &'a [u8]) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
}
