//! Cached gRPC channels to peers, over our own mTLS connector.
//!
//! openraft creates network clients often; reconnecting each time would cost a TLS handshake
//! per RPC, so channels are kept per address and reused (STACK.md).

use super::NodeTls;
use crate::raft::GRPC_MESSAGE_LIMIT;
use kes_cluster_proto::cluster_client::ClusterClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Channels to peers by gRPC address.
#[derive(Clone)]
pub struct PeerChannels {
    tls: Option<NodeTls>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

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
        }
    }

    /// A client for the peer at `addr` (`host:port`).
    pub fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, String> {
        let channel = self.channel(addr)?;
        Ok(ClusterClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
            .max_encoding_message_size(GRPC_MESSAGE_LIMIT))
    }

    /// Forgets a peer's channel, e.g. after it was removed.
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let tls = self
            .tls
            .clone()
            .ok_or("this node has no cluster.tls, so it cannot reach other nodes")?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let connector = tower::service_fn(move |uri: Uri| {
            let tls = tls.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_owned();
                let port = uri.port_u16().unwrap_or(7473);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
                let stream = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel = endpoint.connect_with_connector_lazy(connector);
        map.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}
