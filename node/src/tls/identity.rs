//! The KES identity of a client: hex SHA-256 over the leaf certificate's SubjectPublicKeyInfo.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use std::fmt;

/// A KES identity: 64 lowercase hex characters. Compared as an exact string, like KES does,
/// so an upper-case identity in a config never matches.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(String);

impl Identity {
    /// Wraps an identity string taken from config or from a request path.
    pub fn new(s: impl Into<String>) -> Self {
        Identity(s.into())
    }

    /// The identity as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.0)
    }
}

/// Why a connection has no usable identity. The messages are KES's, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No non-CA certificate was presented.
    #[error("tls: client certificate is required")]
    Missing,
    /// More than one non-CA certificate was presented.
    #[error("tls: received more than one client certificate")]
    TooMany,
}

/// The identity of one DER certificate, or `None` when it does not parse or is a CA
/// certificate (KES skips those when it looks for the leaf).
pub fn identity_of_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if is_ca {
        return None;
    }
    let digest = Sha256::digest(cert.public_key().raw);
    Some(Identity(hex::encode(digest)))
}

/// Picks the leaf of a presented chain the way KES does: skip CA certificates, and exactly one
/// must remain.
pub fn leaf_identity(chain: &[CertificateDer<'_>]) -> Result<Identity, IdentityError> {
    let mut found = None;
    for cert in chain {
        if let Some(id) = identity_of_certificate(cert.as_ref()) {
            if found.is_some() {
                return Err(IdentityError::TooMany);
            }
            found = Some(id);
        }
    }
    found.ok_or(IdentityError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hashes_the_spki_not_the_certificate() {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let params = rcgen::CertificateParams::new(vec!["a".into()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let id = identity_of_certificate(cert.der()).expect("identity");
        let want = hex::encode(Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(&key),
        ));
        assert_eq!(id.as_str(), want);
        // A second certificate over the same key keeps the identity.
        let params2 = rcgen::CertificateParams::new(vec!["b".into()]).expect("params");
        let cert2 = params2.self_signed(&key).expect("cert");
        assert_eq!(identity_of_certificate(cert2.der()), Some(id));
    }

    #[test]
    fn ca_certificates_are_skipped_when_picking_the_leaf() {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let mut params = rcgen::CertificateParams::new(vec!["ca".into()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("cert");
        assert_eq!(identity_of_certificate(ca.der()), None);
        let chain = [ca.der().clone()];
        assert_eq!(leaf_identity(&chain), Err(IdentityError::Missing));
        let leaf = rcgen::CertificateParams::new(vec!["l".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let chain = [leaf.der().clone(), leaf.der().clone()];
        assert_eq!(leaf_identity(&chain), Err(IdentityError::TooMany));
        assert!(identity_of_certificate(b"not a certificate").is_none());
    }
}
