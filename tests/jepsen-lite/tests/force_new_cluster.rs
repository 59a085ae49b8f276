//! Lost quorum, for good: two of three nodes die and their data dirs are gone. The survivor
//! alone cannot elect a leader. `kes-cluster recover --force-new-cluster` on its stopped data
//! dir makes it a cluster of one with everything its log held; two fresh nodes join it.

use jepsen_lite::{Cluster, bin, serial};
use kes_cluster::Method;
use std::process::Command;
use std::time::Duration;

/// `kes-cluster recover` on `data` with `extra` flags: exit code and stdout.
fn recover(data: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin("kes-cluster"))
        .arg("recover")
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .expect("run kes-cluster recover");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn after_losing_two_of_three_nodes_the_survivor_recovers_every_acknowledged_key() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    // A follower survives: its own commit index may lag the leader's.
    let survivor = (leader + 1) % 3;
    let lost: Vec<usize> = (0..3).filter(|&i| i != survivor).collect();
    let cluster_id = c.status(survivor).await.unwrap()["cluster_id"].clone();
    let survivor_id = c.status(survivor).await.unwrap()["id"].as_u64().unwrap();
    for i in 0..20 {
        let path = format!("/v1/key/create/k{i}");
        let r = c.call(leader, Method::PUT, &path, "").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let dek = c.generate(leader, "k0").await;
    // Every acknowledged key is on the survivor before the loss (a read there waits for it).
    let r = c.call(survivor, Method::GET, "/v1/key/describe/k19", "");
    assert_eq!(r.await.unwrap().status, 200);

    for &i in &lost {
        c.nodes[i].kill9();
        std::fs::remove_dir_all(c.nodes[i].dir.join("data")).unwrap();
    }
    let data = c.nodes[survivor].dir.join("data");
    let (code, _, err) = recover(&data, &["--force-new-cluster", "--yes"]);
    assert_ne!(code, Some(0), "recovered a running node");
    assert!(err.contains("is the node still running"), "{err}");
    c.nodes[survivor].kill9();

    // Without --force-new-cluster, and without --yes: nothing changes.
    let (code, _, err) = recover(&data, &[]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("--force-new-cluster"), "{err}");
    let (code, plan, err) = recover(&data, &["--force-new-cluster"]);
    assert_ne!(code, Some(0), "{plan}{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(plan.contains("members dropped"), "{plan}");
    assert!(plan.contains("last entry of its log: "), "{plan}");
    assert!(plan.contains("entries past the commit index"), "{plan}");
    assert!(!plan.contains(dek["plaintext"].as_str().unwrap()), "{plan}");

    let (code, done, err) = recover(&data, &["--force-new-cluster", "--yes"]);
    assert_eq!(code, Some(0), "{done}{err}");
    eprintln!("kes-cluster recover --force-new-cluster --yes:\n{done}");
    c.nodes[survivor].start();
    assert!(
        c.wait_ready(survivor, Duration::from_secs(60)).await,
        "the recovered node never became ready:\n{}",
        c.nodes[survivor].log()
    );
    let st = c.status(survivor).await.unwrap();
    assert_eq!(st["role"], "leader", "{st}");
    assert_eq!(st["cluster_id"], cluster_id, "the cluster keeps its id");
    let members = c.members(survivor).await;
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["id"].as_u64(), Some(survivor_id));
    for i in 0..20 {
        let path = format!("/v1/key/describe/k{i}");
        let r = c.call(survivor, Method::GET, &path, "").await.unwrap();
        assert_eq!(r.status, 200, "k{i} after the recovery");
    }
    c.assert_decrypts(survivor, "k0", &dek).await;
    let r = c.call(survivor, Method::PUT, "/v1/key/create/after", "");
    assert_eq!(
        r.await.unwrap().status,
        200,
        "the cluster of one takes writes"
    );

    // A lost member that comes back, wiped but with its old certificate, is refused.
    let back = lost[0];
    let yaml = c.nodes[back].dir.join("node.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("  bootstrap: true\n", "")).unwrap();
    c.nodes[back].start();
    let t0 = std::time::Instant::now();
    while !c.nodes[back].log().contains("refused for good") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "a lost member's old certificate was not refused:\n{}",
            c.nodes[back].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.nodes[back].kill9();
    assert_eq!(c.members(survivor).await.len(), 1);

    // Two fresh nodes (new data dirs, new node certificates) join it.
    let joined = [c.add_joining_node(), c.add_joining_node()];
    for &j in &joined {
        assert!(
            c.wait_ready(j, Duration::from_secs(90)).await,
            "node {j} did not join the recovered cluster:\n{}",
            c.logs()
        );
        let r = c.call(j, Method::GET, "/v1/key/describe/k7", "");
        assert_eq!(r.await.unwrap().status, 200);
    }
    let members = c.members(survivor).await;
    assert_eq!(members.len(), 3, "{members:?}");
}
