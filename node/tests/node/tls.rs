//! Handshakes: no certificate, unknown certificates of every kind, and `tls.auth: on`.

use crate::support::*;
use kes_cluster::Method;
use rustls_pki_types::pem::PemObject;
use std::path::PathBuf;

fn write_pair(dir: &std::path::Path, name: &str, cert: String, key: String) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

fn self_signed(alg: &'static rcgen::SignatureAlgorithm, expired: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    if expired {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn any_client_certificate_is_an_identity_when_auth_is_off() {
    let n = TestNode::dev().await;
    let dir = n.dir.path();
    let mut certs = vec![
        ("ed25519", self_signed(&rcgen::PKCS_ED25519, false)),
        ("p384", self_signed(&rcgen::PKCS_ECDSA_P384_SHA384, false)),
        ("expired", self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, true)),
    ];
    // ring cannot make RSA keys; openssl can.
    let rsa_key = dir.join("rsa.key");
    let rsa_crt = dir.join("rsa.crt");
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=rsa", "-days", "2",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&rsa_key)
        .arg("-out")
        .arg(&rsa_crt)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl made an RSA certificate");
    certs.push((
        "rsa",
        (
            std::fs::read_to_string(&rsa_crt).unwrap(),
            std::fs::read_to_string(&rsa_key).unwrap(),
        ),
    ));
    for (name, (cert, key)) in certs {
        let (c, k) = write_pair(dir, name, cert.clone(), key);
        let client = n.client_with(Some(&c), Some(&k));
        let r = call(&client, Method::GET, "/v1/identity/self/describe", "").await;
        let me = json(&r);
        let want = kes_cluster::identity_of_cert_pem(cert.as_bytes()).unwrap();
        assert_eq!(me["identity"], want.as_str(), "{name}");
        // Known to TLS, unknown to policy: 403 elsewhere.
        assert_eq!(
            call(&client, Method::GET, "/v1/key/list/*", "")
                .await
                .status,
            403,
            "{name}"
        );
    }
}

#[tokio::test]
async fn handshake_without_a_certificate_fails() {
    let n = TestNode::dev().await;
    let anon = n.client_with(None, None);
    let r = anon.request(Method::GET, "/v1/status", &[], "").await;
    assert!(
        r.is_err(),
        "no client certificate must fail the handshake, got {:?}",
        r.map(|r| r.status)
    );
    // /version needs no identity, but the handshake still does.
    assert!(
        anon.request(Method::GET, "/version", &[], "")
            .await
            .is_err()
    );
}

/// Presents a certificate with a key that does not belong to it. Our client library refuses to
/// build such a pair, so this speaks rustls directly with a resolver that skips the check.
#[derive(Debug)]
struct Mismatched(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Mismatched {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct NoServerCheck;

impl rustls::client::danger::ServerCertVerifier for NoServerCheck {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_certificate_with_the_wrong_key_fails() {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = TestNode::dev().await;
    let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, false);
    let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, false);
    let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(other_key.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider.key_provider.load_private_key(key).unwrap();
    let certified = std::sync::Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoServerCheck))
            .with_client_cert_resolver(std::sync::Arc::new(Mismatched(certified.clone())));
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", n.port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        // With TLS 1.3 the refusal surfaces on the first read, not in connect().
        let outcome = async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"GET /v1/identity/self/describe HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
            let mut buf = vec![0u8; 512];
            let k = tls.read(&mut buf).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..k]).into_owned())
        }
        .await;
        match outcome {
            Ok(text) => assert!(
                !text.starts_with("HTTP/1.1 200"),
                "{version:?}: served a client without its key: {text}"
            ),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[tokio::test]
async fn skip_auth_routes_work_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Prepare dev files first so the config can name them.
    let mut first = TestNode::with_args(
        tempfile::tempdir().unwrap(),
        data.clone(),
        free_port(),
        vec![],
    );
    first.args = vec![
        "--dev".into(),
        "--addr".into(),
        format!("127.0.0.1:{}", first.port),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    first.start().await;
    first.stop();
    let cfg = dir.path().join("node.yaml");
    std::fs::write(
        &cfg,
        "api:\n  /v1/ready:\n    skip_auth: true\n  /v1/metrics:\n    skip_auth: true\n",
    )
    .unwrap();
    let port = free_port();
    let mut n = TestNode::with_args(
        dir,
        data.clone(),
        port,
        vec![
            "--dev".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data.display().to_string(),
        ],
    );
    n.start().await;
    let anon = n.client_with(None, None);
    assert_eq!(call(&anon, Method::GET, "/v1/ready", "").await.status, 200);
    assert_eq!(
        call(&anon, Method::GET, "/v1/metrics", "").await.status,
        200
    );
    assert_error(
        &call(&anon, Method::GET, "/v1/status", "").await,
        400,
        "tls: client certificate is required",
    );
    assert_error(
        &call(&anon, Method::PUT, "/v1/key/create/k", "").await,
        400,
        "tls: client certificate is required",
    );
    assert_eq!(
        call(&n.admin(), Method::GET, "/v1/status", "").await.status,
        200
    );
}

/// The certificate the node presents now, as DER, read with a plain openssl handshake.
fn presented_certificate(n: &TestNode) -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -outform DER",
            n.port,
            n.file("admin.crt").display(),
            n.file("admin.key").display()
        ))
        .output()
        .expect("openssl");
    out.stdout
}

#[tokio::test]
async fn the_server_certificate_is_replaced_on_sighup_without_a_restart() {
    let n = TestNode::dev().await;
    let before = presented_certificate(&n);
    assert!(!before.is_empty(), "openssl read the certificate");
    let (cert, key) = kes_node::dev::server_certificate().unwrap();
    let want = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    std::fs::write(n.file("server.key"), key).unwrap();
    std::fs::write(n.file("server.crt"), cert).unwrap();
    n.signal("HUP");
    let t0 = std::time::Instant::now();
    while presented_certificate(&n) != want.as_ref() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "the new certificate was not picked up:\n{}",
            n.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A broken file on the next SIGHUP keeps the current certificate, and the node serves on.
    std::fs::write(n.file("server.crt"), "not a certificate").unwrap();
    n.signal("HUP");
    let t0 = std::time::Instant::now();
    while !n
        .log()
        .contains("keeping the current KES server certificate")
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{}",
            n.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(presented_certificate(&n), want.as_ref());
    let r = call(&n.admin(), Method::GET, "/v1/key/list/*", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
}
