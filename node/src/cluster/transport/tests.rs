//! Real TLS handshakes on loopback between node certificates from a real (rcgen) node CA.

use super::channels::connect_pinned;
use super::test_pki::{fresh_node_tls, leaf, node_tls};
use super::{NodeTls, PeerSpki};
use kes_cluster::pki::CertificateAuthority;
use tokio::net::TcpListener;

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

/// Connects `client` to `server`, pinned to the SPKI the server presents now; reads what the
/// server sends after the handshake, as a long-lived connection would (TLS 1.3 session
/// tickets, which could let a later handshake resume this session); and answers with the
/// identity the server's gRPC port gave the client.
async fn identity_seen_by(server: &NodeTls, client: &NodeTls) -> PeerSpki {
    let (port, seen) = accept_one(server).await;
    let pin = [server.cert.spki()];
    let mut stream = connect_pinned(client.client.clone(), None, "127.0.0.1", port, &pin)
        .await
        .expect("the client reaches the server");
    let mut buf = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), read).await;
    seen.await.unwrap().expect("handshake")
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

    let seen = identity_seen_by(&server, &client).await;
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
    let tls = |name: &str| fresh_node_tls(dir.path(), &node_ca, name);
    let (member, impostor, caller) = (tls("node1"), tls("node1-again"), tls("node2"));

    let (port, _) = accept_one(&impostor).await;
    let refused = connect_pinned(
        caller.client.clone(),
        None,
        "127.0.0.1",
        port,
        std::slice::from_ref(&member.spki),
    )
    .await;
    let Err(err) = refused else {
        panic!("an impostor with a node certificate is refused")
    };
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);

    let (port, _) = accept_one(&member).await;
    connect_pinned(
        caller.client.clone(),
        None,
        "127.0.0.1",
        port,
        std::slice::from_ref(&member.spki),
    )
    .await
    .expect("the member itself");

    let (port, _) = accept_one(&member).await;
    let empty = connect_pinned(caller.client.clone(), None, "127.0.0.1", port, &[]).await;
    assert!(
        empty.is_err(),
        "an unknown SPKI pins nothing and reaches nobody"
    );
}

/// The node certificate is re-read from its files, but a file that does not load (half
/// written, a key that does not match, a certificate from another CA) changes nothing: the
/// handshakes keep presenting the current certificate. A good new certificate is presented,
/// on the server and the client side alike, only once it is told to.
#[tokio::test]
async fn a_node_certificate_that_fails_to_load_keeps_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let node_ca = CertificateAuthority::new("node CA").unwrap();
    let other_ca = CertificateAuthority::new("another CA").unwrap();
    let ca_pem = node_ca.cert_pem();
    let first = leaf(&node_ca, "node2", None);
    let rotating = node_tls(dir.path(), "n2", &first.cert_pem, &first.key_pem, ca_pem);
    let peer = {
        let issued = leaf(&node_ca, "node1", None);
        node_tls(dir.path(), "n1", &issued.cert_pem, &issued.key_pem, ca_pem)
    };
    let old = rotating.cert.spki();
    let (cert_file, key_file) = (dir.path().join("n2.crt"), dir.path().join("n2.key"));
    let next = leaf(&node_ca, "node2", None);
    let foreign = leaf(&other_ca, "node2", None);
    let half = &next.cert_pem[..next.cert_pem.len() / 2];
    let bad_files = [
        ("a half-written certificate", half, next.key_pem.as_str()),
        (
            "a key of another certificate",
            &next.cert_pem,
            &first.key_pem,
        ),
        (
            "another CA's certificate",
            &foreign.cert_pem,
            &foreign.key_pem,
        ),
    ];
    for (what, cert, key) in bad_files {
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        assert!(rotating.cert.read_files().is_err(), "{what} is refused");
        assert_eq!(rotating.cert.spki(), old, "{what} keeps the current one");
        let (port, _) = accept_one(&rotating).await;
        connect_pinned(
            peer.client.clone(),
            None,
            "127.0.0.1",
            port,
            std::slice::from_ref(&old),
        )
        .await
        .unwrap_or_else(|e| panic!("after {what}, the old certificate is still served: {e}"));
    }

    let seen = identity_seen_by(&peer, &rotating).await;
    assert_eq!(seen, PeerSpki(old.clone()));

    std::fs::write(&cert_file, &next.cert_pem).unwrap();
    std::fs::write(&key_file, &next.key_pem).unwrap();
    let candidate = rotating
        .cert
        .read_files()
        .unwrap()
        .expect("a new certificate");
    assert_ne!(candidate.spki, old);
    assert_eq!(rotating.cert.spki(), old, "loaded is not presented yet");
    let new = candidate.spki.clone();
    rotating.cert.present(candidate);
    assert!(
        rotating.cert.read_files().unwrap().is_none(),
        "now unchanged"
    );

    let (port, _) = accept_one(&rotating).await;
    let refused = connect_pinned(
        peer.client.clone(),
        None,
        "127.0.0.1",
        port,
        std::slice::from_ref(&old),
    )
    .await;
    assert!(refused.is_err(), "the server side presents the new one");
    let seen = identity_seen_by(&peer, &rotating).await;
    assert_eq!(seen, PeerSpki(new), "the client side too");
}

/// `cluster.grpc.source`: a node on a host with several addresses connects to its peers from
/// the one it is told to (here 127.0.0.2, which loopback answers for), not the system's choice.
#[tokio::test]
async fn connections_to_peers_leave_from_the_configured_source_address() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::new("node CA").unwrap();
    let server = fresh_node_tls(dir.path(), &ca, "node1");
    let client = fresh_node_tls(dir.path(), &ca, "node2");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server.clone());
    let seen = tokio::spawn(async move {
        let (tcp, from) = listener.accept().await.ok()?;
        acceptor.accept(tcp).await.ok()?;
        Some(from.ip())
    });
    let source = "127.0.0.2".parse().unwrap();
    let pin = [server.cert.spki()];
    connect_pinned(client.client.clone(), Some(source), "127.0.0.1", port, &pin)
        .await
        .expect("the client reaches the server");
    assert_eq!(seen.await.unwrap(), Some(source));
}
