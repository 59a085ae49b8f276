//! Log-stream subscribers: capped, and released when their client goes away.

use crate::raw::{read_head, tls};
use crate::support::*;
use kes_cluster::Method;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Opens `/v1/log/error` on a connection of its own; returns the answer's head and the
/// connection, which is the subscription.
async fn subscribe(n: &TestNode) -> (String, TlsStream<TcpStream>) {
    let mut s = tls(n, &[b"http/1.1"]).await;
    s.write_all(b"GET /v1/log/error HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    (head, s)
}

#[tokio::test]
async fn log_streams_are_capped_and_freed_when_their_client_leaves() {
    let _turn = crate::take_turn().await;
    let n = TestNode::dev_with_config(Some("limits:\n  max_log_streams: 2\n")).await;
    let (first, one) = subscribe(&n).await;
    let (second, _two) = subscribe(&n).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let (third, _) = subscribe(&n).await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third}");
    let r = call(&n.admin(), Method::GET, "/v1/status", "").await;
    assert_eq!(r.status, 200, "other requests are served: {}", r.text());

    // The first client goes away without a word, on a stream with nothing to send: its slot
    // must come back all the same.
    drop(one);
    let t0 = Instant::now();
    loop {
        let (head, _s) = subscribe(&n).await;
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the departed subscriber still holds its slot: {head}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
