//! Cached gRPC channels to peers, over our own mTLS connector.
//!
//! openraft creates network clients often; reconnecting each time would cost a TLS handshake
//! per RPC, so channels are kept per address and reused (STACK.md).
//!
//! Every channel is pinned to the SPKI of the node it means to reach (from the signed
//! membership, or the certificate a joiner asked with): any other node-CA certificate at that
//! address is refused, so a node that took over an address cannot receive Raft traffic.

use super::{NodeTls, PeerSpki};
use crate::raft::GRPC_MESSAGE_LIMIT;
use crate::raft::NodeInfo;
use kes_cluster_proto::cluster_client::ClusterClient;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Channels to peers by gRPC address and pinned SPKI.
#[derive(Clone)]
pub struct PeerChannels {
    tls: Option<NodeTls>,
    channels: Arc<Mutex<HashMap<(String, String), Channel>>>,
    keep_alive: KeepAlive,
    /// The local address connections leave from (`cluster.grpc.source`).
    source: Option<IpAddr>,
}

/// HTTP/2 pings on every peer connection: a peer that stops answering them (paused,
/// partitioned) fails its calls in flight instead of leaving them hanging.
#[derive(Debug, Clone, Copy)]
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
}

const KEEP_ALIVE: KeepAlive = KeepAlive {
    interval: Duration::from_secs(10),
    timeout: Duration::from_secs(5),
};

impl std::fmt::Debug for PeerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerChannels")
    }
}

impl PeerChannels {
    /// Channels using the node's TLS; `None` for a node without `cluster.tls`, which can
    /// only ever be a single-node cluster.
    pub fn new(tls: Option<NodeTls>) -> Self {
        PeerChannels {
            tls,
            channels: Arc::default(),
            keep_alive: KEEP_ALIVE,
            source: None,
        }
    }

    /// These channels, with connections leaving from `source` (`None`: the system's choice).
    pub fn from_source(self, source: Option<IpAddr>) -> Self {
        PeerChannels { source, ..self }
    }

    /// Channels that ping every `interval` and give up on a peer after `timeout`, so a test
    /// sees a silent peer fail its calls within a second.
    #[cfg(test)]
    pub(crate) fn with_keep_alive(
        tls: Option<NodeTls>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        PeerChannels {
            keep_alive: KeepAlive { interval, timeout },
            ..PeerChannels::new(tls)
        }
    }

    /// A client for the member at `addr` (`host:port`) whose node certificate has `spki`; its
    /// channel is kept for the next call.
    pub fn client(&self, addr: &str, spki: &str) -> Result<ClusterClient<Channel>, String> {
        self.pinned_client(addr, &[spki.to_owned()])
    }

    /// A client for `member`, accepting any SPKI the membership allows it (two while it
    /// rotates its certificate); its channel is kept for the next call.
    pub fn member_client(&self, member: &NodeInfo) -> Result<ClusterClient<Channel>, String> {
        self.pinned_client(&member.grpc, &member.accepted_spkis())
    }

    fn pinned_client(&self, addr: &str, pins: &[String]) -> Result<ClusterClient<Channel>, String> {
        let key = (addr.to_owned(), pins.join(","));
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match map.get(&key) {
            Some(c) => c.clone(),
            None => {
                // The member's SPKIs changed (a rotation): its older channels are no use.
                map.retain(|(a, _), _| a != addr);
                map.entry(key).or_insert(self.channel(addr, pins)?).clone()
            }
        };
        Ok(limited(channel))
    }

    /// A client for a node that is not a member yet (a joiner): its channel is not kept, so
    /// join requests cannot grow the cache.
    pub fn one_off_client(&self, addr: &str, spki: &str) -> Result<ClusterClient<Channel>, String> {
        Ok(limited(self.channel(addr, &[spki.to_owned()])?))
    }

    /// Forgets every channel: after this node starts presenting a new certificate, its next
    /// calls open connections with it (peers stop accepting the old one).
    pub fn forget_all(&self) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Forgets a peer's channels, e.g. after it was removed.
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(a, _), _| a != addr);
    }

    /// A lazy channel to `addr`, pinned to `pins`.
    fn channel(&self, addr: &str, pins: &[String]) -> Result<Channel, String> {
        if pins.iter().all(|p| p.is_empty()) {
            return Err(format!(
                "the node certificate of the peer at {addr} is not known, so it cannot be reached"
            ));
        }
        let tls = self
            .tls
            .clone()
            .ok_or("this node has no cluster.tls, so it cannot reach other nodes")?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keep_alive.interval)
            .keep_alive_timeout(self.keep_alive.timeout);
        let pinned = pins.to_vec();
        let source = self.source;
        let connector = tower::service_fn(move |uri: Uri| {
            let client = tls.client.clone();
            let pinned = pinned.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_owned();
                let port = uri.port_u16().unwrap_or(7473);
                let stream = connect_pinned(client, source, &host, port, &pinned).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

/// A TCP connection to `host:port`, from `source` when given: the first address of `host`
/// of the same family that accepts it.
async fn connect_from(
    source: Option<IpAddr>,
    host: &str,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(source) = source else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != source.is_ipv4() {
            continue;
        }
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address of the family of cluster.grpc.source {source}"),
        )
    }))
}

/// The message limits apply to every client, before anything is decoded.
fn limited(channel: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
        .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
        .max_encoding_message_size(GRPC_MESSAGE_LIMIT)
}

/// Opens a TLS connection to `host:port` (from the local address `source`, if given) and
/// keeps it only if the peer's certificate (the first of its chain, whose key signed the
/// handshake) has one of the SPKIs `pinned`.
pub(crate) async fn connect_pinned(
    client: Arc<rustls::ClientConfig>,
    source: Option<IpAddr>,
    host: &str,
    port: u16,
    pinned: &[String],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = connect_from(source, host, port).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await?;
    let PeerSpki(presented) = PeerSpki::of_chain(stream.get_ref().1.peer_certificates());
    if presented.is_empty() || !pinned.contains(&presented) {
        tracing::warn!(
            "refused the peer at {host}:{port}: it presented SPKI {presented}, not the member's {}",
            pinned.join(" or ")
        );
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the peer at {host}:{port} is not the member it should be"),
        ));
    }
    Ok(stream)
}
