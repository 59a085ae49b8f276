//! Linearizable reads: before a node answers from its local state, it makes sure that state
//! holds every write acknowledged anywhere before the request arrived. This is Raft's
//! ReadIndex, as etcd does it:
//!
//! - the leader, inside its lease, already has: it applies a write before acknowledging it,
//!   and no other leader can exist while its lease holds;
//! - a follower inside a read lease (`raft/read_leases.rs`) already holds every exposed write
//!   in its log: it waits until it has applied its log as it is now;
//! - any other follower asks the leader for its read index, then waits until it has applied it.
//!
//! Every read waiting at a given moment shares one round trip. A read that arrives while a
//! round is in flight waits for the *next* round, because the one in flight may have been
//! answered before the read arrived and so may miss a write acknowledged just before it.

use super::Cluster;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type RoundResult = Result<u64, String>;

/// The reads waiting for the next round, and whether a round is running.
#[derive(Debug, Default)]
pub struct ReadRounds {
    pending: Mutex<Pending>,
    /// Rounds run so far (status shows it: a follower holding a read lease runs none).
    rounds: AtomicU64,
}

impl ReadRounds {
    /// How many read-index rounds this node has run.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Pending {
    running: bool,
    waiters: Vec<oneshot::Sender<RoundResult>>,
}

/// How long a read waits between failed rounds while a leader is known (a leader that just
/// took over confirms its lease within a heartbeat).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Cluster {
    /// How this node's reads learn what they must have applied, for status: `leader lease`,
    /// `read lease` (a follower that need not ask), or `read index` (one round per batch).
    pub fn read_mode(&self) -> &'static str {
        if self.leader_lease_index().is_some() {
            "leader lease"
        } else if self.follower_lease_index().is_some() {
            "read lease"
        } else {
            "read index"
        }
    }

    /// Waits until this node's state reflects every write acknowledged anywhere before the
    /// call, at most `read_index_wait`. A node a few entries behind waits for them; it never
    /// answers "not serving" just for being a moment behind.
    pub async fn read_barrier(self: &Arc<Self>) -> Result<(), String> {
        if crate::planted::active(crate::planted::Bug::SkipReadIndex) {
            return Ok(());
        }
        let deadline = Instant::now() + self.settings.read_index_wait;
        let index = loop {
            if let Some(index) = self.leader_lease_index() {
                break index;
            }
            if let Some(index) = self.follower_lease_index() {
                break index;
            }
            match self.shared_round().await {
                Ok(index) => break index,
                // Without a leader an election is under way, and every node is without one
                // alike: wait for it within the bound, as for a leader that does not answer.
                // Answering 503 at once sent no client anywhere better, and a KES client
                // shuns a node that answered 5xx for 30 s (kes-api-contract §1); measured
                // by `cluster-bench failover`'s error window.
                Err(e) if Instant::now() + RETRY_PAUSE >= deadline => {
                    return Err(e);
                }
                Err(e) => tracing::debug!("read round failed, retrying: {e}"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if self.wait_applied(index, left).await {
            Ok(())
        } else {
            Err(format!(
                "could not apply up to the read index {index} in time"
            ))
        }
    }

    /// The read index of a confirmation round that starts after this call: joins the next
    /// round, and starts the driver when none is running.
    async fn shared_round(self: &Arc<Self>) -> RoundResult {
        let (tx, rx) = oneshot::channel();
        let start_driver = {
            let mut p = self.reads.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.waiters.push(tx);
            !std::mem::replace(&mut p.running, true)
        };
        if start_driver {
            // Its own task: a read whose client goes away must not stop the others' round.
            tokio::spawn(self.clone().drive_rounds());
        }
        rx.await
            .unwrap_or_else(|_| Err("the read round was abandoned".into()))
    }

    /// Runs rounds back to back while reads are waiting; each round answers the reads that
    /// were waiting when it began.
    async fn drive_rounds(self: Arc<Self>) {
        loop {
            let batch = {
                let mut p = self.reads.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.waiters.is_empty() {
                    p.running = false;
                    return;
                }
                std::mem::take(&mut p.waiters)
            };
            self.reads.rounds.fetch_add(1, Ordering::Relaxed);
            let result = self.confirm_round().await;
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
        }
    }
}
