//! A tiny in-process KES look-alike for testing the client and the CLI: mTLS
//! (any client certificate, as KES with `tls.auth: off`), HTTP/1.1
//! keep-alive, and just enough routes to exercise every client path.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kes_cluster::identity::{
    IdentityOptions, identity_of_cert_pem, new_identity_pem, save_identity,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What kind of certificate the server presents.
#[derive(Debug, Clone, Copy)]
pub enum ServerCert {
    /// Self-signed with CA:TRUE (what `openssl req -x509` makes): WebPKI
    /// refuses it as an end entity, so only exact pinning trusts it.
    SelfSignedCa,
    /// Self-signed, not a CA.
    SelfSignedLeaf,
    /// A leaf issued by a separate CA (written to `ca.crt`).
    IssuedByCa,
}

/// A running mock server.
pub struct MockKes {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub server_cert: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub admin_identity: String,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// `Kes-Enclave` header of every request ("" when absent).
    pub enclaves: Arc<Mutex<Vec<String>>>,
}

impl MockKes {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

pub async fn start(kind: ServerCert) -> MockKes {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = server_certificate(kind, &dir);
    let server_cert = dir.path().join("server.crt");
    std::fs::write(&server_cert, &cert_pem).unwrap();
    let admin = new_identity_pem("admin", &IdentityOptions::default()).unwrap();
    let (admin_cert, admin_key) = save_identity(&admin, "admin", dir.path()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(AnyClient(provider)))
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );

    let connections = Arc::new(AtomicUsize::new(0));
    let enclaves = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(State {
        keys: Mutex::new(BTreeMap::new()),
        admin: admin.identity.clone(),
        enclaves: enclaves.clone(),
    });
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| identity_of_cert_pem(c).ok())
                    .unwrap_or_default();
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let peer = peer.clone();
                    async move { Ok::<_, std::convert::Infallible>(state.handle(req, &peer).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    MockKes {
        url,
        dir,
        server_cert,
        admin_cert,
        admin_key,
        admin_identity: admin.identity,
        connections,
        enclaves,
    }
}

/// Names listed per page: small, so that pagination is exercised.
const PAGE: usize = 2;

struct State {
    keys: Mutex<BTreeMap<String, ()>>,
    admin: String,
    enclaves: Arc<Mutex<Vec<String>>>,
}

const PLAINTEXT: [u8; 32] = [7; 32];
const CIPHERTEXT: [u8; 76] = [9; 76];

impl State {
    async fn handle(&self, req: Request<Incoming>, peer: &str) -> Response<Full<Bytes>> {
        let enclave = req
            .headers()
            .get("kes-enclave")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.enclaves.lock().unwrap().push(enclave.to_string());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json_body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let (route, name) = match path[1..].match_indices('/').nth(2) {
            Some((i, _)) => (&path[..i + 2], &path[i + 2..]),
            None => (path.as_str(), ""),
        };
        let exists = self.keys.lock().unwrap().contains_key(name);
        if path == "/v1/identity/self/describe" {
            return json(
                200,
                serde_json::json!({ "identity": peer, "admin": peer == self.admin, "created_at": "2025-01-01T00:00:00Z" }),
            );
        }
        match (method.as_str(), route) {
            ("POST" | "PUT", "/v1/key/create/") if exists => error(400, "key already exists"),
            ("POST" | "PUT", "/v1/key/create/") => {
                self.keys.lock().unwrap().insert(name.to_string(), ());
                empty(200)
            }
            ("GET", "/v1/key/list/") => {
                let prefix = name.trim_end_matches('*');
                let start = query.strip_prefix("continue_at=").unwrap_or("");
                let names: Vec<String> = self
                    .keys
                    .lock()
                    .unwrap()
                    .keys()
                    .filter(|k| k.starts_with(prefix) && k.as_str() >= start)
                    .cloned()
                    .collect();
                let next = names.get(PAGE).cloned().unwrap_or_default();
                let page: Vec<_> = names.into_iter().take(PAGE).collect();
                json(
                    200,
                    serde_json::json!({ "names": page, "continue_at": next }),
                )
            }
            (_, "/v1/key/generate/" | "/v1/key/decrypt/" | "/v1/key/encrypt/") if !exists => {
                error(404, "key does not exist")
            }
            ("POST", "/v1/key/generate/") => json(
                200,
                serde_json::json!({ "plaintext": b64(&PLAINTEXT), "ciphertext": b64(&CIPHERTEXT) }),
            ),
            ("POST", "/v1/key/decrypt/") => {
                if json_body["ciphertext"] == b64(&CIPHERTEXT) {
                    json(200, serde_json::json!({ "plaintext": b64(&PLAINTEXT) }))
                } else {
                    error(400, "decryption failed: ciphertext is not authentic")
                }
            }
            ("GET", "/v1/identity/list/") => json(
                200,
                serde_json::json!({ "identities": [self.admin], "continue_at": "" }),
            ),
            ("GET", "/v1/status") => json(
                200,
                serde_json::json!({ "version": "mock", "os": "linux", "arch": "amd64", "uptime": 61,
                    "num_cpu": 2, "num_cpu_used": 2, "mem_heap_used": 0, "mem_stack_used": 0 }),
            ),
            ("GET", "/test/slow") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                empty(200)
            }
            ("GET", "/test/close") => {
                let mut response = empty(200);
                response
                    .headers_mut()
                    .insert("connection", "close".parse().unwrap());
                response
            }
            ("GET", "/test/echo") => Response::new(Full::new(body)),
            _ => {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
                *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                response
                    .headers_mut()
                    .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
                response
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn empty(status: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

fn json(status: u16, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{value}\n"))));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// The KES error shape: the newline sits inside the object.
fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    let body = format!("{{\"message\":{}\n}}", serde_json::Value::from(message));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// (certificate PEM, key PEM) for the server, naming 127.0.0.1.
fn server_certificate(kind: ServerCert, dir: &tempfile::TempDir) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    match kind {
        ServerCert::SelfSignedCa => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        }
        ServerCert::SelfSignedLeaf => {
            params.is_ca = IsCa::ExplicitNoCa;
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        }
        ServerCert::IssuedByCa => {
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "test CA");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = ca_params.self_signed(&ca_key).unwrap();
            std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
            let issuer = Issuer::new(ca_params, ca_key);
            (
                params.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        }
    }
}

/// KES with `tls.auth: off`: any client certificate, but proof of its key.
#[derive(Debug)]
struct AnyClient(Arc<rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
