//! A typed async client for the KES HTTP API over mutual TLS.
//!
//! ```text
//!  Client ──request()──▶ Connector ──▶ pool of idle HTTP/1.1 connections
//!    │                       │            (TCP_NODELAY → rustls → hyper)
//!    └─ keys, policies,      └─ retries once on a fresh connection when a
//!       identities,             reused one turned out closed and the
//!       enclaves, system        request is safe to resend
//! ```
//!
//! [`Client::request`] is the raw door (any method, path, headers and body;
//! every status comes back as a [`Response`]). The typed methods map one
//! KES route each and turn non-2xx answers into [`Error::Api`].
//!
//! A `Client` is cheap to clone; clones share the connection pool. It needs a
//! running tokio runtime (connections are driven by spawned tasks).

mod cluster;
mod conn;
mod enclaves;
mod endpoint;
mod identities;
mod keys;
mod path;
mod policies;
mod response;
mod system;
mod tls;
mod types;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper::{HeaderMap, Method, Request};

pub use cluster::{
    ClusterNode, ClusterStatus, JoinAnswer, MEMBERSHIP_TIMEOUT, explain_not_a_cluster,
};
pub use response::Response;
pub use types::{
    ApiRoute, Dek, EnclaveInfo, IdentityInfo, KeyInfo, KeyVersionInfo, ListPage, Policy,
    PolicyDetails, PolicyInfo, SelfIdentity, Status, Version,
};

use crate::error::{Error, Result};
use conn::Connector;
use endpoint::Endpoint;

/// The header that selects an enclave.
pub const ENCLAVE_HEADER: &str = "Kes-Enclave";

/// How long a request may take by default, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and how to authenticate to it.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// `https://host:port`; `host:port` also works.
    pub server: String,
    /// Client certificate (PEM). Without one the client connects
    /// anonymously, which a KES server normally refuses.
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// PEM file (or directory of PEM files) with the CA certificates to
    /// trust; a self-signed server certificate may be given as itself.
    /// Without it the public web roots are trusted.
    pub ca: Option<PathBuf>,
    /// Skip server certificate verification (testing only).
    pub insecure: bool,
}

/// A connection-reusing KES client. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Client {
    connector: Arc<Connector>,
    enclave: Option<HeaderValue>,
    timeout: Duration,
}

impl Client {
    /// Checks the configuration and loads certificates and keys. Nothing is
    /// sent until the first request.
    pub fn new(config: &ClientConfig) -> Result<Client> {
        let endpoint = Endpoint::parse(&config.server)?;
        let tls = tls::rustls_config(config)?;
        Ok(Client {
            connector: Arc::new(Connector::new(endpoint, tls, config.cert.is_some())),
            enclave: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The server as `https://host:port`.
    pub fn server(&self) -> &str {
        &self.connector.endpoint.url
    }

    /// A client that sends `Kes-Enclave: <enclave>` with every request
    /// (empty: no header). It shares this client's connections.
    pub fn with_enclave(&self, enclave: &str) -> Result<Client> {
        let value = if enclave.is_empty() {
            None
        } else {
            Some(HeaderValue::from_str(enclave).map_err(|_| {
                Error::Config(format!(
                    "enclave name {enclave:?} cannot be sent in a header"
                ))
            })?)
        };
        Ok(Client {
            enclave: value,
            ..self.clone()
        })
    }

    /// The enclave this client selects, if any.
    pub fn enclave(&self) -> Option<&str> {
        self.enclave.as_ref().and_then(|v| v.to_str().ok())
    }

    /// A client whose requests give up after `timeout` (default
    /// [`DEFAULT_TIMEOUT`]). It shares this client's connections.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// The same client with connections of its own: requests through it never take one of
    /// this client's (a load generator's worker keeps its own connection).
    pub fn fresh(&self) -> Client {
        Client {
            connector: Arc::new(self.connector.fresh()),
            ..self.clone()
        }
    }

    /// Closes the idle connections; the next request opens a new one.
    pub fn close_idle_connections(&self) {
        self.connector.close_idle();
    }

    /// Sends any request and returns the response whatever its status.
    ///
    /// `path` is the origin-form target (`/v1/key/create/k`, query allowed),
    /// sent as given. `Host` and `User-Agent` are set unless `headers` sets
    /// them; the enclave header is added when the client has one. Only
    /// transport failures are errors.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response> {
        if !path.starts_with('/') {
            return Err(Error::Config(format!(
                "request path {path:?} must start with '/'"
            )));
        }
        let mut header_map = HeaderMap::new();
        header_map.insert(HOST, header_value(&self.connector.endpoint.authority)?);
        header_map.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("kes-cluster/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(enclave) = &self.enclave {
            header_map.insert(HeaderName::from_static("kes-enclave"), enclave.clone());
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
            header_map.insert(name, header_value(value)?);
        }
        let body: Bytes = body.into();
        let build = || {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Full::new(body.clone()))
                .map_err(|e| Error::Config(format!("invalid request {method} {path}: {e}")))?;
            *request.headers_mut() = header_map.clone();
            Ok(request)
        };
        match tokio::time::timeout(self.timeout, self.connector.send(build)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                server: self.server().to_string(),
                after: self.timeout,
            }),
        }
    }

    /// A typed call: JSON body (if any), non-2xx → [`Error::Api`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response> {
        let response = match body {
            Some(json) => {
                let bytes =
                    serde_json::to_vec(&json).map_err(|e| Error::Protocol(e.to_string()))?;
                self.request(
                    method,
                    path,
                    &[(CONTENT_TYPE.as_str(), "application/json")],
                    bytes,
                )
                .await?
            }
            None => self.request(method, path, &[], Bytes::new()).await?,
        };
        response.error_for_status()
    }
}

/// `server` (`https://host:port`, `host:port`, ...) in the one form the
/// client uses and kes-cluster nodes expect, `https://host:port`.
pub fn server_url(server: &str) -> Result<String> {
    Ok(Endpoint::parse(server)?.url)
}

fn header_value(value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value)
        .map_err(|_| Error::Config(format!("invalid header value {value:?}")))
}

/// Standard padded base64, the encoding of every byte field in the KES API.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a base64 byte field of a server answer.
pub(crate) fn unb64(field: &str, value: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| Error::Protocol(format!("field '{field}' is not base64: {e}")))
}
