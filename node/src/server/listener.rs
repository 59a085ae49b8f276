//! The HTTPS listener: TCP accept, TLS handshake, client identity, then HTTP/1.1 or h2.
//!
//! Every stage is bounded by `limits:`: connections (in all and per client address, idle ones
//! giving way to new ones at the cap), the handshake, the HTTP/1 request head, the request
//! body, and the time a connection may sit with no request in flight. h2 connections are
//! pinged and dropped when the pings go unanswered.

use super::activity::TrackedBody;
use super::body_deadline::DeadlineBody;
use super::conn_threads::ConnThreads;
use super::slots::{ConnectionSlots, Slot};
use crate::api::{ConnInfo, dispatch};
use crate::config::LimitsConfig;
use crate::server::Node;
use crate::tls::leaf_identity;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long a connection closed for idleness gets to finish what it is writing.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves the KES API on `listener` until `shutdown` completes.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = node.limits;
    let slots = ConnectionSlots::new(limits.max_connections, limits.max_connections_per_ip);
    super::fd_limit::warn_if_above_fd_limit(limits.max_connections);
    let threads = match ConnThreads::start() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot start the connection threads: {e}");
            return;
        }
    };
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
        let Some(slot) = slots.take(remote.ip()) else {
            tracing::debug!("connection from {remote} refused: every connection is busy");
            continue;
        };
        let acceptor = acceptor.clone();
        let node = node.clone();
        threads.hand_over(
            stream,
            Box::new(move |stream| {
                Box::pin(async move {
                    serve_connection(node, acceptor, stream, remote, limits, &slot).await;
                })
            }),
        );
    }
}

async fn serve_connection(
    node: Arc<Node>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    limits: LimitsConfig,
    slot: &Slot,
) {
    // Without TCP_NODELAY a TLS round trip costs tens of milliseconds (STACK.md).
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
    let tls_stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {remote} failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake with {remote} timed out");
                return;
            }
        },
        _ = slot.evicted.notified() => {
            tracing::debug!("dropping the handshake with {remote} to make room");
            return;
        }
    };
    let chain = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(Arc::from)
        .unwrap_or_default();
    let identity = leaf_identity(&chain);
    let conn = Arc::new(ConnInfo {
        identity,
        remote,
        chain,
    });
    let requests = slot.activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let node = node.clone();
        let conn = conn.clone();
        let in_flight = requests.begin();
        let req = req.map(|body| DeadlineBody::new(body, limits.body_timeout));
        async move {
            let resp = dispatch(node, conn, req).await;
            Ok::<_, Infallible>(
                resp.map(|body| TrackedBody::wrap(body, in_flight, limits.send_timeout)),
            )
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.http2_keep_alive_interval))
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    let connection = builder.serve_connection(TokioIo::new(tls_stream), service);
    tokio::pin!(connection);
    let close = async {
        tokio::select! {
            // A connection that never sends a request head is held no longer than a slow head.
            _ = slot.activity.idle(limits.header_timeout, limits.idle_timeout) => "idle",
            _ = slot.evicted.notified() => "idle, to make room for a new one",
        }
    };
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        why = close => {
            tracing::debug!("closing the connection from {remote}: {why}");
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, connection).await {
                Ok(ended) => ended,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!("connection from {remote} ended: {e}");
    }
}
