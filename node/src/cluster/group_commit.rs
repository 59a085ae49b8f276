//! Group commit: writes that reach the leader while an earlier proposal is being replicated
//! wait for it, then go into the log together as one entry (`Op::Batch`).
//!
//! openraft 0.9 appends each `client_write` on its own, and the leader flushes and fdatasyncs
//! the log before it replicates an entry (so that a leader restored in its own term holds
//! every entry it ever sent, see `lease.rs`). One entry per write therefore costs one fsync on
//! the leader and one on each follower. Here the leader keeps at most
//! [`PROPOSALS_IN_FLIGHT`] entry in flight, and writes that arrive meanwhile queue: the next
//! entry carries all of them, up to [`MAX_ENTRY_BYTES`]. A lone write goes in at once, as
//! itself, so a single client waits no longer than without batching.
//!
//! Forwarded writes from followers join the same queue. Each command of a batch keeps its own
//! request id, authorisation and outcome (`State::apply_batch`).

use super::write::Attempt;
use crate::raft::{MAX_ENTRY_BYTES, Raft, encode};
use crate::state::{Command, Op};
use openraft::error::{ClientWriteError, RaftError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Entries of the group commit that may be in flight at once. One gives the largest batches,
/// and the most writes per second: with 64 clients creating keys on a 3-node cluster on 2
/// cores, 0.74x of etcd's puts with one in flight, 0.67x with two, 0.34x before group commit
/// (`checks/write-perf`). The cores, not the disk, are the limit, and every entry costs CPU
/// on every node.
const PROPOSALS_IN_FLIGHT: usize = 1;

/// What a batch wrapper adds to the encoded size of the commands it holds (its own fields
/// and the array header); generous, so a batch never passes [`MAX_ENTRY_BYTES`].
const BATCH_OVERHEAD: usize = 1024;

/// The writes waiting for the next proposal, and how many proposals are in flight.
#[derive(Debug, Default)]
pub struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

#[derive(Debug)]
struct Waiting {
    cmd: Command,
    size: usize,
    answer: oneshot::Sender<Attempt>,
}

impl GroupCommit {
    /// Proposes `cmd` through `raft`, alone or with the writes queued beside it, and says
    /// what became of it. `within` bounds this caller's wait; `bound` bounds each proposal
    /// (the longest any caller waits).
    pub(super) async fn propose(
        &self,
        raft: &Raft,
        cmd: Command,
        within: Duration,
        bound: Duration,
    ) -> Attempt {
        let (answer, answered) = oneshot::channel();
        let size = encode(&cmd).len();
        let start_driver = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push_back(Waiting { cmd, size, answer });
            q.in_flight < PROPOSALS_IN_FLIGHT && {
                q.in_flight += 1;
                true
            }
        };
        if start_driver {
            // Its own task: a caller that gives up must not stop the others' proposal.
            tokio::spawn(drive(raft.clone(), self.queue.clone(), bound));
        }
        match tokio::time::timeout(within, answered).await {
            Ok(Ok(attempt)) => attempt,
            // The driver never drops a waiter unanswered; a panic in it would.
            Ok(Err(_)) => Attempt::Maybe("the proposal was abandoned".into()),
            Err(_) => Attempt::Maybe("no quorum acknowledged the write in time".into()),
        }
    }
}

/// Proposes the queued writes, one entry at a time, until the queue is empty.
async fn drive(raft: Raft, queue: Arc<Mutex<Queue>>, bound: Duration) {
    loop {
        let batch = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            let batch = take_batch(&mut q.waiting);
            if batch.is_empty() {
                q.in_flight -= 1;
                return;
            }
            batch
        };
        propose_batch(&raft, batch, bound).await;
    }
}

/// Takes from the front of `waiting` the writes of the next entry: as many as fit in
/// [`MAX_ENTRY_BYTES`], and at least one. Writes whose caller already gave up are dropped
/// unproposed (that caller answered "unknown", which stays true).
fn take_batch(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut batch = Vec::new();
    let mut bytes = BATCH_OVERHEAD;
    while let Some(next) = waiting.front() {
        if next.answer.is_closed() {
            waiting.pop_front();
            continue;
        }
        if !batch.is_empty() && bytes + next.size > MAX_ENTRY_BYTES {
            break;
        }
        bytes += next.size;
        batch.extend(waiting.pop_front());
    }
    batch
}

/// Proposes `batch` as one entry (a lone write as itself) and answers each of its writers.
async fn propose_batch(raft: &Raft, mut batch: Vec<Waiting>, bound: Duration) {
    let entry = if batch.len() == 1 {
        batch[0].cmd.clone()
    } else {
        Command {
            request_id: rand::random(),
            identity: String::new(),
            path: String::new(),
            enclave: String::new(),
            time: batch[0].cmd.time,
            op: Op::Batch {
                commands: batch.iter().map(|w| w.cmd.clone()).collect(),
            },
            restores_seen: None,
        }
    };
    let answers: Vec<Attempt> = match tokio::time::timeout(bound, raft.client_write(entry)).await {
        Ok(Ok(resp)) if resp.data.batch.len() == batch.len() => resp
            .data
            .batch
            .into_iter()
            .map(|outcome| Attempt::committed(resp.log_id.index, outcome))
            .collect(),
        Ok(Ok(resp)) if batch.len() == 1 => {
            vec![Attempt::committed(resp.log_id.index, resp.data.outcome)]
        }
        Ok(Ok(resp)) => {
            let why = format!(
                "entry {} answered {} outcomes for {} writes",
                resp.log_id.index,
                resp.data.batch.len(),
                batch.len()
            );
            vec![Attempt::Maybe(why); batch.len()]
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            let why = format!("leadership moved to {:?}", f.leader_id);
            vec![Attempt::Retry(why); batch.len()]
        }
        Ok(Err(e)) => vec![Attempt::Maybe(e.to_string()); batch.len()],
        Err(_) => {
            let why = "no quorum acknowledged the write in time".to_owned();
            vec![Attempt::Maybe(why); batch.len()]
        }
    };
    for (waiting, attempt) in batch.drain(..).zip(answers) {
        let _ = waiting.answer.send(attempt);
    }
}
