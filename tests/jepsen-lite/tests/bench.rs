//! `kes-cluster bench`, the smoke run CI keeps (issue 10, item 7): a few seconds of every
//! operation through every node of a real 3-node cluster. No timing is asserted: the run must
//! finish, count every operation, and see no error.

use jepsen_lite::{Cluster, bin_dir, serial};
use std::process::Command;
use std::time::Duration;

fn bench(c: &Cluster, args: &[&str]) -> std::process::Output {
    let dir = c.dir.path();
    Command::new(bin_dir().join("kes-cluster"))
        .arg("bench")
        .args(["--cert", &dir.join("admin.crt").to_string_lossy()])
        .args(["--key", &dir.join("admin.key").to_string_lossy()])
        .args(["--ca", &dir.join("ca.crt").to_string_lossy()])
        .args(args)
        .output()
        .expect("kes-cluster runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_bench_through_every_node_counts_every_operation_and_no_error() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    c.wait_all_ready(Duration::from_secs(60)).await;
    let nodes: Vec<String> = c.nodes.iter().map(|n| n.url.clone()).collect();
    let mix = "generate=40,decrypt=30,encrypt=10,create=10,delete=10";
    let out = bench(
        &c,
        &[
            "--nodes",
            &nodes.join(","),
            "--conns",
            "6",
            "--duration",
            "3s",
            "--mix",
            mix,
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["errors"], serde_json::json!({}), "{stdout}");
    for op in ["generate", "decrypt", "encrypt", "create", "delete"] {
        let n = report["ok_by_op"][op].as_u64().unwrap_or(0);
        assert!(n > 0, "no {op} was done: {stdout}");
    }
    assert_eq!(report["setup"]["nodes"].as_array().unwrap().len(), 3);
    for p in ["p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms"] {
        assert!(report["latency"][p].as_f64().is_some(), "no {p}: {stdout}");
    }
    assert!(stderr.contains("ops/s"), "no progress line: {stderr}");

    // The open loop sends exactly the requests its schedule holds, whatever the machine's
    // speed: 2 s at 200/s is slots 0 to 399 (the one due at the end itself is not sent).
    let out = bench(
        &c,
        &[
            "--nodes",
            &nodes[0],
            "--conns",
            "4",
            "--duration",
            "2s",
            "--rate",
            "200",
            "--mix",
            "decrypt=1",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], 400, "{stdout}");

    // Bad flags are refused before anything is sent, with the reason.
    let out = bench(&c, &["--mix", "rotate=5"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown operation 'rotate'"), "{stderr}");
}
