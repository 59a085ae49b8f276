//! The KES identity of a client: hex SHA-256 over the SubjectPublicKeyInfo of the FIRST
//! certificate it sent, the one whose key signed the TLS handshake.

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

/// Why a connection has no usable identity. The message is KES's, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No certificate was presented, or the first one is a CA certificate (or unparseable).
    #[error("tls: client certificate is required")]
    Missing,
}

/// The identity of one DER certificate, or `None` when it does not parse or is a CA
/// certificate: a CA certificate never names a client.
pub fn identity_of_certificate(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if is_ca {
        return None;
    }
    let digest = Sha256::digest(cert.public_key().raw);
    Some(Identity(hex::encode(digest)))
}

/// The identity of a presented chain: always its first certificate, whose key produced the
/// handshake signature (contract §2.1).
///
/// Upstream KES skips CA certificates and takes the first non-CA one. That lets an attacker
/// send [a CA certificate over its own key, a made-up leaf carrying the victim's public key]:
/// the handshake verifies against the first, and upstream names the caller after the second.
/// Later certificates therefore never change who the caller is, and a CA certificate in
/// first place is refused rather than skipped.
pub fn leaf_identity(chain: &[CertificateDer<'_>]) -> Result<Identity, IdentityError> {
    chain
        .first()
        .and_then(|first| identity_of_certificate(first.as_ref()))
        .ok_or(IdentityError::Missing)
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

    fn self_signed(key: &rcgen::KeyPair, ca: bool) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).expect("params");
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.self_signed(key).expect("cert").der().clone()
    }

    #[test]
    fn only_the_first_certificate_names_the_caller() {
        let attacker = rcgen::KeyPair::generate().expect("keygen");
        let victim = rcgen::KeyPair::generate().expect("keygen");
        let victim_id = identity_of_certificate(&self_signed(&victim, false)).expect("id");
        // The forged chain: a CA over the attacker's key first, the victim's key second.
        let forged = [self_signed(&attacker, true), self_signed(&victim, false)];
        assert_eq!(leaf_identity(&forged), Err(IdentityError::Missing));
        // A leaf followed by anything stays the leaf's identity.
        let attacker_leaf = self_signed(&attacker, false);
        let attacker_id = identity_of_certificate(&attacker_leaf).expect("id");
        let chain = [attacker_leaf.clone(), self_signed(&victim, false)];
        assert_eq!(leaf_identity(&chain), Ok(attacker_id.clone()));
        let chain = [attacker_leaf, self_signed(&victim, true)];
        assert_eq!(leaf_identity(&chain), Ok(attacker_id));
        assert_ne!(leaf_identity(&chain), Ok(victim_id));
        assert_eq!(leaf_identity(&[]), Err(IdentityError::Missing));
        assert!(identity_of_certificate(b"not a certificate").is_none());
        let garbage = [CertificateDer::from(b"junk".to_vec())];
        assert_eq!(leaf_identity(&garbage), Err(IdentityError::Missing));
    }
}
