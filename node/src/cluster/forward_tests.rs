//! What the failure of a forwarded write means: only a connection that was never made leaves
//! the write "not applied" (503); a connection that breaks after the leader took the request
//! leaves it "unknown" (504). Real TLS with node certificates on loopback, against a leader
//! of our own that reads the request and then drops the connection.

use super::{Attempt, forward_to};
use crate::cluster::transport::test_pki::fresh_node_tls;
use crate::cluster::transport::{NodeTls, PeerChannels};
use kes_cluster::pki::CertificateAuthority;
use kes_cluster_proto::ForwardRequest;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The cluster id the forwarded request carries: the fake leader reads until it sees it, so
/// the request was on the wire before the connection breaks.
const MARKER: &str = "forward-test-cluster-id";

/// An HTTP/2 server preface: an empty SETTINGS frame.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// What the fake leader does once the forwarded request has arrived.
#[derive(Clone, Copy)]
enum Then {
    /// Closes the connection without answering (the leader crashed).
    Drop,
    /// Keeps the connection open and never reads or answers again, pings included (the
    /// leader was paused, or the network between the two broke).
    FallSilent,
}

/// A leader that takes one connection and reads until the forwarded request has arrived,
/// then does `then`. Its task says whether the request arrived; after `FallSilent` it holds
/// the connection open until the task's output is dropped.
async fn leader_that_reads_then(
    tls: &NodeTls,
    then: Then,
) -> (u16, JoinHandle<(bool, Option<impl Send>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut io = acceptor.accept(tcp).await.expect("TLS handshake");
        io.write_all(&EMPTY_SETTINGS).await.expect("preface");
        io.flush().await.expect("preface");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = io.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return (false, None);
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                return match then {
                    Then::Drop => (true, None),
                    Then::FallSilent => (true, Some(io)),
                };
            }
        }
    });
    (port, task)
}

fn request() -> ForwardRequest {
    ForwardRequest {
        cluster_id: MARKER.into(),
        command: vec![0xc0],
    }
}

struct Nodes {
    _dir: tempfile::TempDir,
    leader: NodeTls,
    follower: PeerChannels,
}

fn nodes() -> Nodes {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::new("node CA").expect("CA");
    let leader = fresh_node_tls(dir.path(), &ca, "node1");
    let follower = PeerChannels::with_keep_alive(
        Some(fresh_node_tls(dir.path(), &ca, "node2")),
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    Nodes {
        _dir: dir,
        leader,
        follower,
    }
}

/// The forward of a write to a leader that took the request and then did `then`.
async fn forward_to_a_leader_that(then: Then) -> Attempt {
    let n = nodes();
    let (port, leader) = leader_that_reads_then(&n.leader, then).await;
    let client = n
        .follower
        .client(&format!("127.0.0.1:{port}"), &n.leader.spki)
        .expect("client");
    let attempt = forward_to(client, request(), Duration::from_secs(20)).await;
    let (received, _connection) = leader.await.expect("leader task");
    assert!(received, "the leader received the request");
    attempt
}

/// Before: when the leader fell silent after it took the request, the connection's keep-alive
/// ping timed out, tonic answered Unavailable, and the follower took that for "never reached
/// the leader": 503, "not applied", although the leader may commit the write when it comes
/// back. After: the outcome is unknown, so the write answers 504 once its time runs out. The
/// same holds when the leader closes the connection after it took the request.
#[tokio::test]
async fn a_connection_that_breaks_after_the_leader_took_the_request_leaves_the_outcome_unknown() {
    for (then, what) in [(Then::FallSilent, "fell silent"), (Then::Drop, "closed")] {
        let attempt = forward_to_a_leader_that(then).await;
        assert!(
            matches!(attempt, Attempt::Maybe(_)),
            "the leader {what} after taking the request, so it may have applied it and the \
             outcome is unknown (504): {attempt:?}"
        );
    }
}

/// A leader that cannot be reached at all never saw the write: it was not applied (503), and
/// retrying it is safe.
#[tokio::test]
async fn a_refused_connection_means_not_applied() {
    let n = nodes();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let client = n
        .follower
        .client(&format!("127.0.0.1:{port}"), &n.leader.spki)
        .expect("client");
    let attempt = forward_to(client, request(), Duration::from_secs(10)).await;
    assert!(
        matches!(attempt, Attempt::Retry(_)),
        "nothing reached the leader, so nothing was applied (503): {attempt:?}"
    );
}
