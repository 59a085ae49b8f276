//! `DELETE /v1/cluster/remove/<id>` with real node processes (issue 7, part 2): authorised
//! before the first step, then the tombstone, then the membership change, retried until it
//! lands.

use jepsen_lite::{Cluster, serial};
use kes_cluster::{Client, Method};
use std::time::{Duration, Instant};

/// A client identity (not the admin) issued by the dev CA, and its identity hash.
fn operator(c: &Cluster, i: usize) -> (Client, String) {
    c.client_identity("operator", i)
}

async fn member_ids(c: &Cluster, i: usize) -> Vec<u64> {
    c.members(i)
        .await
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect()
}

async fn node_id(c: &Cluster, i: usize) -> u64 {
    c.status(i).await.unwrap()["id"].as_u64().unwrap()
}

/// Before: an identity whose policy allows the remove route took a voter out of the
/// membership, and only then got 403 from the admin-only tombstone step.
/// After: it gets 403 before anything happens; the membership, the node and its certificate
/// are untouched.
#[tokio::test]
async fn a_refused_remove_changes_nothing() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let victim = (leader + 1) % 3;
    let victim_id = node_id(&c, victim).await;
    let (op, op_id) = operator(&c, leader);
    let policy = serde_json::json!({ "allow": ["/v1/cluster/remove/*", "/v1/cluster/status"] });
    let r = c
        .call(
            leader,
            Method::POST,
            "/v1/policy/write/operator",
            &policy.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let assign = serde_json::json!({ "identity": op_id }).to_string();
    let r = c
        .call(leader, Method::POST, "/v1/policy/assign/operator", &assign)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let r = op
        .request(
            Method::DELETE,
            &format!("/v1/cluster/remove/{victim_id}"),
            &[],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());

    // Give a half-done remove time to show: nothing may change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ids = member_ids(&c, leader).await;
    ids.sort_unstable();
    assert!(ids.contains(&victim_id) && ids.len() == 3, "{ids:?}");
    // The node was not tombstoned: its forwarded writes are still taken.
    let r = c
        .call(victim, Method::POST, "/v1/key/create/still-a-member", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.logs());
}

/// The leader itself is removed, through a follower: its tombstone is committed first, so the
/// followers refuse it at once; one of them takes over and finishes the membership change.
#[tokio::test]
async fn removing_the_leader_tombstones_it_and_the_others_finish_the_change() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let leader_id = node_id(&c, leader).await;
    let through = (leader + 1) % 3;
    let r = c
        .call(
            through,
            Method::DELETE,
            &format!("/v1/cluster/remove/{leader_id}"),
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.logs());
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let t0 = Instant::now();
    loop {
        let ids = member_ids(&c, through).await;
        if ids.len() == 2 && !ids.contains(&leader_id) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the removed leader is still a member: {ids:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let new_leader = c
        .leader_among(&rest, Duration::from_secs(20))
        .await
        .expect("a new leader among the others");
    let t0 = Instant::now();
    while !c.ready(new_leader, true).await {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the new leader never serves writes:\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c
        .call(new_leader, Method::POST, "/v1/key/create/after-remove", "")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
