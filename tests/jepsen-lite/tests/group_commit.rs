//! Group commit (issue 10, item 1), with real node processes: writes that reach the leader
//! together share log entries, and each still gets its own answer. Half of them are forwarded
//! by a follower, so forwarded writes join the same batches.

use jepsen_lite::{Cluster, serial};
use kes_cluster::Method;
use std::time::Duration;

/// Names raced for; each is created twice at the same moment.
const NAMES: usize = 48;

async fn last_log_index(c: &Cluster, i: usize) -> u64 {
    let status = c.status(i).await.expect("status");
    status["last_log_index"]
        .as_u64()
        .expect("last_log_index in the status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_answer() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    c.wait_all_ready(Duration::from_secs(60)).await;
    let leader = c.leader().await;
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let before = last_log_index(&c, leader).await;

    // Every name twice, at once: through the leader and through a follower.
    let mut racers = Vec::new();
    for n in 0..NAMES {
        for node in [leader, follower] {
            let client = c.admin(node);
            let path = format!("/v1/key/create/raced-{n}");
            racers.push(tokio::spawn(async move {
                let r = client.request(Method::PUT, &path, &[], String::new()).await;
                let answer = r.map(|r| (r.status, r.text()));
                (n, answer.unwrap_or_else(|e| (0, e.to_string())))
            }));
        }
    }
    let mut answers = vec![Vec::new(); NAMES];
    for racer in racers {
        let (n, answer) = racer.await.unwrap();
        answers[n].push(answer);
    }
    for (n, mut pair) in answers.into_iter().enumerate() {
        pair.sort();
        assert_eq!(pair[0].0, 200, "raced-{n}: {pair:?}");
        assert_eq!(pair[1].0, 400, "raced-{n}: {pair:?}");
        assert!(
            pair[1].1.contains("key already exists"),
            "raced-{n}: {pair:?}"
        );
    }

    let entries = last_log_index(&c, leader).await - before;
    let writes = 2 * NAMES as u64;
    assert!(
        entries < writes,
        "{writes} concurrent writes took {entries} log entries: none shared one"
    );
    eprintln!("{writes} concurrent writes took {entries} log entries");

    // Every node holds every key, and a read through each finds it.
    for i in 0..3 {
        for n in 0..NAMES {
            let r = c
                .call(i, Method::GET, &format!("/v1/key/describe/raced-{n}"), "")
                .await
                .unwrap();
            assert_eq!(r.status, 200, "raced-{n} on node {i}: {}", r.text());
        }
    }
    c.wait_all_ready(Duration::from_secs(10)).await;
}

/// The leader proposes its next entry once the one before is committed, not once that one is
/// applied and answered, so an apply runs beside the next entry's replication. The followers'
/// log syncs are slowed to 400 ms (so an entry takes that long to commit) and the leader's
/// applies to 2 s: writes sent while the first write is being replicated are in the log before
/// the first is answered. Proposed one at a time, they would wait for its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_next_entry_is_proposed_while_the_one_before_is_applied() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    c.wait_all_ready(Duration::from_secs(60)).await;
    let leader = c.leader().await;
    c.restart_keeping_leader(
        leader,
        &[("KES_TEST_SLOW_APPLY_MS", "2000")],
        &[("KES_TEST_SLOW_LOG_SYNC_MS", "400")],
    )
    .await;
    c.wait_all_ready(Duration::from_secs(60)).await;
    let create = |name: &str| {
        let client = c.admin(leader);
        let path = format!("/v1/key/create/{name}");
        tokio::spawn(async move {
            let r = client.request(Method::PUT, &path, &[], String::new()).await;
            r.map(|r| r.status).unwrap_or(0)
        })
    };
    // One write answered first, so that no apply from the restart is still under way.
    assert_eq!(create("pipelined-warm-up").await.unwrap(), 200);

    let before = last_log_index(&c, leader).await;
    let first = create("pipelined-first");
    // The later writes go as soon as the first is in the leader's log: they must pass the
    // read barrier before the first one commits, which takes a follower's slowed sync.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while last_log_index(&c, leader).await == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first write never reached the leader's log"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let later: Vec<_> = ["pipelined-1", "pipelined-2", "pipelined-3"]
        .into_iter()
        .map(create)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut in_log = last_log_index(&c, leader).await - before;
    while in_log < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        in_log = last_log_index(&c, leader).await - before;
    }
    let first_answered = first.is_finished();
    assert!(
        in_log >= 2 && !first_answered,
        "the writes sent while the first one was replicated were not in the log before it was \
         answered ({in_log} new entries in the log; first answered: {first_answered})"
    );
    assert_eq!(first.await.unwrap(), 200);
    for write in later {
        assert_eq!(write.await.unwrap(), 200);
    }
}
