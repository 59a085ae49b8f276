//! The node certificate this node presents on the gRPC port, on both sides of a connection
//! (server and client), replaceable while the node runs.
//!
//! Unlike the KES server certificate, a new node certificate is not presented as soon as its
//! files load: peers accept only SPKIs of the signed membership, so the new SPKI must be in
//! the membership first (see `crate::cluster::rotate`). Loading therefore gives a
//! [`Candidate`], checked against the node CA, and only [`NodeCert::present`] switches to it.
//! A file that fails to load leaves the current certificate in place.

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A certificate and key read from the files, not presented yet.
#[derive(Clone)]
pub struct Candidate {
    key: Arc<CertifiedKey>,
    /// The SPKI hash of its certificate.
    pub spki: String,
}

impl Candidate {
    /// The DER of the certificate (the first of its chain).
    pub fn cert_der(&self) -> Vec<u8> {
        self.key
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Candidate(spki {})", self.spki)
    }
}

/// The presented node certificate and the files it comes from.
pub struct NodeCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    roots: Arc<rustls::RootCertStore>,
    current: RwLock<Candidate>,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeCert(spki {})", self.spki())
    }
}

pub(super) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let list = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cluster.tls.{what} {}: {e}", path.display()))?;
    if list.is_empty() {
        return Err(format!(
            "cluster.tls.{what} {}: no certificate in it",
            path.display()
        ));
    }
    Ok(list)
}

/// Whether `chain` (leaf first) was issued by the node CA in `roots`.
pub(super) fn issued_by(roots: &Arc<rustls::RootCertStore>, chain: &[CertificateDer<'_>]) -> bool {
    let Some((leaf, rest)) = chain.split_first() else {
        return false;
    };
    let Ok(verifier) =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), crate::tls::provider()).build()
    else {
        return false;
    };
    let rest: Vec<CertificateDer<'static>> = rest.iter().map(|c| c.clone().into_owned()).collect();
    verifier
        .verify_client_cert(
            &leaf.clone().into_owned(),
            &rest,
            rustls_pki_types::UnixTime::now(),
        )
        .is_ok()
}

impl NodeCert {
    /// Loads the certificate and key files; the certificate must be issued by the node CA.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<NodeCert, String> {
        let current = read_candidate(cert_file, key_file, &roots)?;
        Ok(NodeCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            roots,
            current: RwLock::new(current),
        })
    }

    /// The SPKI hash of the certificate presented now.
    pub fn spki(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .spki
            .clone()
    }

    /// Re-reads the files. `Ok(None)` when they hold the presented certificate; an error
    /// (unreadable, half written, key not matching, not from the node CA) changes nothing.
    pub fn read_files(&self) -> Result<Option<Candidate>, String> {
        let fresh = read_candidate(&self.cert_file, &self.key_file, &self.roots)?;
        Ok((fresh.spki != self.spki()).then_some(fresh))
    }

    /// Presents `next` from now on, to servers and clients alike; connections already open
    /// keep the certificate they were made with.
    pub fn present(&self, next: Candidate) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .key
            .clone()
    }
}

/// The certificate and key of the files, checked to belong together and to come from the
/// node CA, and not to be a CA certificate.
fn read_candidate(
    cert_file: &Path,
    key_file: &Path,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<Candidate, String> {
    let chain = read_certs(cert_file, "cert")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cluster.tls.key {}: {e}", key_file.display()))?;
    let spki = crate::tls::identity_of_certificate(chain[0].as_ref())
        .ok_or("cluster.tls.cert is a CA certificate; use the node's own certificate")?
        .to_string();
    if !issued_by(roots, &chain) {
        return Err(format!(
            "cluster.tls.cert {}: not a node certificate issued by cluster.tls.ca",
            cert_file.display()
        ));
    }
    let key = CertifiedKey::from_der(chain, key, &crate::tls::provider())
        .map_err(|e| format!("cluster.tls.cert and cluster.tls.key: {e}"))?;
    Ok(Candidate {
        key: Arc::new(key),
        spki,
    })
}

impl ResolvesServerCert for NodeCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for NodeCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
