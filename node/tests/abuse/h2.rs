//! A raw h2 client, frames written by hand, for clients that keep to none of the protocol's
//! manners: no ping answered, no window granted, nothing sent after the request.

use crate::raw::tls;
use crate::support::TestNode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// One frame as read: (type, flags, stream id, first payload byte).
pub type Frame = (u8, u8, u32, u8);
/// Frame types.
pub const DATA: u8 = 0x0;
pub const PING: u8 = 0x6;
/// HEADERS (END_HEADERS) on stream 1 whose block starts with HPACK `:status: 200`.
pub const ANSWERED_200: Frame = (0x1, 0x4, 1, 0x88);

/// An h2 HEADERS frame (END_STREAM | END_HEADERS, stream 1) for `GET <path>`, HPACK-encoded
/// with static-table names and literal values, so no HPACK state is needed.
fn get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    block.push(0x44); // :path, literal value without indexing
    block.push(path.len() as u8);
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x41, 1, b'x']); // :authority x
    let len = block.len();
    let mut frame = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x1,
        0x5,
        0,
        0,
        0,
        1,
    ];
    frame.extend(block);
    frame
}

/// Reads h2 frames until the connection ends; returns (type, flags, stream id, first payload
/// byte) of each, and whether it ended by a close rather than an error.
async fn read_frames<S: AsyncRead + Unpin>(s: &mut S) -> (Vec<Frame>, bool) {
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = s.read_exact(&mut head).await {
            return (frames, e.kind() == std::io::ErrorKind::UnexpectedEof);
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if let Err(e) = s.read_exact(&mut payload).await {
            return (frames, e.kind() == std::io::ErrorKind::UnexpectedEof);
        }
        frames.push((
            head[3],
            head[4],
            stream,
            payload.first().copied().unwrap_or(0),
        ));
    }
}

/// The h2 client preface followed by a SETTINGS frame granting an initial window of `window`
/// bytes per stream.
pub fn preface(window: u32) -> Vec<u8> {
    let mut b = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    b.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4]);
    b.extend_from_slice(&window.to_be_bytes());
    b
}

/// An h2 connection that asked one thing and does nothing more.
pub struct RudeH2 {
    conn: TlsStream<TcpStream>,
    asked: Instant,
}

/// How it ended.
#[derive(Debug)]
pub struct Ended {
    /// What the node sent.
    pub frames: Vec<Frame>,
    /// From the request to the close.
    pub after: Duration,
}

impl RudeH2 {
    /// Connects granting `window` bytes per stream and sends `GET path` on stream 1.
    pub async fn ask(n: &TestNode, window: u32, path: &str) -> RudeH2 {
        let mut conn = tls(n, &[b"h2"]).await;
        conn.write_all(&preface(window)).await.unwrap();
        conn.write_all(&get(path)).await.unwrap();
        RudeH2 {
            conn,
            asked: Instant::now(),
        }
    }

    /// Reads until the node closes the connection; panics if it is still open after `within`
    /// or ends in an error rather than a close.
    pub async fn until_closed(mut self, within: Duration) -> Ended {
        let (frames, closed) = tokio::time::timeout(within, read_frames(&mut self.conn))
            .await
            .unwrap_or_else(|_| panic!("the node kept the connection open for {within:?}"));
        let ended = Ended {
            frames,
            after: self.asked.elapsed(),
        };
        assert!(
            closed,
            "the connection failed instead of closing: {ended:?}"
        );
        ended
    }
}
