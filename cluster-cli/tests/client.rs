//! The client against a real `kes-node`: trust, client certificates,
//! keep-alive, errors, pagination, enclaves.
//!
//! The node serves a certificate issued by a CA of our own (`kes_cluster::pki`,
//! what `kes-cluster dev` uses), so both ways of trusting a server are
//! exercised: through its CA, and by pinning its exact certificate.

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use kes_cluster::pki::{CertificateAuthority, LeafRequest};
use kes_cluster::{Client, ClientConfig, Error, Method};
use support::{Node, Relay};

struct Shared {
    node: Node,
    /// The CA that issued the node's certificate.
    ca_cert: PathBuf,
    /// The certificate the node serves.
    served_cert: PathBuf,
}

/// One node for this file, serving a CA-issued certificate.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let node = support::start_node(|dir| {
            let ca = CertificateAuthority::new("client test CA").unwrap();
            let leaf = ca
                .issue(
                    &LeafRequest {
                        common_name: "node".into(),
                        dns: vec!["localhost".into()],
                        ips: vec!["127.0.0.1".parse().unwrap()],
                        client_auth: false,
                    },
                    None,
                )
                .unwrap();
            std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
            std::fs::write(dir.join("issued.crt"), &leaf.cert_pem).unwrap();
            std::fs::write(dir.join("issued.key"), &leaf.key_pem).unwrap();
            vec![
                "--cert".into(),
                dir.join("issued.crt").display().to_string(),
                "--key".into(),
                dir.join("issued.key").display().to_string(),
            ]
        });
        Shared {
            ca_cert: node.dir.join("ca.crt"),
            served_cert: node.dir.join("issued.crt"),
            node,
        }
    })
}

fn config(ca: Option<PathBuf>) -> ClientConfig {
    let node = &shared().node;
    ClientConfig {
        server: node.url.clone(),
        cert: Some(node.admin_cert.clone()),
        key: Some(node.admin_key.clone()),
        ca,
        insecure: false,
    }
}

fn admin() -> Client {
    Client::new(&config(Some(shared().ca_cert.clone()))).unwrap()
}

#[tokio::test]
async fn trusts_the_issuing_ca_or_the_exact_certificate() {
    let s = shared();
    for ca in [&s.ca_cert, &s.served_cert] {
        let client = Client::new(&config(Some(ca.clone()))).unwrap();
        let me = client.self_describe().await.unwrap();
        assert_eq!(me.identity, s.node.admin_identity, "{}", ca.display());
        assert!(me.admin);
    }
}

