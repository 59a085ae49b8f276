//! TLS configurations of the gRPC port: both sides present node certificates, and both verify
//! the other's chain against the node CA (which never signs client identities).

use super::node_cert::{NodeCert, issued_by, read_certs};
use crate::config::ClusterTlsConfig;
use crate::tls::provider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// The node's TLS material for the gRPC port.
#[derive(Clone)]
pub struct NodeTls {
    /// Server side: requires a client certificate signed by the node CA.
    pub server: Arc<rustls::ServerConfig>,
    /// Client side: presents the node certificate and verifies the peer against the node CA.
    pub client: Arc<rustls::ClientConfig>,
    /// The SPKI hash of the certificate loaded at start; after a rotation the presented one
    /// is `cert.spki()`.
    pub spki: String,
    /// The presented node certificate, on both sides.
    pub cert: Arc<NodeCert>,
    roots: Arc<rustls::RootCertStore>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeTls(spki {})", self.cert.spki())
    }
}

impl NodeTls {
    /// Loads `cluster.tls`.
    pub fn load(cfg: &ClusterTlsConfig) -> Result<NodeTls, String> {
        let (Some(cert), Some(key), Some(ca)) = (&cfg.cert, &cfg.key, &cfg.ca) else {
            return Err("cluster.tls needs cert, key and ca to talk to other nodes".into());
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(ca, "ca")? {
            roots.add(c).map_err(|e| format!("cluster.tls.ca: {e}"))?;
        }
        let roots = Arc::new(roots);
        let node_cert = Arc::new(NodeCert::load(cert, key, roots.clone())?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("cluster.tls: {e}"))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(node_cert.clone());
        server.alpn_protocols = vec![b"h2".to_vec()];
        // A resumed session carries the certificate of the session it resumes, not the one
        // presented now: after a rotation a peer would still see the old SPKI. Connections
        // between nodes are long-lived, so a full handshake each time costs little.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_cert_resolver(node_cert.clone());
        client.alpn_protocols = vec![b"h2".to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
            spki: node_cert.spki(),
            cert: node_cert,
            roots,
        })
    }

    /// Whether a client chain presented on the KES port was signed by the node CA: a node
    /// asking to join presents its node certificate there.
    pub fn is_node_certificate(&self, chain: &[CertificateDer<'static>]) -> bool {
        issued_by(&self.roots, chain)
    }
}
