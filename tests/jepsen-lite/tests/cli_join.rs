//! `kes-cluster join` tells a node that is in no cluster yet to join one. Such a node has no
//! cluster record, so no admin in its state: the admin its config names may tell it to join,
//! and nobody else. Before, every caller was refused with 403, the admin included.

use jepsen_lite::{Cluster, bin_dir, free_base, serial};
use kes_cluster::Method;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_configured_admin_tells_a_fresh_node_to_join_and_nobody_else_can() {
    let _g = serial().await;
    let c = Cluster::start(1, "").await;
    // A second node: node 1's config on other ports, without `bootstrap` or `join`.
    let dir = c.dir.path().join("fresh");
    std::fs::create_dir_all(&dir).unwrap();
    c.issue_node_certificate(&dir, "fresh");
    let node1 = &c.nodes[0].dir;
    for f in ["server.crt", "server.key"] {
        std::fs::copy(node1.join(f), dir.join(f)).unwrap();
    }
    let port = free_base(1);
    let yaml = std::fs::read_to_string(node1.join("node.yaml")).unwrap();
    let http1: u16 = c.nodes[0]
        .url
        .trim_start_matches("https://127.0.0.1:")
        .parse()
        .unwrap();
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with("bootstrap:"))
        .map(|l| {
            l.replace(&format!(":{}", http1 + 100), &format!(":{}", port + 100))
                .replace(&format!(":{http1}"), &format!(":{port}"))
                .replace(&node1.display().to_string(), &dir.display().to_string())
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("node.yaml"), yaml).unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut fresh = Command::new(bin_dir().join("kes-node"))
        .arg("--config")
        .arg(dir.join("node.yaml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("kes-node");
    let url = format!("https://127.0.0.1:{port}");
    let admin = c.client_for(&url);
    let t0 = Instant::now();
    while admin
        .request(Method::GET, "/version", &[], "")
        .await
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the fresh node never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Anyone else is refused before anything happens.
    let (cert, key, _) = kes_cluster::new_identity("stranger", &dir).unwrap();
    let stranger = kes_cluster::Client::new(&kes_cluster::ClientConfig {
        server: url.clone(),
        cert: Some(cert),
        key: Some(key),
        ca: Some(c.dir.path().join("ca.crt")),
        insecure: false,
    })
    .unwrap();
    let body = format!(r#"{{"member":"{}"}}"#, c.nodes[0].url);
    let r = stranger
        .request(Method::POST, "/v1/cluster/join", &[], body)
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    // The admin, through the CLI, exactly as the README says.
    let out = Command::new(bin_dir().join("kes-cluster"))
        .args(["join", &c.nodes[0].url])
        .env("KES_SERVER", &url)
        .env("KES_CLIENT_CERT", c.dir.path().join("admin.crt"))
        .env("KES_CLIENT_KEY", c.dir.path().join("admin.key"))
        .env("KES_CA", c.dir.path().join("ca.crt"))
        .output()
        .expect("kes-cluster");
    let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c
        .call(0, Method::GET, "/v1/cluster/status", "")
        .await
        .unwrap();
    let status: serde_json::Value = r.json().unwrap();
    let voters = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "leader" || n["role"] == "follower")
        .count();
    assert_eq!(voters, 2, "{status}");
    let _ = fresh.kill();
    let _ = fresh.wait();
}
