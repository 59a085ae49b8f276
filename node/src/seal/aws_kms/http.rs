//! One HTTP/1.1 POST on a fresh connection: TCP (no Nagle), TLS for `https://`, hyper.
//!
//! A provider is called at unseal and once per `seal.recheck` (minutes apart), so a connection
//! pool would only hold sockets that the KMS side closes long before the next call. A fresh
//! connection per call also means a call never fails on a stale pooled socket.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// A KMS answer is a few hundred bytes; anything far larger is not one, and is not read
/// into memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where requests go: `http(s)://host[:port]`, path `/`.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// As configured, for messages.
    pub(super) url: String,
    tls: bool,
    /// Host name or IP, without IPv6 brackets: what TCP connects to and TLS checks.
    host: String,
    port: u16,
    /// `host[:port]` as written: the `Host` header, which the signature covers.
    pub(super) authority: String,
}

impl Endpoint {
    /// Parses an endpoint URL. Only a bare origin is accepted: KMS is served at `/`, and a
    /// path or query would have to be signed in its canonical form, which we do not need.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        // Refused before anything echoes the URL: user info would put a password in a message.
        if url.contains('@') {
            return Err(
                "the endpoint carries user info; give only https://host[:port] (credentials come from the AWS_* variables)"
                    .to_owned(),
            );
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("'{url}' is not a URL ({e}); write it as https://host[:port]"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "'{url}' must start with https:// (or http:// for a local emulator)"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("'{url}' names no host; write it as https://host[:port]"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "'{url}' has a path or query; give only https://host[:port]"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Endpoint {
            url: url.to_owned(),
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
        })
    }

    /// Whether requests go over TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the host is this machine, where plain HTTP to an emulator exposes nothing.
    pub(super) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A request body that is wiped when hyper drops it: it carries the base64 of the cluster key
/// on a wrap. Copies inside hyper's and rustls's write buffers are beyond our reach.
pub(super) type SecretBody = Full<Cursor<Zeroizing<Vec<u8>>>>;

/// What came back. The body is wiped on drop: a Decrypt answer holds the cluster key.
pub(super) struct Response {
    pub(super) status: u16,
    /// `X-Amzn-ErrorType`, which some error answers carry instead of a JSON `__type`.
    pub(super) error_type: Option<String>,
    pub(super) body: Zeroizing<Vec<u8>>,
}

/// Sends one POST to `/` and reads the whole answer. Errors are plain descriptions of what
/// failed on the way (connect, TLS, HTTP); the caller decides what they mean.
pub(super) async fn post(
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&str, &str)],
    body: Zeroizing<Vec<u8>>,
) -> Result<Response, String> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", endpoint.host, endpoint.port))?;
    // Without it a small request over TLS waits on delayed ACKs (tens of milliseconds).
    tcp.set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    match (endpoint.tls, tls) {
        (true, Some(config)) => {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|_| format!("'{}' is not a valid TLS server name", endpoint.host))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {} failed: {e}", endpoint.authority))?;
            exchange(stream, headers, body).await
        }
        (true, None) => Err("no TLS configuration for an https endpoint".to_owned()),
        (false, _) => exchange(tcp, headers, body).await,
    }
}

async fn exchange<S>(
    stream: S,
    headers: &[(&str, &str)],
    body: Zeroizing<Vec<u8>>,
) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    // The connection is driven by its own task; aborting it on every exit path (including a
    // timeout that drops this future) closes the socket instead of leaving it to linger.
    let driver = AbortOnDrop(tokio::spawn(conn));

    let mut request = Request::post("/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(SecretBody::new(Cursor::new(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP request failed: {e}"))?;
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let collected = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    let body = into_secret(collected.to_bytes());
    drop(driver);
    Ok(Response {
        status,
        error_type,
        body,
    })
}

/// Copies the answer into memory that is wiped on drop, and wipes the original when we hold
/// its only reference (hyper's own read buffer is out of reach).
fn into_secret(bytes: Bytes) -> Zeroizing<Vec<u8>> {
    let copy = Zeroizing::new(bytes.to_vec());
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.fill(0);
    }
    copy
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_to_host_port_and_authority() {
        let e = Endpoint::parse("https://kms.eu-west-1.amazonaws.com").expect("valid");
        assert!(e.tls);
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            (
                "kms.eu-west-1.amazonaws.com",
                443,
                "kms.eu-west-1.amazonaws.com"
            )
        );
        let e = Endpoint::parse("http://127.0.0.1:5000/").expect("valid");
        assert!(!e.tls);
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 5000));
        assert_eq!(e.authority, "127.0.0.1:5000");
        let e = Endpoint::parse("http://[::1]:4566").expect("valid");
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:4566")
        );

        for bad in [
            "kms.amazonaws.com",
            "ftp://kms",
            "https://",
            "https://kms/path",
            "https://kms/?x=1",
            "https://user:pw@kms",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
