//! The HTTPS listener: TCP accept, TLS handshake, client identity, then HTTP/1.1 or h2.

use crate::api::{ConnInfo, dispatch};
use crate::server::Node;
use crate::tls::leaf_identity;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A handshake that has not finished by then is dropped, so idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// KES's `ReadHeaderTimeout`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the KES API on `listener` until `shutdown` completes.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let node = node.clone();
        tokio::spawn(async move {
            // Without TCP_NODELAY a TLS round trip costs tens of milliseconds (STACK.md).
            let _ = stream.set_nodelay(true);
            let tls_stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {remote} failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
            let chain = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.to_vec())
                .unwrap_or_default();
            let identity = if chain.is_empty() {
                Err(crate::tls::IdentityError::Missing)
            } else {
                leaf_identity(&chain)
            };
            let conn = Arc::new(ConnInfo {
                identity,
                remote,
                chain,
            });
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(dispatch(node, conn, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(tls_stream), service)
                .await
            {
                tracing::debug!("connection from {remote} ended: {e}");
            }
        });
    }
}
