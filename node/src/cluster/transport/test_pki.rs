//! Node certificates from a real (rcgen) node CA, for tests that make real TLS connections.

use super::NodeTls;
use crate::config::ClusterTlsConfig;
use kes_cluster::pki::{CertificateAuthority, IssuedPem, LeafRequest};
use std::path::Path;

/// A node certificate for `name` (127.0.0.1 and localhost), with `key_pem` or a fresh key.
pub(crate) fn leaf(ca: &CertificateAuthority, name: &str, key_pem: Option<&str>) -> IssuedPem {
    let request = LeafRequest {
        common_name: name.into(),
        dns: vec!["localhost".into()],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        client_auth: true,
    };
    ca.issue(&request, key_pem).expect("issue")
}

/// Node TLS from `chain_pem` (the node's certificate first) and its key, written into `dir`.
pub(crate) fn node_tls(
    dir: &Path,
    name: &str,
    chain_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> NodeTls {
    let file = |ext: &str, text: &str| {
        let p = dir.join(format!("{name}.{ext}"));
        std::fs::write(&p, text).expect("write");
        Some(p)
    };
    NodeTls::load(&ClusterTlsConfig {
        cert: file("crt", chain_pem),
        key: file("key", key_pem),
        ca: file("ca", ca_pem),
    })
    .expect("node TLS")
}

/// Node TLS for a fresh node certificate `name` of `ca`.
pub(crate) fn fresh_node_tls(dir: &Path, ca: &CertificateAuthority, name: &str) -> NodeTls {
    let issued = leaf(ca, name, None);
    node_tls(dir, name, &issued.cert_pem, &issued.key_pem, ca.cert_pem())
}