#[tokio::test]
async fn untrusted_servers_are_refused_with_advice() {
    let s = shared();
    // The certificate `--dev` made is not the one served: trusting it fails.
    let mut cfg = config(Some(s.node.server_cert.clone()));
    match Client::new(&cfg).unwrap().status().await {
        Err(Error::Tls { reason, .. }) => assert!(reason.contains("KES_CA"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The public roots do not know a private CA either.
    cfg.ca = None;
    assert!(matches!(
        Client::new(&cfg).unwrap().status().await,
        Err(Error::Tls { .. })
    ));
    // Unless verification is skipped.
    cfg.insecure = true;
    assert!(Client::new(&cfg).unwrap().status().await.is_ok());
}

#[tokio::test]
async fn a_missing_client_certificate_is_explained() {
    let mut cfg = config(Some(shared().ca_cert.clone()));
    cfg.cert = None;
    cfg.key = None;
    let err = Client::new(&cfg).unwrap().status().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("KES_CLIENT_CERT"), "{text}");

    cfg.cert = Some(shared().node.admin_cert.clone());
    assert!(matches!(Client::new(&cfg), Err(Error::Config(m)) if m.contains("KES_CLIENT_KEY")));
}

fn through(relay: &Relay) -> Client {
    let mut cfg = config(Some(shared().ca_cert.clone()));
    cfg.server = relay.url.clone();
    Client::new(&cfg).unwrap()
}

#[tokio::test]
async fn reuses_one_connection_and_reconnects_after_close() {
    let relay = Relay::start(shared().node.port).await;
    let client = through(&relay);
    for _ in 0..5 {
        client.status().await.unwrap();
    }
    assert_eq!(relay.connections(), 1);

    // The pooled connection is closed under the client; the next requests
    // need (and get) a new one.
    relay.drop_all();
    client.status().await.unwrap();
    client.status().await.unwrap();
    assert_eq!(relay.connections(), 2);

    // Concurrent requests each get a connection instead of failing.
    let (a, b, c) = tokio::join!(client.status(), client.status(), client.status());
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
}

#[tokio::test]
async fn typed_calls_and_api_errors() {
    let client = admin();
    for name in [
        "typed-a1", "typed-a2", "typed-a3", "typed-a4", "typed-a5", "typed-b1",
    ] {
        client.create_key(name).await.unwrap();
    }
    match client.create_key("typed-a1").await {
        Err(Error::Api { status, message }) => {
            assert_eq!((status, message.as_str()), (400, "key already exists"))
        }
        other => panic!("{other:?}"),
    }
    // Pages of two, followed to the end.
    assert_eq!(
        client.list_keys("typed-a").await.unwrap(),
        ["typed-a1", "typed-a2", "typed-a3", "typed-a4", "typed-a5"]
    );
    assert_eq!(client.list_keys("typed-").await.unwrap().len(), 6);
    let page = client.list_keys_page("typed-", "", Some(2)).await.unwrap();
    assert_eq!(page.names, ["typed-a1", "typed-a2"]);
    assert_eq!(page.continue_at, "typed-a3");

    let dek = client.generate("typed-a1", Some(b"ctx")).await.unwrap();
    assert_eq!(dek.plaintext.len(), 32);
    assert_eq!(
        client
            .decrypt("typed-a1", &dek.ciphertext, Some(b"ctx"))
            .await
            .unwrap(),
        dek.plaintext
    );
    let err = client
        .decrypt("typed-a1", b"forged", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        err.to_string(),
        "decryption failed: ciphertext is not authentic"
    );
    assert_eq!(
        client
            .generate("typed-nope", None)
            .await
            .unwrap_err()
            .to_string(),
        "key does not exist"
    );
    assert!(
        client
            .list_identities("")
            .await
            .unwrap()
            .contains(&shared().node.admin_identity)
    );
}

#[tokio::test]
async fn raw_requests_return_every_status_and_body() {
    let client = admin();
    // Unknown routes answer text.
    let r = client
        .request(Method::GET, "/nowhere", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(&r.body[..], b"404 page not found\n");
    assert_eq!(r.content_type(), Some("text/plain; charset=utf-8"));
    match r.error_for_status() {
        Err(Error::Api {
            status: 404,
            message,
        }) => assert_eq!(message, "404 page not found"),
        other => panic!("{other:?}"),
    }
    // A raw body reaches the server: the key it carries is imported.
    let body = format!(r#"{{"key":"{}","cipher":"AES256"}}"#, "A".repeat(43) + "=");
    let r = client
        .request(Method::POST, "/v1/key/import/raw-import", &[], body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        client.describe_key("raw-import").await.unwrap().name,
        "raw-import"
    );
    assert!(matches!(
        client.request(Method::GET, "no-slash", &[], "").await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn the_enclave_header_is_sent() {
    let client = admin();
    let missing = client.with_enclave("no-such-tenant").unwrap();
    assert_eq!(missing.enclave(), Some("no-such-tenant"));
    assert_eq!(
        missing.list_keys("").await.unwrap_err().to_string(),
        "enclave does not exist"
    );
    client.create_enclave("tenant-1", None).await.unwrap();
    let tenant = client.with_enclave("tenant-1").unwrap();
    tenant.create_key("in-tenant").await.unwrap();
    assert_eq!(tenant.list_keys("").await.unwrap(), ["in-tenant"]);
    assert!(
        !client
            .list_keys("")
            .await
            .unwrap()
            .contains(&"in-tenant".to_string())
    );
}

#[tokio::test]
async fn unreachable_and_hung_servers() {
    let cfg = ClientConfig {
        server: "127.0.0.1:1".into(),
        insecure: true,
        ..ClientConfig::default()
    };
    let err = Client::new(&cfg).unwrap().status().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot reach KES server https://127.0.0.1:1: connection refused"),
        "{err}"
    );

    let relay = Relay::start(shared().node.port).await;
    let client = through(&relay).with_timeout(Duration::from_millis(300));
    client.status().await.unwrap();
    relay.stall(true);
    let err = client.status().await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    relay.stall(false);
    // The abandoned connection is not reused; the client keeps working.
    client.status().await.unwrap();
    assert_eq!(relay.connections(), 2);
}

#[test]
fn bad_configurations_are_refused_up_front() {
    let cfg = |server: &str, ca: Option<&str>| ClientConfig {
        server: server.into(),
        ca: ca.map(Into::into),
        ..ClientConfig::default()
    };
    assert!(matches!(
        Client::new(&cfg("ftp://x:1", None)),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::new(&cfg("x:1", Some("/nonexistent/ca.crt"))),
        Err(Error::Io { context, .. }) if context.contains("/nonexistent/ca.crt")
    ));
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.crt");
    std::fs::write(&not_pem, "hello").unwrap();
    assert!(matches!(
        Client::new(&cfg("x:1", not_pem.to_str())),
        Err(Error::Config(m)) if m.contains("no PEM certificate")
    ));
}
