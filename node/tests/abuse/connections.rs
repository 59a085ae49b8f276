//! Connections that never become requests: slow handshakes, silent sockets, floods.

use crate::raw::{closed_after, tls, trickle};
use crate::support::*;
use kes_cluster::Method;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

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
    let n = TestNode::dev_with_config(Some(
        "limits:\n  max_connections_per_ip: 100\n  handshake_timeout: 2s\n",
    ))
    .await;
    // The flood comes from 127.0.0.2, so the per-address cap is what stands between it and
    // the normal client on 127.0.0.1.
    let mut flood = Vec::new();
    for batch in 0..10 {
        let mut connects = Vec::new();
        for _ in 0..200 {
            connects.push(tokio::spawn(connect_from_second_address(n.port)));
        }
        for c in connects {
            flood.push(c.await.unwrap());
        }
        if batch == 4 {
            served(&n).await;
        }
    }
    assert_eq!(flood.len(), 2000);
    served(&n).await;
    let mut quickly = 0;
    let mut waits = Vec::new();
    for mut s in flood {
        waits.push(tokio::spawn(async move {
            closed_after(&mut s, Duration::from_secs(8)).await
        }));
    }
    for w in waits {
        let closed = w.await.unwrap().expect("every idle connection is closed");
        // Over the cap: closed at accept. Under it: closed by the handshake timeout.
        if closed < Duration::from_millis(500) {
            quickly += 1;
        }
    }
    assert!(
        quickly >= 1800,
        "only {quickly} of 2000 were refused at once"
    );
    served(&n).await;
    // The slots came back: the flooding address is let in again (held in its handshake,
    // not refused at accept).
    let mut again = connect_from_second_address(n.port).await;
    assert!(
        closed_after(&mut again, Duration::from_millis(800))
            .await
            .is_none(),
        "refused although every earlier connection has ended"
    );
}

async fn connect_from_second_address(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
}

#[tokio::test]
async fn silent_connections_after_the_handshake_are_closed() {
    let n = TestNode::dev_with_config(Some("limits:\n  header_timeout: 1s\n  idle_timeout: 2s\n"))
        .await;
    let mut h1 = Vec::new();
    for _ in 0..20 {
        h1.push(tls(&n, &[b"http/1.1"]).await);
    }
    // An h2 client that sends the preface and its SETTINGS, then nothing.
    let mut h2 = tls(&n, &[b"h2"]).await;
    use tokio::io::AsyncWriteExt;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
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
