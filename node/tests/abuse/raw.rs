//! A raw client: TCP and TLS sockets the test drives byte by byte, where a well-behaved HTTP
//! client would hide exactly the misbehaviour under test.

use crate::support::TestNode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A TLS connection to `node` with the admin's certificate, offering `alpn`.
pub async fn tls(node: &TestNode, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let server = CertificateDer::from_pem_file(node.file("server.crt")).expect("server.crt");
    roots.add(server).expect("trust the dev server certificate");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(node.file("admin.crt"))
        .expect("admin.crt")
        .map(|c| c.expect("certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(node.file("admin.key")).expect("admin.key");
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", node.port))
        .await
        .expect("connect");
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the end of a response head, or until `within` passes; returns what came.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(within, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits until the peer closes `s` (EOF or an error); `None` if it is still open after
/// `within`. Whatever the peer sends before closing is discarded.
pub async fn closed_after<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return t0.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Sends `bytes` one at a time, `every` apart, until they run out or the peer closes the
/// connection; returns how long the peer let it go on (`None`: it never closed).
pub async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    every: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    for b in bytes {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(t0.elapsed()),
                Ok(_) => {}
            },
            _ = tokio::time::sleep(every) => {
                if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
                    return Some(t0.elapsed());
                }
            }
        }
    }
    None
}
