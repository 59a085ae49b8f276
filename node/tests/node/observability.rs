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

/// `log.audit_file` on a real node: one JSON line per request, the same event the stream
/// carries; a file deleted under the node is noticed, reported and made again.
#[tokio::test]
async fn the_audit_file_gets_every_request_and_survives_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let n = TestNode::dev_with_config(Some(&format!(
        "log:\n  audit_file:\n    path: {}\n",
        audit.display()
    )))
    .await;
    let c = n.admin();
    assert_eq!(
        call(&c, Method::PUT, "/v1/key/create/audited", "")
            .await
            .status,
        200
    );
    let logged = std::fs::read_to_string(&audit).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("/v1/key/create/audited"))
        .unwrap_or_else(|| panic!("no audit line: {logged}"));
    let ev: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(ev["response"]["code"], 200);
    assert_eq!(ev["request"]["identity"].as_str().unwrap().len(), 64);

    std::fs::remove_file(&audit).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        call(&c, Method::PUT, "/v1/key/create/after", "")
            .await
            .status,
        200
    );
    let logged = std::fs::read_to_string(&audit).expect("the audit file is made again");
    assert!(logged.contains("/v1/key/create/after"), "{logged}");
    let m = call(&c, Method::GET, "/v1/metrics", "").await.text();
    assert!(m.contains("kes_audit_write_failures_total 1\n"), "{m}");
    assert!(n.log().contains("was removed or replaced"), "{}", n.log());
}

/// A full disk (`/dev/full`): with `audit_failure: open` requests are served and the failures
/// counted and logged; with `closed` they are refused with 503 (the node is not ready either),
/// while `/v1/metrics` still answers, so the failure can be seen.
#[tokio::test]
async fn an_audit_file_on_a_full_disk_fails_open_or_closed() {
    let full =
        |mode: &str| format!("log:\n  audit_file:\n    path: /dev/full\n  audit_failure: {mode}\n");
    let n = TestNode::dev_with_config(Some(&full("open"))).await;
    let c = n.admin();
    let r = call(&c, Method::PUT, "/v1/key/create/k", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let m = call(&c, Method::GET, "/v1/metrics", "").await.text();
    assert!(!m.contains("kes_audit_write_failures_total 0\n"), "{m}");
    assert!(n.log().contains("No space left on device"), "{}", n.log());

    // Closed: never ready, so started without waiting for it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("node.yaml");
    std::fs::write(&config, full("closed")).unwrap();
    let args = [
        "--dev",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &data.display().to_string(),
        "--config",
        &config.display().to_string(),
    ];
    let mut n = TestNode::with_args(dir, data, port, args.map(String::from).to_vec());
    n.spawn();
    let refused = "audit log unavailable: requests are refused until audit events can be written";
    let t0 = std::time::Instant::now();
    let mut last = String::new();
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        if n.file("admin.key").exists() {
            let c = n.admin();
            if let Ok(r) = c
                .request(Method::PUT, "/v1/key/create/k", &[], String::new())
                .await
            {
                last = r.text();
                if r.status == 503 && last.contains(refused) {
                    let ready = call(&c, Method::GET, "/v1/ready", "").await;
                    assert_eq!(ready.status, 503, "{}", ready.text());
                    let m = call(&c, Method::GET, "/v1/metrics", "").await;
                    assert_eq!(m.status, 200, "metrics refused: {}", m.text());
                    assert!(m.text().contains("kes_audit_write_failures_total"));
                    return;
                }
                assert_ne!(
                    r.status, 200,
                    "a request was served without its audit event"
                );
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!(
        "never refused for the audit log: last answer {last}\n{}",
        n.log()
    );
}
