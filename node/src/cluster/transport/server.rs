//! The gRPC server's accept loop: TCP, TLS with node certificates, then tonic.

use super::NodeTls;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// The SPKI hash of the peer's node certificate, put into every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpki(pub String);

impl PeerSpki {
    /// The identity of a chain a peer presented: the first certificate's SPKI, whose key
    /// signed the handshake. Later certificates never change it; a CA certificate first, or
    /// no chain, gives the empty SPKI, which no check accepts.
    pub fn of_chain(chain: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> PeerSpki {
        PeerSpki(
            chain
                .and_then(|c| c.first())
                .and_then(|leaf| crate::tls::identity_of_certificate(leaf.as_ref()))
                .map(|id| id.to_string())
                .unwrap_or_default(),
        )
    }
}

/// One accepted, authenticated connection.
pub(crate) struct NodeConn {
    io: TlsStream<TcpStream>,
    spki: PeerSpki,
}

impl tonic::transport::server::Connected for NodeConn {
    type ConnectInfo = PeerSpki;
    fn connect_info(&self) -> PeerSpki {
        self.spki.clone()
    }
}

impl AsyncRead for NodeConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` completes. Handshakes run concurrently, so
/// one slow peer cannot hold up the others.
pub async fn serve_grpc(
    listener: TcpListener,
    tls: NodeTls,
    router: tonic::transport::server::Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<NodeConn, std::io::Error>>(64);
    tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await;
                let io = match accepted {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        tracing::debug!("gRPC TLS handshake with {remote} failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let spki = PeerSpki::of_chain(io.get_ref().1.peer_certificates());
                let _ = tx.send(Ok(NodeConn { io, spki })).await;
            });
        }
    });
    let incoming = ReceiverStream(rx);
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
