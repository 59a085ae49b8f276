//! Metrics, the audit and error streams, and the monitoring guide's least-privilege scraper.

use crate::support::*;
use kes_cluster::Method;
use std::time::Duration;

#[tokio::test]
async fn metrics_use_kes_names_and_single_series() {
    let n = TestNode::dev().await;
    let c = n.admin();
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    call(&c, Method::PUT, "/v1/key/create/k", "").await;
    let r = call(&c, Method::GET, "/v1/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type().unwrap().starts_with("text/plain"));
    let text = r.text();
    for family in [
        "kes_http_request_success{code=\"200\"} ",
        "kes_http_request_error{code=\"400\"} ",
        "kes_http_request_active ",
        "kes_http_response_time_bucket",
        "kes_log_error_events ",
        "kes_log_audit_events ",
        "kes_system_up_time ",
        "kes_system_num_cpu ",
        "kes_system_num_cpu_used ",
        "kes_system_num_threads ",
        "kes_system_mem_heap_used ",
        "kes_system_mem_heap_objects ",
        "kes_system_mem_stack_used ",
    ] {
        assert!(text.contains(family), "missing {family}\n{text}");
    }
    assert!(
        !text.contains("kes_http_request_failure"),
        "an unobserved vector family stays absent"
    );
    for kes_counter in [
        "kes_http_request_success",
        "kes_http_request_error",
        "kes_log_audit_events",
    ] {
        assert!(
            !text.contains(&format!("{kes_counter}_total")),
            "KES counters carry no _total suffix"
        );
    }
    // Our own cluster families are single series, as the Go SDK requires of non-request families.
    for family in [
        "kes_cluster_role ",
        "kes_cluster_term ",
        "kes_cluster_applied_index ",
        "kes_cluster_replication_lag_max ",
    ] {
        assert_eq!(
            text.lines().filter(|l| l.starts_with(family)).count(),
            1,
            "{family}"
        );
    }
}

#[tokio::test]
async fn metrics_only_identity_scrapes_and_does_nothing_else() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    let (prom, id) = n.new_client("prometheus");
    call(
        &admin,
        Method::POST,
        "/v1/policy/write/prometheus",
        r#"{"allow":["/v1/metrics"]}"#,
    )
    .await;
    call(
        &admin,
        Method::POST,
        "/v1/policy/assign/prometheus",
        &serde_json::json!({"identity": id}).to_string(),
    )
    .await;
    assert_eq!(
        call(&prom, Method::GET, "/v1/metrics", "").await.status,
        200
    );
    for (m, p) in [
        (Method::GET, "/v1/key/list/*"),
        (Method::GET, "/v1/status"),
        (Method::PUT, "/v1/key/create/x"),
        (Method::GET, "/v1/policy/list/*"),
    ] {
        assert_eq!(call(&prom, m, p, "").await.status, 403, "{p}");
    }
    assert!(
        n.client_with(None, None)
            .request(Method::GET, "/v1/metrics", &[], "")
            .await
            .is_err()
    );
}

/// Reads from a streaming response until `want` appears or the time is up.
async fn stream_until(
    url: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    path: &str,
    trigger: impl std::future::Future<Output = ()>,
    want: &str,
) -> String {
    // curl streams the body as it arrives, which our buffered client cannot.
    let mut child = tokio::process::Command::new("curl")
        .args(["-sNk", "--max-time", "10", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("{url}{path}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    tokio::time::sleep(Duration::from_millis(800)).await;
    trigger.await;
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 4096];
    let t0 = std::time::Instant::now();
    use tokio::io::AsyncReadExt;
    while t0.elapsed() < Duration::from_secs(8) && !out.contains(want) {
        match tokio::time::timeout(Duration::from_secs(1), stdout.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(k)) => out.push_str(&String::from_utf8_lossy(&buf[..k])),
            _ => {}
        }
    }
    let _ = child.kill().await;
    out
}

#[tokio::test]
async fn audit_stream_delivers_one_event_per_request() {
    let n = TestNode::dev().await;
    let c = n.admin();
    let out = stream_until(
        &n.url,
        &n.file("admin.crt"),
        &n.file("admin.key"),
        "/v1/log/audit",
        async {
            call(&c, Method::PUT, "/v1/key/create/audited", "").await;
        },
        "/v1/key/create/audited",
    )
    .await;
    let line = out
        .lines()
        .find(|l| l.contains("/v1/key/create/audited"))
        .unwrap_or_else(|| panic!("no audit event: {out:?}"));
    let ev: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(ev["response"]["code"], 200);
    assert_eq!(ev["request"]["ip"], "127.0.0.1");
    assert_eq!(ev["request"]["identity"].as_str().unwrap().len(), 64);
    assert!(ev["time"].as_str().is_some());
    let m = call(&c, Method::GET, "/v1/metrics", "").await.text();
    assert!(
        !m.contains("kes_log_audit_events 0\n"),
        "written events are counted"
    );
}

#[tokio::test]
async fn error_stream_delivers_errors() {
    let n = TestNode::dev().await;
    let c = n.admin();
    // Refused requests are security events: they are logged, and so reach the stream.
    let (stranger, _) = n.new_client("stranger");
    let out = stream_until(
        &n.url,
        &n.file("admin.crt"),
        &n.file("admin.key"),
        "/v1/log/error",
        async {
            call(&stranger, Method::DELETE, "/v1/key/delete/ghost", "").await;
        },
        "ghost",
    )
    .await;
    let line = out
        .lines()
        .find(|l| l.contains("ghost"))
        .unwrap_or_else(|| panic!("no error event: {out:?}"));
    let ev: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(ev["message"].as_str().unwrap().contains("403"), "{line}");
    let _ = c;
}
