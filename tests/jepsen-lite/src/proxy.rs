//! A userspace TCP proxy in front of every node's gRPC port: the network faults of the
//! loopback fallback, where namespaces and iptables cannot be had (no root), and latency,
//! which this kernel cannot add (no netem).
//!
//! Node `j`'s peers reach it at `fronts[j]`, which forwards to its real port `backs[j]`. Each
//! node connects from an address of its own (`cluster.grpc.source`), so the proxy knows which
//! node a connection comes from and applies the link's rules to the bytes in each direction:
//!
//! - a cut link carries nothing: bytes wait, unread, until it heals, as TCP segments wait to be
//!   retransmitted behind an iptables DROP (a new connection's handshake stalls the same way);
//! - loss holds back a chunk, with the given probability, for [`LOST_SEGMENT_DELAY`], as a lost
//!   segment waits for its retransmission (a byte stream cannot lose bytes);
//! - delay holds back every chunk.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a "lost" chunk waits: TCP's minimum retransmission timeout on Linux.
const LOST_SEGMENT_DELAY: Duration = Duration::from_millis(200);

/// How often a held connection looks whether its link healed.
const HEAL_POLL: Duration = Duration::from_millis(20);

/// What the links do now.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    /// `(from, to)` node pairs whose bytes do not pass.
    pub cut: BTreeSet<(usize, usize)>,
    /// Probability that a chunk is held back as a lost segment would be.
    pub loss: f64,
    /// Added to every chunk on every link.
    pub delay: Duration,
}

/// The listeners and their rules; dropping it stops them and every connection.
pub struct Proxy {
    rules: Arc<RwLock<Rules>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a listener at each of `fronts` forwarding to the same position of `backs`; a
    /// connection from `sources[i]` comes from node `i`. Must run inside a tokio runtime.
    pub fn start(
        fronts: &[SocketAddr],
        backs: &[SocketAddr],
        sources: &[IpAddr],
    ) -> Result<Proxy, String> {
        let rules = Arc::new(RwLock::new(Rules::default()));
        let sources: Arc<Vec<IpAddr>> = Arc::new(sources.to_vec());
        let mut tasks = Vec::new();
        for (to, (&front, &back)) in fronts.iter().zip(backs).enumerate() {
            let listener = std::net::TcpListener::bind(front)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(TcpListener::from_std)
                .map_err(|e| format!("proxy for node {} on {front}: {e}", to + 1))?;
            let (rules, sources) = (rules.clone(), sources.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((conn, from)) = listener.accept().await {
                    // A caller that is no node (a test's own client) is never cut off.
                    let from = sources
                        .iter()
                        .position(|&ip| ip == from.ip())
                        .unwrap_or(usize::MAX);
                    tokio::spawn(forward(conn, back, from, to, rules.clone()));
                }
            }));
        }
        Ok(Proxy { rules, tasks })
    }

    /// Changes the rules; connections follow them from their next chunk.
    pub fn set(&self, change: impl FnOnce(&mut Rules)) {
        change(&mut self.rules.write().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Carries one connection from node `from` to node `to`'s real port `back`, both ways.
async fn forward(
    conn: TcpStream,
    back: SocketAddr,
    from: usize,
    to: usize,
    rules: Arc<RwLock<Rules>>,
) {
    // A handshake across a cut link stalls, as behind a DROP, until the caller gives up.
    held(&rules, from, to).await;
    let Ok(upstream) = TcpStream::connect(back).await else {
        return;
    };
    let _ = conn.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (down_read, down_write) = conn.into_split();
    let (up_read, up_write) = upstream.into_split();
    let there = tokio::spawn(pump(down_read, up_write, from, to, rules.clone()));
    pump(up_read, down_write, to, from, rules).await;
    there.abort();
}

/// Copies bytes from `read` to `write` under the rules of the link `from` → `to`.
async fn pump(
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    from: usize,
    to: usize,
    rules: Arc<RwLock<Rules>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        held(&rules, from, to).await;
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (lost, delay) = {
            let r = rules.read().unwrap_or_else(|e| e.into_inner());
            (r.loss > 0.0 && rand::random::<f64>() < r.loss, r.delay)
        };
        if lost {
            tokio::time::sleep(LOST_SEGMENT_DELAY).await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Cut while the chunk was in flight: it waits for the heal with the rest.
        held(&rules, from, to).await;
        if write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// Returns once the link `from` → `to` is not cut.
async fn held(rules: &RwLock<Rules>, from: usize, to: usize) {
    while rules
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .cut
        .contains(&(from, to))
    {
        tokio::time::sleep(HEAL_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server behind the proxy, and a connection to it from `source` through it.
    async fn echo_through_proxy(source: IpAddr) -> (Proxy, TcpStream) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let front: SocketAddr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let node0: IpAddr = "127.0.0.3".parse().unwrap();
        let proxy = Proxy::start(&[front], &[back], &[node0]).unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let conn = socket.connect(front).await.unwrap();
        (proxy, conn)
    }

    async fn round_trip(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
        let t = Instant::now();
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(within, conn.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        assert_eq!(&buf, b"ping");
        Some(t.elapsed())
    }

    #[tokio::test]
    async fn a_cut_link_holds_bytes_until_it_heals_and_delay_is_added() {
        let (proxy, mut conn) = echo_through_proxy("127.0.0.3".parse().unwrap()).await;
        assert!(
            round_trip(&mut conn, Duration::from_secs(5))
                .await
                .is_some()
        );
        // Node 0 → node 0 is the only link here; cut it and the echo stops.
        proxy.set(|r| {
            r.cut.insert((0, 0));
        });
        assert_eq!(
            round_trip(&mut conn, Duration::from_millis(300)).await,
            None
        );
        proxy.set(|r| r.cut.clear());
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping", "the held bytes arrive after the heal");
        proxy.set(|r| r.delay = Duration::from_millis(100));
        let took = round_trip(&mut conn, Duration::from_secs(5)).await.unwrap();
        assert!(
            took >= Duration::from_millis(200),
            "two chunks, 100 ms each: {took:?}"
        );
    }

    #[tokio::test]
    async fn a_caller_that_is_no_node_is_never_cut() {
        let (proxy, mut conn) = echo_through_proxy("127.0.0.4".parse().unwrap()).await;
        proxy.set(|r| {
            r.cut.insert((0, 0));
        });
        assert!(
            round_trip(&mut conn, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
}
