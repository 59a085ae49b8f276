//! `rate_limits:` on a real node over real mTLS: an identity past its burst is refused with
//! 429 `too many requests` and a `Retry-After`, and served again once its bucket refills;
//! another identity, one whose policy has a limit of its own, and the admin are not held back;
//! the refusals are counted in one metric series.

use crate::support::*;
use kes_cluster::{Client, Method};
use std::time::Duration;

async fn generate(c: &Client) -> kes_cluster::Response {
    call(c, Method::PUT, "/v1/key/generate/k", "{}").await
}

/// The admin client, once it has created key `k`.
async fn admin_with_key_k(n: &TestNode) -> Client {
    let admin = n.admin();
    let created = call(&admin, Method::POST, "/v1/key/create/k", "").await;
    assert_eq!(created.status, 200, "{}", created.text());
    admin
}

#[tokio::test]
async fn an_identity_past_its_limit_gets_429_and_no_one_else_does() {
    let n = TestNode::dev_with_config(Some(
        "rate_limits:\n  default: {rate: 1, burst: 3}\n  policies:\n    wide: {rate: 1000}\n",
    ))
    .await;
    let admin = admin_with_key_k(&n).await;
    let (narrow, narrow_id) = n.new_client("narrow");
    let (other, other_id) = n.new_client("other");
    let (wide, wide_id) = n.new_client("wide");
    write_policy(&admin, "app", &["/v1/key/generate/k"], &[]).await;
    write_policy(&admin, "wide", &["/v1/key/generate/k"], &[]).await;
    assign(&admin, "app", &narrow_id).await;
    assign(&admin, "app", &other_id).await;
    assign(&admin, "wide", &wide_id).await;

    for i in 0..3 {
        assert_eq!(
            generate(&narrow).await.status,
            200,
            "request {i} of the burst"
        );
    }
    let refused = generate(&narrow).await;
    assert_error(&refused, 429, "too many requests");
    assert_eq!(refused.header("retry-after"), Some("1"));

    // The others have buckets of their own, or none.
    for i in 0..3 {
        assert_eq!(generate(&other).await.status, 200, "other: request {i}");
    }
    for i in 0..20 {
        assert_eq!(generate(&wide).await.status, 200, "wide: request {i}");
        assert_eq!(generate(&admin).await.status, 200, "admin: request {i}");
    }

    // A refused request is counted once, in one series.
    let metrics = call(&admin, Method::GET, "/v1/metrics", "").await;
    let text = metrics.text();
    let series: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("kes_http_rate_limited_total"))
        .collect();
    assert_eq!(series, ["kes_http_rate_limited_total 1"], "{text}");

    // One token a second: after the wait the header asked for, the identity is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(generate(&narrow).await.status, 200);
}

/// Without `rate_limits:` nothing is limited: the KES SDK does not retry a 4xx.
#[tokio::test]
async fn without_the_section_nothing_is_limited() {
    let n = TestNode::dev().await;
    let admin = admin_with_key_k(&n).await;
    let (app, id) = n.new_client("app");
    write_policy(&admin, "app", &["/v1/key/generate/k"], &[]).await;
    assign(&admin, "app", &id).await;
    for i in 0..200 {
        assert_eq!(generate(&app).await.status, 200, "request {i}");
    }
}
