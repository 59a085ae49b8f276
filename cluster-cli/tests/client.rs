//! The client against an in-process mock KES server: trust, client
//! certificates, keep-alive, errors, pagination.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use kes_cluster::{Client, ClientConfig, Error, Method};
use support::{MockKes, ServerCert};

fn config(mock: &MockKes) -> ClientConfig {
    ClientConfig {
        server: mock.url.clone(),
        cert: Some(mock.admin_cert.clone()),
        key: Some(mock.admin_key.clone()),
        ca: Some(mock.server_cert.clone()),
        insecure: false,
    }
}

#[tokio::test]
async fn trusts_a_self_signed_server_certificate_given_as_ca() {
    for kind in [ServerCert::SelfSignedCa, ServerCert::SelfSignedLeaf] {
        let mock = support::start(kind).await;
        let client = Client::new(&config(&mock)).unwrap();
        let me = client.self_describe().await.unwrap();
        assert_eq!(me.identity, mock.admin_identity, "{kind:?}");
        assert!(me.admin);
    }
}

#[tokio::test]
async fn verifies_a_ca_issued_server_certificate() {
    let mock = support::start(ServerCert::IssuedByCa).await;
    let mut cfg = config(&mock);
    cfg.ca = Some(mock.ca_cert());
    assert!(Client::new(&cfg).unwrap().status().await.is_ok());

    // Trusting an unrelated certificate must fail, with advice.
    let other = support::start(ServerCert::SelfSignedCa).await;
    cfg.ca = Some(other.server_cert.clone());
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
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let mut cfg = config(&mock);
    cfg.cert = None;
    cfg.key = None;
    let err = Client::new(&cfg).unwrap().status().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("KES_CLIENT_CERT"), "{text}");

    cfg.cert = Some(mock.admin_cert.clone());
    assert!(matches!(Client::new(&cfg), Err(Error::Config(m)) if m.contains("KES_CLIENT_KEY")));
}

#[tokio::test]
async fn reuses_one_connection_and_reconnects_after_close() {
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let client = Client::new(&config(&mock)).unwrap();
    for _ in 0..5 {
        client.status().await.unwrap();
    }
    assert_eq!(mock.connections.load(Ordering::SeqCst), 1);

    let r = client
        .request(Method::GET, "/test/close", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // The server closed that connection; the next request needs a new one.
    client.status().await.unwrap();
    client.status().await.unwrap();
    assert_eq!(mock.connections.load(Ordering::SeqCst), 2);

    // Concurrent requests each get a connection instead of failing.
    let (a, b, c) = tokio::join!(client.status(), client.status(), client.status());
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
}

#[tokio::test]
async fn typed_calls_and_api_errors() {
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let client = Client::new(&config(&mock)).unwrap();
    for name in ["a1", "a2", "a3", "a4", "a5", "b1"] {
        client.create_key(name).await.unwrap();
    }
    match client.create_key("a1").await {
        Err(Error::Api { status, message }) => {
            assert_eq!((status, message.as_str()), (400, "key already exists"))
        }
        other => panic!("{other:?}"),
    }
    // Pages of two, followed to the end.
    assert_eq!(
        client.list_keys("a").await.unwrap(),
        ["a1", "a2", "a3", "a4", "a5"]
    );
    assert_eq!(client.list_keys("").await.unwrap().len(), 6);
    let page = client.list_keys_page("", "", Some(2)).await.unwrap();
    assert_eq!((page.names.len(), page.continue_at.as_str()), (2, "a3"));

    let dek = client.generate("a1", Some(b"ctx")).await.unwrap();
    assert_eq!((dek.plaintext.len(), dek.ciphertext.len()), (32, 76));
    assert_eq!(
        client.decrypt("a1", &dek.ciphertext, None).await.unwrap(),
        dek.plaintext
    );
    let err = client.decrypt("a1", b"forged", None).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        err.to_string(),
        "decryption failed: ciphertext is not authentic"
    );
    assert_eq!(
        client.generate("nope", None).await.unwrap_err().to_string(),
        "key does not exist"
    );

    assert_eq!(
        client.list_identities("").await.unwrap(),
        [mock.admin_identity.as_str()]
    );

    // Unknown routes answer text, which becomes the message.
    match client.describe_key("x").await {
        Err(Error::Api {
            status: 404,
            message,
        }) => assert_eq!(message, "404 page not found"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn raw_requests_return_every_status_and_body() {
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let client = Client::new(&config(&mock)).unwrap();
    let r = client
        .request(Method::GET, "/nowhere", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(&r.body[..], b"404 page not found\n");
    assert_eq!(r.content_type(), Some("text/plain; charset=utf-8"));
    let r = client
        .request(
            Method::GET,
            "/test/echo",
            &[("x-test", "1")],
            &b"raw body"[..],
        )
        .await
        .unwrap();
    assert_eq!(&r.body[..], b"raw body");
    assert!(matches!(
        client.request(Method::GET, "no-slash", &[], "").await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn the_enclave_header_is_sent() {
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let client = Client::new(&config(&mock)).unwrap();
    client.status().await.unwrap();
    let tenant = client.with_enclave("tenant-1").unwrap();
    assert_eq!(tenant.enclave(), Some("tenant-1"));
    tenant.status().await.unwrap();
    assert_eq!(*mock.enclaves.lock().unwrap(), ["", "tenant-1"]);
    // The clone shares the connection.
    assert_eq!(mock.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_and_slow_servers() {
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

    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let client = Client::new(&config(&mock))
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let err = client
        .request(Method::GET, "/test/slow", &[], "")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // The abandoned connection is not reused; the client keeps working.
    client.status().await.unwrap();
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
