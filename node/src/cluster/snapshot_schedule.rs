//! When this node builds its snapshots: every `snapshot_every` entries, as openraft's
//! `LogsSinceLast` would, but each voter at its own offset into that period.
//!
//! With openraft's policy every node counts from the same index and so builds its snapshot at
//! the same entry as the others. A snapshot costs a node seconds of CPU and a burst of disk
//! writes (at a million keys: 4 s and 240 MB). Built on every node at once, it slows the
//! leader and both followers together; where the nodes share a machine or a disk, as in the
//! testbed, the three also queue behind each other. Spread over the period, at most one voter
//! builds at a time. (A write still waits for a busy follower's append while that follower
//! holds a read lease, but for one busy node, not three.)
//!
//! Voter `r` of `n` (by rank of node id) builds when its applied index passes
//! `k * every + r * every / n`. openraft's own policy stays on at twice the period, as a
//! backstop should this loop ever stop.

use super::Cluster;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the loop rests after each look before it waits for the applied index to move again:
/// a snapshot starts within this time (a few entries) of its due index, and a busy node looks
/// at most a hundred times a second. (A look every 200 ms once let a snapshot start 21 entries
/// late in the test cluster.)
const REST_BETWEEN_LOOKS: Duration = Duration::from_millis(10);

/// After a trigger, how long to wait for the snapshot to show up before asking again. A build
/// of a million keys takes about 4 s; asking again while one runs is ignored by openraft, but
/// asking right after one finished (before its metrics arrive) would build a second.
const WAIT_FOR_BUILD: Duration = Duration::from_secs(60);

/// This node's offset into the period: its rank among the voters, spread evenly. A node that
/// is not a voter (a learner catching up) takes the slot after the last voter.
fn offset(me: u64, voters: &BTreeSet<u64>, every: u64) -> u64 {
    let rank = voters
        .iter()
        .position(|id| *id == me)
        .unwrap_or(voters.len()) as u64;
    let slots = voters.len() as u64 + u64::from(!voters.contains(&me));
    // u128: `every` is an operator's number, and rank * every must not overflow.
    (u128::from(rank) * u128::from(every) / u128::from(slots.max(1))) as u64
}

/// The index at which this node's next snapshot is due: the first `k * every + offset` after
/// its last snapshot (none: after 0), but more than half a period after it. A snapshot built
/// late, or installed from the leader at the leader's offset, so never shifts the node's
/// phase, and the next one still comes between half a period and a period and a half later,
/// never right after it.
fn next_due(last_snapshot: Option<u64>, every: u64, offset: u64) -> u64 {
    let every = every.max(1);
    let offset = offset % every;
    let after = last_snapshot.map_or(0, |last| last.saturating_add(every / 2));
    // The smallest k * every + offset above `after`.
    let periods = after.saturating_sub(offset) / every;
    let due = periods.saturating_mul(every).saturating_add(offset);
    if due > after {
        due
    } else {
        due.saturating_add(every)
    }
}

/// Runs until the Raft node shuts down.
pub async fn build_snapshots_in_turn(cluster: Arc<Cluster>, every: u64) {
    let mut rx = cluster.raft.metrics();
    let mut asked: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(REST_BETWEEN_LOOKS).await;
        if rx.changed().await.is_err() {
            return;
        }
        let (applied, snapshot, voters) = {
            let m = rx.borrow_and_update();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map(|l| l.index),
                m.membership_config
                    .membership()
                    .voter_ids()
                    .collect::<BTreeSet<_>>(),
            )
        };
        let due = next_due(snapshot, every, offset(cluster.node_id, &voters, every));
        if applied < due {
            continue;
        }
        if asked.is_some_and(|(at, when)| at == due && when.elapsed() < WAIT_FOR_BUILD) {
            continue;
        }
        tracing::debug!("snapshot due at {due}, applied {applied}: building");
        asked = Some((due, Instant::now()));
        if cluster.raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn three_voters_take_a_third_of_the_period_each() {
        let voters = ids(&[4, 9, 17]);
        assert_eq!(offset(4, &voters, 10_000), 0);
        assert_eq!(offset(9, &voters, 10_000), 3_333);
        assert_eq!(offset(17, &voters, 10_000), 6_666);
        // A learner goes after them.
        assert_eq!(offset(30, &voters, 10_000), 7_500);
        // Alone, a node snapshots where openraft's policy would.
        assert_eq!(offset(1, &ids(&[1]), 10_000), 0);
        assert_eq!(offset(1, &ids(&[]), 10_000), 0);
    }

    #[test]
    fn the_next_snapshot_is_one_period_on_at_the_node_s_offset() {
        // The first: at the node's offset into the first period.
        assert_eq!(next_due(None, 100, 0), 100);
        assert_eq!(next_due(None, 100, 33), 33);
        assert_eq!(next_due(Some(33), 100, 33), 133);
        assert_eq!(next_due(Some(99), 100, 0), 100 + 100);
        assert_eq!(next_due(Some(100), 100, 0), 200);
        // A snapshot built late (or installed from the leader) does not shift the phase...
        assert_eq!(next_due(Some(140), 100, 33), 233);
        assert_eq!(next_due(Some(82), 90, 60), 150);
        // ...and one built more than half a period late skips a slot rather than have the
        // next one follow it at once (the slot at 133 is one entry away).
        assert_eq!(next_due(Some(132), 100, 33), 233);
        // Between half a period and a period and a half after the last, always at the offset.
        for s in [0, 1, 50, 99, 100, 101, 12_345] {
            for o in [0, 1, 33, 66, 99] {
                let d = next_due(Some(s), 100, o);
                assert!(d > s + 50 && d - s <= 150, "s {s} o {o}: {d}");
                assert_eq!(d % 100, o);
            }
        }
        assert_eq!(next_due(Some(5), 0, 0), 6);
        assert_eq!(next_due(None, 0, 0), 1);
        assert_eq!(next_due(Some(u64::MAX - 1), 100, 0), u64::MAX);
    }
}
