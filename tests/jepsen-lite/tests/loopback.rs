//! The harness's fallback where network namespaces cannot be made (issue 9): nodes on
//! loopback addresses, faults applied by the userspace proxy between them. CI runs as root,
//! so without this test the fallback would never run there.

use jepsen_lite::{report_dir, serial};
use std::process::Command;

#[tokio::test]
async fn without_namespaces_the_harness_says_so_and_its_faults_still_bite() {
    let _serial = serial().await;
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen-lite"))
        .args([
            "--no-build",
            "--loopback",
            "--scenario",
            "isolate-leader,loss-skew",
        ])
        .output()
        .expect("jepsen-lite runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("NOTE: no network namespaces"),
        "the fallback is not announced:\n{stdout}"
    );
    assert!(stdout.contains("latency between nodes"), "{stdout}");
    let report = std::fs::read(report_dir().join("report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_slice(&report).expect("JSON");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 2, "{report:#}");
    for s in scenarios {
        assert_eq!(s["network"], "loopback-proxy", "{s:#}");
        assert_eq!(s["violations"], 0, "{s:#}");
    }
    // Cutting the leader off through the proxy really cut it off: the others elected one.
    let isolate = &scenarios[0];
    assert_eq!(isolate["name"], "isolate-leader");
    assert!(
        isolate["leader_changes"].as_u64().unwrap_or(0) >= 1,
        "no election while the leader was cut off: {isolate:#}"
    );
}
