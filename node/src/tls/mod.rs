//! TLS for the KES port: rustls server configuration and the KES client identity.
//!
//! A KES identity is the lowercase hex SHA-256 of the client leaf certificate's
//! SubjectPublicKeyInfo. With `tls.auth` off (KES's default) any client certificate is accepted
//! without chain, expiry or usage checks, but the handshake still proves possession of the
//! private key. With `tls.auth: on` the chain must verify against `tls.ca`.

mod identity;
mod reload;
mod server_config;
mod verifier;

pub use identity::{Identity, IdentityError, identity_of_certificate, leaf_identity};
pub use reload::{RELOAD_EVERY, ServerCert};
pub use server_config::{
    ServerTlsOptions, TlsSetupError, load_reloadable_server_config, load_server_config,
};
pub use verifier::AnyClientCert;

/// The crypto provider every TLS config of this crate is built with. rustls panics at first use
/// when no provider is chosen, and we ship only ring (no aws-lc C build), so it is named here once.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
