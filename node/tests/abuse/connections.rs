//! Connections that never become requests: slow handshakes, silent sockets, floods.

use crate::h2::{ANSWERED_200, DATA, PING, RudeH2};
use crate::raw::{closed_after, tls, trickle};
use crate::support::*;
use kes_cluster::Method;
use std::time::Duration;
use tokio::net::TcpStream;

/// The start of a TLS record carrying a ClientHello, then filler: enough to keep a handshake
/// "in progress" for as long as it is sent a byte at a time.
fn slow_client_hello() -> Vec<u8> {
    let mut b = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    b.resize(200, 0x42);
    b
}

/// A normal client's request succeeds.
async fn served(n: &TestNode) {
    let r = call(&n.admin(), Method::GET, "/v1/key/list/", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_slow_handshake_is_cut_off_while_others_are_served() {
    let _turn = crate::take_turn().await;
    let n = TestNode::dev_with_config(Some("limits:\n  handshake_timeout: 1s\n")).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", n.port)).await.unwrap();
        slow.push(tokio::spawn(async move {
            trickle(&mut s, &slow_client_hello(), Duration::from_millis(100)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    served(&n).await;
    for s in slow {
        let lasted = s
            .await
            .unwrap()
            .expect("the node closed the slow handshake");
        assert!(lasted < Duration::from_secs(4), "held for {lasted:?}");
    }
    served(&n).await;
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_lock_others_out() {
    let _turn = crate::take_turn().await;
    // Small caps and a long handshake timeout: the flood fills every slot many times over,
    // and no timeout clears it during the test. It comes from the normal client's own address.
    let n = TestNode::dev_with_config(Some(
        "limits:\n  max_connections: 100\n  max_connections_per_ip: 100\n  handshake_timeout: 30s\n",
    ))
    .await;
    let mut flood = Vec::new();
    for batch in 0..10 {
        let mut connects = Vec::new();
        for _ in 0..200 {
            connects.push(tokio::spawn(start_a_handshake(n.port)));
        }
        for c in connects {
            flood.push(c.await.unwrap());
        }
        if batch % 3 == 2 {
            served(&n).await;
        }
    }
    assert_eq!(flood.len(), 2000);
    served(&n).await;
    // The node holds no more of them than its cap: the rest were closed to make room.
    let mut waits = Vec::new();
    for mut s in flood {
        waits.push(tokio::spawn(async move {
            closed_after(&mut s, Duration::from_secs(5)).await.is_none()
        }));
    }
    let mut still_open = 0;
    for w in waits {
        still_open += usize::from(w.await.unwrap());
    }
    assert!(still_open <= 100, "{still_open} idle connections are held");
    served(&n).await;
}

/// A connection that has sent the first byte of a ClientHello and then nothing. The byte also
/// makes the connection real on the node's side: a bare connect can look established to the
/// client while the node's kernel, its accept queue full, has dropped it.
async fn start_a_handshake(port: u16) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(&slow_client_hello()[..1]).await.expect("write");
    s
}

#[tokio::test]
async fn silent_connections_after_the_handshake_are_closed() {
    let _turn = crate::take_turn().await;
    let n = TestNode::dev_with_config(Some("limits:\n  header_timeout: 1s\n  idle_timeout: 2s\n"))
        .await;
    let mut h1 = Vec::new();
    for _ in 0..20 {
        h1.push(tls(&n, &[b"http/1.1"]).await);
    }
    // An h2 client that sends the preface and its SETTINGS, then nothing.
    let mut h2 = tls(&n, &[b"h2"]).await;
    use tokio::io::AsyncWriteExt;
    h2.write_all(&crate::h2::preface(65_535)).await.unwrap();
    served(&n).await;
    for mut s in h1 {
        let t = closed_after(&mut s, Duration::from_secs(6)).await;
        assert!(t.is_some(), "a silent HTTP/1 connection stayed open");
    }
    let t = closed_after(&mut h2, Duration::from_secs(6)).await;
    assert!(t.is_some(), "a silent h2 connection stayed open");

    // A keep-alive connection that asked once and then went quiet is closed after the idle
    // timeout, not kept forever.
    let mut kept = tls(&n, &[b"http/1.1"]).await;
    kept.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = crate::raw::read_head(&mut kept, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let t = closed_after(&mut kept, Duration::from_secs(8)).await;
    assert!(t.is_some(), "an idle keep-alive connection stayed open");
    served(&n).await;
}

#[tokio::test]
async fn an_h2_client_that_stops_answering_pings_is_dropped() {
    let _turn = crate::take_turn().await;
    let n = TestNode::dev_with_config(Some(
        "limits:\n  http2_keep_alive_interval: 1s\n  http2_keep_alive_timeout: 1s\n  idle_timeout: 60s\n",
    ))
    .await;
    // A log stream keeps a request in flight, so only the unanswered pings can end this.
    let conn = RudeH2::ask(&n, 65_535, "/v1/log/error").await;
    served(&n).await;
    let ended = conn.until_closed(Duration::from_secs(8)).await;
    assert!(
        ended.frames.contains(&ANSWERED_200),
        "the stream was answered before the pings: {ended:?}"
    );
    assert!(
        ended.frames.iter().any(|f| f.0 == PING),
        "the node pinged: {ended:?}"
    );
    assert!(
        ended.after >= Duration::from_millis(1500),
        "closed before a ping could go unanswered: {ended:?}"
    );
    served(&n).await;
}

#[tokio::test]
async fn an_h2_client_that_never_takes_its_answers_is_dropped() {
    let _turn = crate::take_turn().await;
    // Pings and idleness cannot end this connection within the test: only the send timeout.
    let n = TestNode::dev_with_config(Some(
        "limits:\n  send_timeout: 1s\n  idle_timeout: 60s\n  http2_keep_alive_interval: 60s\n",
    ))
    .await;
    // A window of zero: the node may send headers, but not one byte of any body.
    let conn = RudeH2::ask(&n, 0, "/version").await;
    served(&n).await;
    let ended = conn.until_closed(Duration::from_secs(15)).await;
    assert!(
        ended.frames.contains(&ANSWERED_200),
        "the request was answered, its body held back: {ended:?}"
    );
    assert!(
        !ended.frames.iter().any(|f| f.0 == DATA && f.2 == 1),
        "no body was sent: {ended:?}"
    );
    assert!(ended.after >= Duration::from_secs(1), "{ended:?}");
    served(&n).await;
}
