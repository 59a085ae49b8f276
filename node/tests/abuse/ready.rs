//! `/v1/ready` without a certificate tells "ready or not", never why.

use crate::support::*;
use kes_cluster::Method;
use std::time::{Duration, Instant};

#[tokio::test]
async fn anonymous_ready_never_shows_the_seal_error() {
    let _turn = crate::take_turn().await;
    let mut n = TestNode::dev_with_config(Some(
        "api:\n  /v1/ready:\n    skip_auth: true\n  /v1/status:\n    skip_auth: true\n",
    ))
    .await;
    let anon = n.client_with(None, None);
    assert_eq!(call(&anon, Method::GET, "/v1/ready", "").await.status, 200);
    // A different root key cannot unwrap the cluster key: the node comes up sealed, and the
    // seal error names the key file.
    n.stop();
    std::fs::remove_file(n.file("root.key")).unwrap();
    kes_node::seal::FileRootKey::create(&n.file("root.key")).unwrap();
    n.spawn();
    let admin = n.admin();
    let t0 = Instant::now();
    let detailed = loop {
        if let Ok(r) = admin.request(Method::GET, "/v1/ready", &[], "").await
            && r.status == 503
            && r.text().contains("sealed")
        {
            break r.text();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never sealed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let r = call(&anon, Method::GET, "/v1/ready", "").await;
    assert_error(&r, 503, "node is not ready");
    // A certificate the policy does not admit learns no more than no certificate.
    let (stranger, _) = n.new_client("stranger");
    let r = call(&stranger, Method::GET, "/v1/ready", "").await;
    assert_error(&r, 503, "node is not ready");
    assert!(detailed.len() > "node is sealed: ".len(), "{detailed}");
    // `/v1/status` says sealed, but the reason only to a caller the policy admits.
    let anon_status = json(&call(&anon, Method::GET, "/v1/status", "").await);
    assert_eq!(anon_status["sealed"], true);
    assert_eq!(anon_status["seal_reason"], "", "{anon_status}");
    let status = json(&call(&admin, Method::GET, "/v1/status", "").await);
    assert_ne!(status["seal_reason"], "", "{status}");
}
