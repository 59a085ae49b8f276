//! Connections to one KES server: TCP (no Nagle) → TLS → HTTP/1.1, kept
//! alive and reused.
//!
//! Idle connections wait in a small pool. A request takes one (or opens one
//! when none is idle, so concurrent callers never queue behind each other) and
//! returns it once the response body has been read. A pooled connection may
//! have been closed by the server while it sat idle; a request that fails on
//! one is retried once on a fresh connection, but only when it cannot have
//! reached the server or cannot change anything (GET/HEAD), so a write is
//! never applied twice by our retry.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::endpoint::Endpoint;
use super::response::Response;
use super::tls::{explain, find_io_error, find_rustls_error};
use crate::error::{Error, Result};

/// How long TCP connect plus TLS handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept beyond this many are closed.
const MAX_IDLE: usize = 16;

type Sender = SendRequest<Full<Bytes>>;

/// Opens and pools connections to one server.
pub(crate) struct Connector {
    pub(crate) endpoint: Endpoint,
    tls: TlsConnector,
    has_client_cert: bool,
    idle: Mutex<Vec<Sender>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server", &self.endpoint.url)
            .field("has_client_cert", &self.has_client_cert)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether trying again on a new connection is safe.
struct Failure {
    error: Error,
    retry_safe: bool,
}

impl Connector {
    /// A connector to the same server with the same TLS settings, and a pool of its own.
    pub(crate) fn fresh(&self) -> Self {
        Connector {
            endpoint: self.endpoint.clone(),
            tls: self.tls.clone(),
            has_client_cert: self.has_client_cert,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn new(
        endpoint: Endpoint,
        tls: rustls::ClientConfig,
        has_client_cert: bool,
    ) -> Self {
        Connector {
            endpoint,
            tls: TlsConnector::from(Arc::new(tls)),
            has_client_cert,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends the request built by `build` and reads the whole response.
    /// `build` is called again for a retry (bodies are cheap `Bytes` clones).
    pub(crate) async fn send(
        &self,
        build: impl Fn() -> Result<Request<Full<Bytes>>>,
    ) -> Result<Response> {
        if let Some(sender) = self.take_idle().await {
            match self.exchange(sender, build()?).await {
                Ok(response) => return Ok(response),
                Err(failure) if failure.retry_safe => {}
                Err(failure) => return Err(failure.error),
            }
        }
        let sender = self.connect().await?;
        self.exchange(sender, build()?).await.map_err(|f| f.error)
    }

    /// Closes all idle connections (the next request connects anew).
    pub(crate) fn close_idle(&self) {
        self.lock_idle().clear();
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection that is still open and ready, if any.
    async fn take_idle(&self) -> Option<Sender> {
        loop {
            let mut sender = self.lock_idle().pop()?;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                server: self.endpoint.url.clone(),
                reason: format!(
                    "no answer within {}s (is the address right and the port open?)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    async fn connect_now(&self) -> Result<Sender> {
        let endpoint = &self.endpoint;
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| Error::Connect {
                server: endpoint.url.clone(),
                reason: describe_connect_error(&e),
            })?;
        // Without TCP_NODELAY small TLS records wait for delayed ACKs: 40 ms+ per request.
        tcp.set_nodelay(true).map_err(|e| Error::Connect {
            server: endpoint.url.clone(),
            reason: format!("cannot set TCP_NODELAY: {e}"),
        })?;
        let tls = self
            .tls
            .connect(endpoint.server_name.clone(), tcp)
            .await
            .map_err(|e| self.transport_error(&e, "TLS handshake failed"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.transport_error(&e, "HTTP handshake failed"))?;
        // The connection task ends when the connection closes; its errors also
        // reach the pending request, which is where we report them.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One request/response on `sender`; on success the connection goes back
    /// to the pool.
    async fn exchange(
        &self,
        mut sender: Sender,
        request: Request<Full<Bytes>>,
    ) -> Result<Response, Failure> {
        let idempotent = matches!(*request.method(), Method::GET | Method::HEAD);
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut e) => {
                let never_sent = e.take_message().is_some();
                let error = e.into_error();
                return Err(Failure {
                    retry_safe: never_sent || idempotent,
                    error: self.request_error(&error),
                });
            }
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Err(Failure {
                    retry_safe: idempotent,
                    error: self.request_error(&e),
                });
            }
        };
        self.put_back(sender);
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Maps a failure on an established connection.
    fn request_error(&self, err: &hyper::Error) -> Error {
        if err.is_incomplete_message() && find_rustls_error(err).is_none() {
            let hint = if self.has_client_cert {
                ""
            } else {
                " (no client certificate was sent: set KES_CLIENT_CERT and KES_CLIENT_KEY)"
            };
            return Error::Io {
                context: format!(
                    "KES server {} closed the connection without answering",
                    self.endpoint.url
                ),
                reason: format!("{err}{hint}"),
            };
        }
        self.transport_error(err, "request failed")
    }

    /// A TLS error with advice when rustls is behind `err`, else an I/O error.
    fn transport_error(&self, err: &(dyn std::error::Error + 'static), what: &str) -> Error {
        if let Some(tls) = find_rustls_error(err) {
            return Error::Tls {
                server: self.endpoint.url.clone(),
                reason: explain(tls, self.has_client_cert),
            };
        }
        let reason = match find_io_error(err) {
            Some(io) if io.kind() == ErrorKind::UnexpectedEof => {
                "the server closed the connection (is it a TLS port of a KES server?)".to_string()
            }
            Some(io) => io.to_string(),
            None => err.to_string(),
        };
        Error::Io {
            context: format!("{what} with KES server {}", self.endpoint.url),
            reason,
        }
    }
}

fn describe_connect_error(err: &std::io::Error) -> String {
    match err.kind() {
        ErrorKind::ConnectionRefused => {
            "connection refused (is the server running and listening on this port?)".into()
        }
        ErrorKind::TimedOut => "connection timed out".into(),
        _ if err.to_string().contains("failed to lookup address") => {
            format!("cannot resolve the host name ({err})")
        }
        _ => err.to_string(),
    }
}
