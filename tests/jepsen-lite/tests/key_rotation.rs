//! Automatic key rotation on a real 3-node cluster: every node knows when a key is due, but
//! only the leader proposes, and a due rotation lands once. A leader change in the middle does
//! not make the new leader repeat the old one's rotation.

use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use std::time::{Duration, Instant};

/// Key `name`'s newest version and retained version numbers, as node `i` describes it.
async fn versions(c: &Cluster, i: usize, name: &str) -> (u64, Vec<u64>) {
    let path = format!("/v1/key/describe/{name}");
    let d: serde_json::Value = c
        .call(i, Method::GET, &path, "")
        .await
        .unwrap()
        .json()
        .unwrap();
    let listed = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    (d["version"].as_u64().unwrap(), listed)
}

#[tokio::test]
async fn a_due_rotation_is_proposed_once_by_the_leader_even_across_a_leader_change() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let r = c
        .call(
            leader,
            Method::PUT,
            "/v1/key/create/auto",
            r#"{"rotate_every":"1s"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A leader change: the next leader takes over the schedule where the old one left it.
    c.nodes[leader].kill9();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.leader_among(&others, Duration::from_secs(20))
        .await
        .expect("a new leader");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let elapsed = t0.elapsed().as_secs();
    for &i in &others {
        let (newest, listed) = versions(&c, i, "auto").await;
        assert!(
            newest >= 4,
            "node {i}: only version {newest} after {elapsed} s"
        );
        // Once per period, give or take the leader change: a node proposing on its own, or
        // a new leader repeating a rotation, would add versions faster than that.
        assert!(
            newest <= elapsed + 2,
            "node {i}: version {newest} after {elapsed} s with a period of 1 s"
        );
        let contiguous: Vec<u64> = (1..=newest).collect();
        assert_eq!(listed, contiguous, "node {i}: no version lost or doubled");
    }
}
