//! A leader that stops and restarts before anyone else campaigns comes back as leader in the
//! same term: openraft restores a committed vote for itself as leadership, without an
//! election and without a new entry of its own. Its read index is then the commit index it
//! wrote down, which is never synced: after a power cut it can be older than writes it had
//! applied and acknowledged. Found by jepsen-lite's `random` scenario in CI (`kill -9` of the
//! leader, restarted 2 s later): a request was authorised after its identity's deletion had
//! been acknowledged.
//!
//! Real node processes over real mTLS, with three debug-build failpoints: the followers never
//! campaign (so the old leader leads again); the leader keeps an image of its store as of
//! each sync, which stands for its disk after a power cut; and the restarted leader applies
//! slowly (so its state lags its commit index long enough to be read).

use jepsen_lite::{Cluster, serial};
use kes_cluster::{Client, Method};
use std::time::{Duration, Instant};

/// The answer to `path` on `client`, retried while the node is still starting (connection
/// refused, or 503 while it cannot confirm its leadership).
async fn answer(client: Client, path: String) -> (u16, String) {
    let t0 = Instant::now();
    loop {
        match client.request(Method::GET, &path, &[], String::new()).await {
            Ok(r) if r.status != 503 => return (r.status, r.text()),
            Ok(r) if t0.elapsed() > Duration::from_secs(60) => return (r.status, r.text()),
            Err(e) if t0.elapsed() > Duration::from_secs(60) => return (0, e.to_string()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Before: the restarted leader took its read index from the commit index on its disk, older
/// than the acknowledged deletion, and answered 200 for the deleted key. After: a leader
/// restored in the term it led before the crash reads at least up to the last entry of its
/// log.
#[tokio::test]
async fn after_a_power_cut_a_leader_restored_in_its_term_reads_every_write_it_acknowledged() {
    let _serial = serial().await;
    let mut c = Cluster::start(3, "").await;
    let leader = c.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let image = c.dir.path().join("power-cut-image");
    let image_env = image.to_str().expect("utf-8 path").to_owned();
    c.restart_keeping_leader(leader, &[("KES_TEST_DISK_IMAGE", &image_env)], &[])
        .await;
    let lead = c.admin(leader);
    for (method, path) in [
        (Method::PUT, "/v1/key/create/dropped"),
        (Method::PUT, "/v1/key/create/kept"),
        (Method::DELETE, "/v1/key/delete/dropped"),
    ] {
        let r = lead.request(method, path, &[], String::new()).await;
        let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The power fails now: the disk holds what the last sync (the deletion's log entry) wrote.
    c.nodes[leader].kill9();
    let store = c.nodes[leader].dir.join("data").join("state");
    std::fs::remove_dir_all(&store).expect("remove the store");
    std::fs::rename(&image, &store).expect("the image as the store");
    // The followers stay silent while the old leader starts, so its first read round is
    // confirmed by heartbeat answers that come together with its first news of the commit
    // index.
    for &i in &followers {
        c.nodes[i].pause();
    }
    c.nodes[leader].env = vec![("KES_TEST_SLOW_APPLY_MS".into(), "1500".into())];
    c.nodes[leader].start();
    let restarted = c.admin(leader).with_timeout(Duration::from_secs(20));
    // Reads a moment apart, so that one of them is in the round the followers answer first.
    let mut reads = Vec::new();
    for _ in 0..3 {
        let client = restarted.clone();
        reads.push(tokio::spawn(answer(
            client,
            "/v1/key/describe/dropped".into(),
        )));
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    let kept = tokio::spawn(answer(restarted, "/v1/key/describe/kept".into()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for &i in &followers {
        c.nodes[i].resume();
    }
    let mut dropped = Vec::new();
    for read in reads {
        dropped.push(read.await.expect("task"));
    }
    let kept = kept.await.expect("task");
    assert_eq!(
        c.leader().await,
        leader,
        "the old leader must lead again for this test:\n{}",
        c.logs()
    );
    assert!(
        dropped.iter().all(|(status, _)| *status == 404),
        "the key deleted before the crash: {dropped:?}\n{}",
        c.nodes[leader].log()
    );
    assert_eq!(kept.0, 200, "the key created before the crash: {kept:?}");
}
