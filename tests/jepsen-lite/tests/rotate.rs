//! Node certificate rotation without downtime, with real node processes (issue 7, part 10): a
//! node's new certificate replaces the old one in the signed membership through the log, the
//! node stays a voter throughout, and the old certificate is refused afterwards.

use base64::Engine;
use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use kes_cluster::pki::{CertificateAuthority, LeafRequest};
use kes_cluster_proto::{AdminRequest, StatusRequest, cluster_client::ClusterClient};
use kes_node::cluster::AdminOp;
use kes_node::cluster::transport::{NodeTls, PeerChannels};
use kes_node::config::ClusterTlsConfig;
use kes_node::raft::encode;
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

fn member_ids(all: &[serde_json::Value]) -> Vec<u64> {
    all.iter().filter_map(|n| n["id"].as_u64()).collect()
}

fn cluster_id(status: &serde_json::Value) -> String {
    status["cluster_id"]
        .as_str()
        .expect("cluster id")
        .to_owned()
}

/// Gives node `n` a new node certificate, sends it SIGHUP, and checks the rotation as node
/// `observer` sees it: the membership names node `n` by its new SPKI only, it stays a
/// reachable voter, nobody was removed or rejoined, writes through it are read on every node,
/// and a peer presenting its old certificate is refused while the new one is accepted.
async fn rotate_and_check(c: &Cluster, n: usize, observer: usize) {
    let dir = c.nodes[n].dir.clone();
    let (old_cert, old_key) = (c.dir.path().join("old.crt"), c.dir.path().join("old.key"));
    std::fs::copy(dir.join("node.crt"), &old_cert).unwrap();
    std::fs::copy(dir.join("node.key"), &old_key).unwrap();
    let old_spki = spki_of(&old_cert);
    let cid = cluster_id(&c.status(observer).await.expect("status"));
    let id = c.status(n).await.expect("status")["id"].as_u64().unwrap();
    let before = member_ids(&members(c, observer).await);
    let mut old_client = client_with(c, old_cert.clone(), old_key.clone(), observer);
    status_call(&mut old_client, &cid)
        .await
        .expect("before the rotation, the old certificate is a member's");

    c.reissue_node_certificate(n);
    let new_spki = spki_of(&dir.join("node.crt"));
    assert_ne!(new_spki, old_spki);
    unsafe { libc::kill(c.nodes[n].pid().expect("running") as i32, libc::SIGHUP) };

    let t0 = Instant::now();
    loop {
        let all = members(c, observer).await;
        let done = all.iter().any(|e| {
            e["id"].as_u64() == Some(id)
                && e["spki"] == new_spki.as_str()
                && e["next_spki"] == ""
                && matches!(e["role"].as_str(), Some("follower" | "leader"))
                && e["reachable"] == true
        });
        if done {
            assert_eq!(member_ids(&all), before, "nobody removed or rejoined");
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            panic!(
                "node{} was not rotated as a reachable voter: {all:?}\n{}",
                n + 1,
                c.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = c.nodes[n].log();
    assert!(log.contains("presenting the new node certificate"), "{log}");

    let key = format!("after-rotating-{}", n + 1);
    let r = c
        .call(n, Method::PUT, &format!("/v1/key/create/{key}"), "")
        .await
        .expect("write through the rotated node");
    assert_eq!(r.status, 200, "write through node{}: {}", n + 1, r.text());
    for i in 0..c.nodes.len() {
        let t0 = Instant::now();
        loop {
            let path = format!("/v1/key/describe/{key}");
            let r = c.call(i, Method::GET, &path, "").await;
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

    let mut new_client = client_with(c, dir.join("node.crt"), dir.join("node.key"), observer);
    status_call(&mut new_client, &cid)
        .await
        .expect("the new certificate is a member's");
    let mut old_client = client_with(c, old_cert, old_key, observer);
    let refused = status_call(&mut old_client, &cid)
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

/// Before: the node certificate was read once at start; a reissued certificate was only
/// taken by remove and rejoin. After: SIGHUP rotates it through the log (see
/// [`rotate_and_check`]).
#[tokio::test]
async fn a_node_certificate_rotates_on_sighup_without_remove_and_rejoin() {
    let _serial = serial().await;
    let c = Cluster::start(3, "").await;
    rotate_and_check(&c, 1, 0).await;
}

/// The DER of the first certificate in `pem`.
fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM")
}

/// Asks member `to` to run `op`, presenting the node certificate of member `from`.
async fn admin_as(
    c: &Cluster,
    from: usize,
    to: usize,
    op: &AdminOp,
) -> Result<String, tonic::Status> {
    let dir = &c.nodes[from].dir;
    let mut client = client_with(c, dir.join("node.crt"), dir.join("node.key"), to);
    let req = AdminRequest {
        cluster_id: cluster_id(&c.status(to).await.expect("status")),
        op: encode(op),
    };
    client.admin(req).await.map(|r| r.into_inner().error)
}

/// The leader rotates its own certificate the same way (it stages and adopts through itself,
/// while it keeps leading or after it hands over). Before that, the leader refuses to stage a
/// certificate for a member from anyone but that member, and a certificate that is not from
/// the node CA even from the member itself; neither changes the membership.
#[tokio::test]
async fn the_leader_rotates_its_own_certificate_and_nobody_stages_one_for_it() {
    let _serial = serial().await;
    let c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let other = (leader + 1) % 3;
    let leader_id = c.status(leader).await.expect("status")["id"]
        .as_u64()
        .unwrap();
    let node_ca = CertificateAuthority::load(
        &std::fs::read_to_string(c.dir.path().join("ca.crt")).unwrap(),
        &std::fs::read_to_string(c.dir.path().join("ca.key")).unwrap(),
    )
    .unwrap();
    let request = LeafRequest {
        common_name: format!("node{}", leader + 1),
        dns: vec!["localhost".into()],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        client_auth: true,
    };
    let good = node_ca.issue(&request, None).unwrap();
    let foreign = CertificateAuthority::new("another CA")
        .unwrap()
        .issue(&request, None)
        .unwrap();

    let stage = |pem: &str| AdminOp::StageNodeCertificate {
        node_id: leader_id,
        cert: der_of(pem),
    };
    let by_other = admin_as(&c, other, leader, &stage(&good.cert_pem))
        .await
        .expect_err("another member may not stage the leader's certificate");
    assert_eq!(by_other.code(), Code::PermissionDenied, "{by_other:?}");
    assert!(by_other.message().contains("itself"), "{by_other:?}");
    let adopt = AdminOp::AdoptNodeCertificate {
        node_id: leader_id,
        spki: spki_of(&c.nodes[other].dir.join("node.crt")),
    };
    let adopted_by_other = admin_as(&c, other, leader, &adopt)
        .await
        .expect_err("another member may not give the leader its own SPKI");
    assert_eq!(
        adopted_by_other.code(),
        Code::PermissionDenied,
        "{adopted_by_other:?}"
    );
    let foreign_ca = admin_as(&c, leader, leader, &stage(&foreign.cert_pem))
        .await
        .expect("the call itself is a member's");
    assert!(
        foreign_ca.contains("not issued by the node CA"),
        "{foreign_ca}"
    );
    let all = members(&c, other).await;
    assert!(
        all.iter().all(|n| n["next_spki"] == ""),
        "nothing was staged: {all:?}"
    );

    rotate_and_check(&c, leader, other).await;
}

/// A botched rotation (a half-written certificate file) on SIGHUP keeps the current node
/// certificate: the node says so in its log, stays a reachable member under its old SPKI, and
/// a later SIGHUP with good files rotates it.
#[tokio::test]
async fn a_half_written_node_certificate_keeps_the_current_one() {
    let _serial = serial().await;
    let c = Cluster::start(3, "").await;
    let n = 2;
    let cert = c.nodes[n].dir.join("node.crt");
    let spki = spki_of(&cert);
    let text = std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&cert, &text[..text.len() / 2]).unwrap();
    unsafe { libc::kill(c.nodes[n].pid().expect("running") as i32, libc::SIGHUP) };

    let t0 = Instant::now();
    while !c.nodes[n]
        .log()
        .contains("keeping the current node certificate")
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cid = cluster_id(&c.status(0).await.expect("status"));
    let all = members(&c, 0).await;
    assert!(
        all.iter()
            .any(|e| e["spki"] == spki.as_str() && e["next_spki"] == "" && e["reachable"] == true),
        "still the old SPKI, still reachable: {all:?}"
    );
    let key = c.nodes[n].dir.join("node.key");
    std::fs::write(&cert, &text).unwrap();
    let mut client = client_with(&c, cert, key, 0);
    status_call(&mut client, &cid)
        .await
        .expect("the current certificate is still a member's");

    rotate_and_check(&c, n, 0).await;
}
