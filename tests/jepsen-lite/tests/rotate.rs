//! Node certificate rotation without downtime, with real node processes (issue 7, part 10): a
//! node's new certificate replaces the old one in the signed membership through the log, the
//! node stays a voter throughout, and the old certificate is refused afterwards.

use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use kes_cluster_proto::{StatusRequest, cluster_client::ClusterClient};
use kes_node::cluster::transport::{NodeTls, PeerChannels};
use kes_node::config::ClusterTlsConfig;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

fn spki_of(cert: &Path) -> String {
    let pem = std::fs::read(cert).expect("certificate");
    kes_cluster::identity_of_cert_pem(&pem).expect("SPKI")
}

fn grpc_addr(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.base + 100 + i as u16)
}

/// A raw gRPC client to member `i` that presents the node certificate `cert` with `key`.
fn client_with(c: &Cluster, cert: PathBuf, key: PathBuf, i: usize) -> ClusterClient<Channel> {
    let tls = NodeTls::load(&ClusterTlsConfig {
        cert: Some(cert),
        key: Some(key),
        ca: Some(c.dir.path().join("ca.crt")),
    })
    .expect("a node certificate");
    let member = spki_of(&c.nodes[i].dir.join("node.crt"));
    PeerChannels::new(Some(tls))
        .client(&grpc_addr(c, i), &member)
        .expect("client")
}

/// The membership as node `i` reports it in `/v1/cluster/status`.
async fn members(c: &Cluster, i: usize) -> Vec<serde_json::Value> {
    let r = c
        .call(i, Method::GET, "/v1/cluster/status", "")
        .await
        .expect("cluster status");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = r.json().expect("json");
    v["nodes"].as_array().cloned().unwrap_or_default()
}

async fn status_call(
    client: &mut ClusterClient<Channel>,
    cluster_id: &str,
) -> Result<(), tonic::Status> {
    let req = StatusRequest {
        cluster_id: cluster_id.to_owned(),
    };
    client.status(req).await.map(drop)
}

/// Before: the node certificate was read once at start; a reissued certificate was only
/// taken by remove and rejoin. After: SIGHUP rotates it; the membership names node 2 by its
/// new SPKI, node 2 stays a voter and serves writes, every node reads them, and a peer
/// presenting node 2's old certificate is refused.
#[tokio::test]
async fn a_node_certificate_rotates_on_sighup_without_remove_and_rejoin() {
    let _serial = serial().await;
    let c = Cluster::start(3, "").await;
    let n2 = 1;
    let dir = c.nodes[n2].dir.clone();
    let (old_cert, old_key) = (c.dir.path().join("old2.crt"), c.dir.path().join("old2.key"));
    std::fs::copy(dir.join("node.crt"), &old_cert).unwrap();
    std::fs::copy(dir.join("node.key"), &old_key).unwrap();
    let old_spki = spki_of(&old_cert);
    let cluster_id = c.status(0).await.expect("status")["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_owned();
    let id2 = c.status(n2).await.expect("status")["id"].as_u64().unwrap();
    let before: Vec<u64> = members(&c, 0)
        .await
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    let mut old_client = client_with(&c, old_cert.clone(), old_key.clone(), 0);
    status_call(&mut old_client, &cluster_id)
        .await
        .expect("before the rotation, node 2's certificate is a member's");

    c.reissue_node_certificate(n2);
    let new_spki = spki_of(&dir.join("node.crt"));
    assert_ne!(new_spki, old_spki);
    unsafe { libc::kill(c.nodes[n2].pid().expect("running") as i32, libc::SIGHUP) };

    // Rotated: the membership names node 2 by its new SPKI only, node 2 is still a voter,
    // and node 1 reaches it (pinned to the new SPKI).
    let t0 = Instant::now();
    loop {
        let all = members(&c, 0).await;
        let e = all.iter().find(|n| n["id"].as_u64() == Some(id2)).cloned();
        let done = e.as_ref().is_some_and(|e| {
            e["spki"] == new_spki.as_str()
                && e["next_spki"] == ""
                && matches!(e["role"].as_str(), Some("follower" | "leader"))
                && e["reachable"] == true
        });
        if done {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            panic!(
                "node 2 was not rotated as a reachable voter: {all:?}\n{}",
                c.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after: Vec<u64> = members(&c, 0)
        .await
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect();
    assert_eq!(after, before, "same members, nobody removed or rejoined");
    let log2 = c.nodes[n2].log();
    assert!(
        log2.contains("presenting the new node certificate"),
        "{log2}"
    );

    let r = c
        .call(n2, Method::PUT, "/v1/key/create/after-rotation", "")
        .await
        .expect("write through node 2");
    assert_eq!(r.status, 200, "write through node 2: {}", r.text());
    for i in 0..3 {
        let t0 = Instant::now();
        loop {
            let r = c
                .call(i, Method::GET, "/v1/key/describe/after-rotation", "")
                .await;
            if matches!(&r, Ok(r) if r.status == 200) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "node{} reads it: {r:?}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let mut new_client = client_with(&c, dir.join("node.crt"), dir.join("node.key"), 0);
    status_call(&mut new_client, &cluster_id)
        .await
        .expect("the new certificate is a member's");
    let mut old_client = client_with(&c, old_cert, old_key, 0);
    let refused = status_call(&mut old_client, &cluster_id)
        .await
        .expect_err("the old certificate is refused");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("only current members may call this"),
        "{refused:?}"
    );
}
