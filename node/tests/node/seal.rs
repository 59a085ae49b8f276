//! A single node sealed by a real PKCS#11 token (SoftHSM2) and by an upstream KES server.

use crate::config::{Setup, node_with, setup, wait_ready_with};
use crate::support::*;
use kes_cluster::{Client, Method};
use std::path::Path;
use std::time::{Duration, Instant};

const PIN: &str = "1234-5678";

/// A SoftHSM2 token made by the project's setup script; returns SOFTHSM2_CONF.
fn token(dir: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/softhsm-setup.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .env("KES_HSM_PIN", PIN)
        .output()
        .expect("run scripts/softhsm-setup.sh");
    assert!(
        out.status.success(),
        "scripts/softhsm-setup.sh failed (scripts/test.sh installs softhsm2):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("softhsm2.conf").display().to_string()
}

fn pkcs11_yaml(s: &Setup, recheck: &str) -> String {
    format!(
        "admin:\n  identity: {}\ntls:\n  key: {p}/server.key\n  cert: {p}/server.crt\nseal:\n  pkcs11:\n    module: /usr/lib/softhsm/libsofthsm2.so\n    token_label: kes-cluster\n    pin_env: KES_HSM_PIN\n    key_label: kes-root\n  recheck: {recheck}\n",
        s.admin_id,
        p = s.dir.path().display()
    )
}

fn admin_of(n: &TestNode) -> kes_cluster::Client {
    n.client_with(
        Some(&n.dir.path().join("admin.crt")),
        Some(&n.dir.path().join("admin.key")),
    )
}

async fn sealed_answer(c: &kes_cluster::Client) -> (u16, String) {
    for _ in 0..100 {
        if let Ok(r) = c.request(Method::GET, "/v1/ready", &[], "").await {
            return (r.status, r.text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node never answered");
}

#[tokio::test]
async fn pkcs11_unseals_refuses_a_wrong_pin_and_seals_when_the_key_is_deleted() {
    let s = setup();
    let conf = token(&s.dir.path().join("hsm"));
    let yaml = pkcs11_yaml(&s, "1s");
    let mut n = node_with(s, &yaml);
    n.env = vec![
        ("SOFTHSM2_CONF".into(), conf.clone()),
        ("KES_HSM_PIN".into(), PIN.into()),
    ];
    let t0 = Instant::now();
    n.spawn();
    let admin = admin_of(&n);
    wait_ready_with(&admin).await;
    eprintln!(
        "pkcs11: first start (bootstrap, wrap in the HSM) ready after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        call(&admin, Method::PUT, "/v1/key/create/k", "")
            .await
            .status,
        200
    );
    let dek = json(&call(&admin, Method::PUT, "/v1/key/generate/k", "{}").await);
    n.stop();
    let t0 = Instant::now();
    n.spawn();
    wait_ready_with(&admin).await;
    eprintln!(
        "pkcs11: restart unsealed and ready after {:?}",
        t0.elapsed()
    );
    let body = serde_json::json!({ "ciphertext": dek["ciphertext"] }).to_string();
    assert_eq!(
        call(&admin, Method::PUT, "/v1/key/decrypt/k", &body)
            .await
            .status,
        200
    );
    let status = json(&call(&admin, Method::GET, "/v1/status", "").await);
    assert_eq!(status["sealed"], false);

    // A wrong PIN: the node stays up, sealed, says why, and does not retry (HSMs lock tokens).
    n.stop();
    n.env[1].1 = "0000-0000".into();
    n.spawn();
    let (code, text) = sealed_answer(&admin).await;
    assert_eq!(code, 503, "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, text) = sealed_answer(&admin).await;
    assert_eq!(code, 503);
    assert!(
        text.contains("sealed") && text.to_lowercase().contains("pin"),
        "the reason names the PIN: {text}"
    );
    assert_error(
        &call(&admin, Method::PUT, "/v1/key/decrypt/k", &body).await,
        503,
        "node is sealed",
    );
    let m = call(&admin, Method::GET, "/v1/metrics", "").await.text();
    assert!(m.contains("kes_seal_sealed 1"));
    assert!(
        n.log().contains("not retrying automatically"),
        "{}",
        n.log()
    );
    assert!(n.is_running());

    // The right PIN again, then the root key is deleted from the token: at the next re-check
    // (1 s here) the node seals itself and drops its keys.
    n.stop();
    n.env[1].1 = PIN.into();
    n.spawn();
    wait_ready_with(&admin).await;
    let del = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "kes-cluster",
            "--login",
            "--pin",
            PIN,
        ])
        .args([
            "--delete-object",
            "--type",
            "secrkey",
            "--label",
            "kes-root",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("pkcs11-tool");
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let t0 = Instant::now();
    let mut sealed = false;
    while t0.elapsed() < Duration::from_secs(10) {
        let r = call(&admin, Method::PUT, "/v1/key/decrypt/k", &body).await;
        if r.status == 503 {
            sealed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        sealed,
        "the node kept serving after its root key was deleted:\n{}",
        n.log()
    );
    eprintln!(
        "pkcs11: sealed {:?} after the root key was deleted",
        t0.elapsed()
    );
}

/// A node config whose seal is the key `root-key` on `upstream` (a `kes-node --dev`), with
/// `extra` lines added to the `seal:` section.
fn kes_seal_yaml(s: &Setup, upstream: &TestNode, extra: &str) -> String {
    format!(
        "admin:\n  identity: {}\ntls:\n  key: {p}/server.key\n  cert: {p}/server.crt\nseal:\n  kes:\n    endpoint: {url}\n    cert: {u}/admin.crt\n    key: {u}/admin.key\n    ca: {u}/server.crt\n    key_name: root-key\n{extra}",
        s.admin_id,
        p = s.dir.path().display(),
        url = upstream.url,
        u = upstream.data.display()
    )
}

/// Creates the root key on `upstream`, starts a node sealed by it (with `extra` seal settings),
/// waits until it is ready and creates the key `k` on it.
async fn node_sealed_by(upstream: &TestNode, extra: &str) -> (TestNode, kes_cluster::Client) {
    let r = call(
        &upstream.admin(),
        Method::PUT,
        "/v1/key/create/root-key",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = setup();
    let yaml = kes_seal_yaml(&s, upstream, extra);
    let mut n = node_with(s, &yaml);
    n.spawn();
    let admin = admin_of(&n);
    wait_ready_with(&admin).await;
    assert_eq!(
        call(&admin, Method::PUT, "/v1/key/create/k", "")
            .await
            .status,
        200
    );
    (n, admin)
}

#[tokio::test]
async fn an_upstream_kes_server_holds_the_root_key() {
    let upstream = TestNode::dev().await;
    let (mut n, admin) = node_sealed_by(&upstream, "").await;
    n.stop();
    let t0 = Instant::now();
    n.spawn();
    wait_ready_with(&admin).await;
    eprintln!(
        "kes upstream: restart unsealed and ready after {:?}",
        t0.elapsed()
    );
    // The upstream's key is deleted: the node cannot unseal at its next start.
    assert_eq!(
        call(
            &upstream.admin(),
            Method::DELETE,
            "/v1/key/delete/root-key",
            ""
        )
        .await
        .status,
        200
    );
    n.stop();
    n.spawn();
    let (code, text) = sealed_answer(&admin).await;
    assert_eq!(code, 503, "{text}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, text) = sealed_answer(&admin).await;
    assert!(text.contains("sealed"), "{text}");
}

#[tokio::test]
async fn an_unreachable_seal_is_tolerated_for_the_offline_grace_then_seals() {
    let mut upstream = TestNode::dev().await;
    let (n, admin) = node_sealed_by(&upstream, "  recheck: 500ms\n  offline_grace: 3s\n").await;
    // The upstream goes away: a KMS blip must not seal the node at once.
    upstream.stop();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = call(&admin, Method::PUT, "/v1/key/generate/k", "{}").await;
    assert_eq!(
        r.status,
        200,
        "sealed {:?} into a 3 s grace: {}",
        down.elapsed(),
        r.text()
    );
    // Alerts see it: unreachable, with part of the grace left.
    assert_eq!(metric(&admin, "kes_seal_unreachable").await, 1.0);
    let left = metric(&admin, "kes_seal_grace_remaining_seconds").await;
    assert!(left > 0.0 && left < 3.0, "grace left: {left}");
    let mut sealed_after = None;
    while down.elapsed() < Duration::from_secs(10) {
        if call(&admin, Method::PUT, "/v1/key/generate/k", "{}")
            .await
            .status
            == 503
        {
            sealed_after = Some(down.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sealed_after = sealed_after.unwrap_or_else(|| panic!("never sealed:\n{}", n.log()));
    eprintln!("offline grace 3 s: sealed {sealed_after:?} after the seal became unreachable");
    assert!(
        sealed_after >= Duration::from_secs(3),
        "sealed before the grace ran out: {sealed_after:?}"
    );
    assert!(n.log().contains("offline_grace"), "{}", n.log());
    // The upstream comes back: the node unseals again on its own.
    upstream.start().await;
    let back = Instant::now();
    wait_ready_with(&admin).await;
    eprintln!(
        "unsealed again {:?} after the seal came back",
        back.elapsed()
    );
    assert_eq!(metric(&admin, "kes_seal_unreachable").await, 0.0);
    assert_eq!(
        metric(&admin, "kes_seal_grace_remaining_seconds").await,
        3.0
    );
}

/// The value of a one-series metric family.
async fn metric(admin: &Client, name: &str) -> f64 {
    let text = call(admin, Method::GET, "/v1/metrics", "").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}
