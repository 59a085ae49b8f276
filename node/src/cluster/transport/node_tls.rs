//! TLS configurations of the gRPC port: both sides present node certificates, and both verify
//! the other's chain against the node CA (which never signs client identities).

use crate::config::ClusterTlsConfig;
use crate::tls::provider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The node's TLS material for the gRPC port.
#[derive(Clone)]
pub struct NodeTls {
    /// Server side: requires a client certificate signed by the node CA.
    pub server: Arc<rustls::ServerConfig>,
    /// Client side: presents the node certificate and verifies the peer against the node CA.
    pub client: Arc<rustls::ClientConfig>,
    /// The SPKI hash of this node's certificate.
    pub spki: String,
    roots: Arc<rustls::RootCertStore>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeTls(spki {})", self.spki)
    }
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
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

impl NodeTls {
    /// Loads `cluster.tls`.
    pub fn load(cfg: &ClusterTlsConfig) -> Result<NodeTls, String> {
        let (Some(cert), Some(key), Some(ca)) = (&cfg.cert, &cfg.key, &cfg.ca) else {
            return Err("cluster.tls needs cert, key and ca to talk to other nodes".into());
        };
        let chain = certs(cert, "cert")?;
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cluster.tls.key {}: {e}", key.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca, "ca")? {
            roots.add(c).map_err(|e| format!("cluster.tls.ca: {e}"))?;
        }
        let roots = Arc::new(roots);
        let spki = crate::tls::identity_of_certificate(chain[0].as_ref())
            .ok_or("cluster.tls.cert is a CA certificate; use the node's own certificate")?
            .to_string();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("cluster.tls: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| format!("cluster.tls: {e}"))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| format!("cluster.tls: {e}"))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
            spki,
            roots,
        })
    }

    /// Whether a client chain presented on the KES port was signed by the node CA: a node
    /// asking to join presents its node certificate there.
    pub fn is_node_certificate(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, rest)) = chain.split_first() else {
            return false;
        };
        let Ok(verifier) =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider()).build()
        else {
            return false;
        };
        verifier
            .verify_client_cert(leaf, rest, rustls_pki_types::UnixTime::now())
            .is_ok()
    }
}
