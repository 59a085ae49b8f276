//! Real TLS handshakes on loopback between node certificates from a real (rcgen) node CA.

use super::channels::connect_pinned;
use super::{NodeTls, PeerSpki};
use crate::config::ClusterTlsConfig;
use kes_cluster::pki::{CertificateAuthority, IssuedPem, LeafRequest};
use std::path::Path;
use tokio::net::TcpListener;

fn leaf(ca: &CertificateAuthority, name: &str, key_pem: Option<&str>) -> IssuedPem {
    let request = LeafRequest {
        common_name: name.into(),
        dns: vec!["localhost".into()],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        client_auth: true,
    };
    ca.issue(&request, key_pem).expect("issue")
}

/// Node TLS from `chain_pem` (the node's certificate first) and its key.
fn node_tls(dir: &Path, name: &str, chain_pem: &str, key_pem: &str, ca_pem: &str) -> NodeTls {
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

/// Accepts one connection with `tls` and answers with the identity the gRPC port gives it.
async fn accept_one(tls: &NodeTls) -> (u16, tokio::task::JoinHandle<Option<PeerSpki>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.ok()?;
        let io = acceptor.accept(tcp).await.ok()?;
        Some(PeerSpki::of_chain(io.get_ref().1.peer_certificates()))
    });
    (port, task)
}

/// A holder of a node-CA certificate sends its own certificate first and, after it, a
/// certificate that carries a member's public key (signed by a CA of its own). The handshake
/// is signed with the first certificate's key, and the gRPC port takes the caller's identity
/// from that certificate only: the attacker stays itself and never becomes the member.
#[tokio::test]
async fn the_grpc_port_takes_the_identity_of_the_first_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = CertificateAuthority::new("node CA").unwrap();
    let own_ca = CertificateAuthority::new("attacker CA").unwrap();
    let ca_pem = node_ca.cert_pem();
    let member_a = leaf(&node_ca, "node1", None);
    let member_b = leaf(&node_ca, "node2", None);
    let attacker = leaf(&node_ca, "node9", None);
    let forged = leaf(&own_ca, "node2", Some(&member_b.key_pem));
    let server = node_tls(
        dir.path(),
        "a",
        &member_a.cert_pem,
        &member_a.key_pem,
        ca_pem,
    );
    let b = node_tls(
        dir.path(),
        "b",
        &member_b.cert_pem,
        &member_b.key_pem,
        ca_pem,
    );
    let chain = format!("{}{}", attacker.cert_pem, forged.cert_pem);
    let client = node_tls(dir.path(), "x", &chain, &attacker.key_pem, ca_pem);

    let (port, seen) = accept_one(&server).await;
    let stream = connect_pinned(client.client.clone(), "127.0.0.1", port, &server.spki)
        .await
        .expect("the attacker's own certificate is a valid node certificate");
    let seen = seen.await.unwrap().expect("handshake");
    drop(stream);
    assert_eq!(seen, PeerSpki(client.spki.clone()), "the first certificate");
    assert_ne!(
        seen,
        PeerSpki(b.spki.clone()),
        "never the key of a later certificate"
    );
}

/// The client reaches a peer only if it presents the pinned member's certificate: another
/// node-CA certificate at the member's address (same CA, same names) is refused.
#[tokio::test]
async fn a_peer_is_reached_only_with_the_pinned_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = CertificateAuthority::new("node CA").unwrap();
    let ca_pem = node_ca.cert_pem();
    let tls = |name: &str| {
        let issued = leaf(&node_ca, name, None);
        node_tls(dir.path(), name, &issued.cert_pem, &issued.key_pem, ca_pem)
    };
    let (member, impostor, caller) = (tls("node1"), tls("node1-again"), tls("node2"));

    let (port, _) = accept_one(&impostor).await;
    let refused = connect_pinned(caller.client.clone(), "127.0.0.1", port, &member.spki).await;
    let Err(err) = refused else {
        panic!("an impostor with a node certificate is refused")
    };
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);

    let (port, _) = accept_one(&member).await;
    connect_pinned(caller.client.clone(), "127.0.0.1", port, &member.spki)
        .await
        .expect("the member itself");

    let (port, _) = accept_one(&member).await;
    let empty = connect_pinned(caller.client.clone(), "127.0.0.1", port, "").await;
    assert!(
        empty.is_err(),
        "an unknown SPKI pins nothing and reaches nobody"
    );
}
