//! Everything survives a restart; nothing secret reaches the disk; a wrong root key seals.

use crate::support::*;
use kes_cluster::Method;
use std::time::Duration;

#[tokio::test]
async fn state_survives_restart() {
    let mut n = TestNode::dev().await;
    let c = n.admin();
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    let dek = json(&call(&c, Method::PUT, "/v1/key/generate/k", "{}").await);
    let (app, id) = n.new_client("app");
    call(
        &c,
        Method::POST,
        "/v1/policy/write/p",
        r#"{"allow":["/v1/key/*/*"]}"#,
    )
    .await;
    call(
        &c,
        Method::POST,
        "/v1/policy/assign/p",
        &serde_json::json!({"identity": id}).to_string(),
    )
    .await;
    call(&c, Method::POST, "/v1/enclave/create/e", "").await;
    let admin_cert = std::fs::read(n.file("admin.crt")).unwrap();
    n.restart().await;
    assert_eq!(
        std::fs::read(n.file("admin.crt")).unwrap(),
        admin_cert,
        "dev certificates are reused"
    );
    let c = n.admin();
    let body = format!(
        r#"{{"ciphertext":"{}"}}"#,
        dek["ciphertext"].as_str().unwrap()
    );
    let out = json(&call(&c, Method::PUT, "/v1/key/decrypt/k", &body).await);
    assert_eq!(out["plaintext"], dek["plaintext"]);
    assert_eq!(
        call(&app, Method::PUT, "/v1/key/decrypt/k", &body)
            .await
            .status,
        200,
        "assignment kept"
    );
    assert_eq!(
        call(&c, Method::GET, "/v1/enclave/describe/e", "")
            .await
            .status,
        200
    );
}

/// Every file under `dir`, searched for `needle` raw, base64 and hex.
fn scan(dir: &std::path::Path, secret: &[u8]) -> (usize, Vec<String>) {
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("raw", secret.to_vec()),
        ("b64", b64(secret).into_bytes()),
        ("hex", hex_lower(secret).into_bytes()),
    ];
    let mut files = 0;
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let data = std::fs::read(&p).unwrap_or_default();
            files += 1;
            for (label, n) in &needles {
                if data.windows(n.len()).any(|w| w == n.as_slice()) {
                    hits.push(format!("{}:{label}", p.display()));
                }
            }
        }
    }
    (files, hits)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn no_key_material_on_disk() {
    let mut n = TestNode::dev().await;
    let c = n.admin();
    let secret: Vec<u8> = (7u8..39).collect();
    let r = call(
        &c,
        Method::PUT,
        "/v1/key/import/scan",
        &format!(r#"{{"key":"{}"}}"#, b64(&secret)),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut deks = Vec::new();
    for _ in 0..20 {
        deks.push(json(
            &call(&c, Method::PUT, "/v1/key/generate/scan", "{}").await,
        ));
    }
    n.restart().await;
    json(&call(&n.admin(), Method::PUT, "/v1/key/generate/scan", "{}").await);
    n.stop();
    let state = n.data.join("state");
    let (files, hits) = scan(&state, &secret);
    assert!(files > 0);
    assert!(hits.is_empty(), "key material on disk: {hits:?}");
    // Data keys handed out are not stored either.
    for d in deks {
        let pt = unb64(d["plaintext"].as_str().unwrap());
        assert!(scan(&state, &pt).1.is_empty());
    }
    let log = n.log();
    assert!(!log.contains(&b64(&secret)) && !log.contains(&hex_lower(&secret)));
}

#[tokio::test]
async fn wrong_root_key_leaves_the_node_up_and_sealed() {
    let mut n = TestNode::dev().await;
    call(&n.admin(), Method::PUT, "/v1/key/create/k", "").await;
    n.stop();
    let rk = n.file("root.key");
    let orig = std::fs::read(&rk).unwrap();
    std::fs::write(&rk, [9u8; 32]).unwrap();
    n.spawn();
    let c = n.admin();
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(r) = c.request(Method::GET, "/v1/ready", &[], "").await {
            ready = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = ready.expect("node answers while sealed");
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("sealed"), "{}", ready.text());
    assert_error(
        &call(&c, Method::PUT, "/v1/key/generate/k", "{}").await,
        503,
        "node is sealed",
    );
    let st = json(&call(&c, Method::GET, "/v1/status", "").await);
    assert_eq!(st["sealed"], true);
    let m = call(&c, Method::GET, "/v1/metrics", "").await.text();
    assert!(m.contains("kes_seal_sealed 1"), "{m}");
    assert!(n.is_running());
    // Fixing the key file unseals without a restart.
    std::fs::write(&rk, &orig).unwrap();
    n.wait_ready().await;
    assert_eq!(
        call(&c, Method::PUT, "/v1/key/generate/k", "{}")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_policy_record_altered_on_disk_is_detected_at_start() {
    let mut n = TestNode::dev().await;
    let c = n.admin();
    let r = call(
        &c,
        Method::POST,
        "/v1/policy/write/narrow",
        r#"{"allow":["/v1/key/list/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    n.stop();
    // An attacker with the data dir widens the policy.
    let key = kes_node::state::scoped_key("default", "narrow");
    n.alter_record("policies", &key, |e: &mut kes_node::state::PolicyEntry| {
        e.policy.allow = vec!["/v1/*/*/*".into()];
    });
    n.spawn();
    let c = n.admin();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = c.request(Method::GET, "/v1/ready", &[], "").await {
            if r.text().contains("MAC") {
                answer = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = answer.unwrap_or_else(|| panic!("tampering not reported:\n{}", n.log()));
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("policy record 'default/narrow'"),
        "{}",
        r.text()
    );
    assert_error(
        &call(&c, Method::PUT, "/v1/key/generate/k", "{}").await,
        503,
        "node is sealed",
    );
}

#[tokio::test]
async fn a_membership_altered_on_disk_is_detected_at_start() {
    let mut n = TestNode::dev().await;
    // The leader signs the membership shortly after it forms.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    n.stop();
    // An attacker adds their own node, to get its Raft RPCs accepted.
    let key = kes_node::state::META_MEMBERSHIP;
    n.alter_record("meta", key, |m: &mut kes_node::state::SignedMembership| {
        m.nodes.insert(
            42,
            (
                "https://evil:7373".into(),
                "evil:7473".into(),
                "ab".repeat(32),
            ),
        );
    });
    n.spawn();
    let c = n.admin();
    let mut seen = None;
    for _ in 0..100 {
        if let Ok(r) = c.request(Method::GET, "/v1/ready", &[], "").await {
            if r.text().contains("membership") {
                seen = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = seen.unwrap_or_else(|| panic!("tampered membership not reported:\n{}", n.log()));
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .contains("membership record fails its metadata MAC"),
        "{}",
        r.text()
    );
}
