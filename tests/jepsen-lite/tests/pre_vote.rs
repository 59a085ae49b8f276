//! Pre-vote (issue 10, item 3), with real node processes: a follower that was paused past the
//! election timeout, or that restarts, must not raise the term of a healthy cluster; and a dead
//! leader is still replaced.

use jepsen_lite::{Cluster, serial};
use std::time::Duration;

/// Every node's term (0 for a node that does not answer).
async fn terms(c: &Cluster) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        let status = c.status(i).await;
        out.push(status.and_then(|s| s["term"].as_u64()).unwrap_or(0));
    }
    out
}

/// Before: the resumed follower campaigned at once (openraft 0.9 has no pre-vote), its higher
/// term made the leader step down, and the cluster held an election it did not need. After:
/// the others still hear from the leader, refuse its pre-vote, and no term changes.
#[tokio::test]
async fn a_follower_paused_past_the_election_timeout_does_not_raise_the_term() {
    let _g = serial().await;
    let c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let before = terms(&c).await;
    let follower = (leader + 1) % 3;
    c.nodes[follower].pause();
    // Past the largest election timeout (2 s by default), twice over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.nodes[follower].resume();
    assert!(
        c.wait_ready(follower, Duration::from_secs(20)).await,
        "the resumed follower never caught up:\n{}",
        c.logs()
    );
    // Give a campaign time to happen, and to be seen.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = terms(&c).await;
    assert_eq!(before, after, "terms before and after:\n{}", c.logs());
    assert_eq!(
        c.leader().await,
        leader,
        "the leader changed:\n{}",
        c.logs()
    );
}

/// The leader killed: a follower's pre-vote is granted once the other follower has not heard
/// from a leader for the election timeout, and one of them takes over in the next term.
#[tokio::test]
async fn a_dead_leader_is_replaced_in_the_next_term() {
    let _g = serial().await;
    let mut c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let term = terms(&c).await[leader];
    c.nodes[leader].kill9();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new = c.leader_among(&rest, Duration::from_secs(20)).await;
    let new = new.unwrap_or_else(|| panic!("no new leader:\n{}", c.logs()));
    let new_term = terms(&c).await[new];
    assert!(new_term > term, "term {term} then {new_term}");
    // At most a couple of elections: a split vote may take one more, never a storm.
    assert!(
        new_term <= term + 3,
        "term {term} then {new_term}:\n{}",
        c.logs()
    );
}
