//! Group commit: writes that reach the leader while an earlier proposal is being replicated
//! wait for it, then go into the log together as one entry (`Op::Batch`).
//!
//! openraft 0.9 appends each `client_write` on its own, and the leader flushes and fdatasyncs
//! the log before it replicates an entry (so that a leader restored in its own term holds
//! every entry it ever sent, see `lease.rs`). One entry per write therefore costs one fsync on
//! the leader and one on each follower. Here the leader keeps one entry at a time in
//! replication, and writes that arrive meanwhile queue: the next entry carries all of them, up
//! to [`MAX_ENTRY_BYTES`]. A lone write goes in at once, as itself, so a single client waits no
//! longer than without batching.
//!
//! The next entry is proposed once the one before is committed, when its apply begins (the
//! state machine says so through [`GroupCommit::committed`]), not once it is applied and
//! answered: the leader's apply of one batch then runs beside the next one's log appends and
//! replication, which otherwise left a core idle for the length of the apply. At most two
//! proposals are unanswered: the next waits for the one before the last to be answered.
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
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// What a batch wrapper adds to the encoded size of the commands it holds (its own fields
/// and the array header); generous, so a batch never passes [`MAX_ENTRY_BYTES`].
const BATCH_OVERHEAD: usize = 1024;

/// The writes waiting for the next proposal, and the proposals waiting for their commit.
/// Clones share both (the state machine's hook holds one).
#[derive(Debug, Default, Clone)]
pub struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
    /// The proposed entries not known to be committed yet. In practice at most one: the
    /// driver proposes the next entry only after the last one is committed, or its proposal
    /// ended, and either takes it out.
    uncommitted: Arc<Mutex<Uncommitted>>,
    /// Told when a write joins the queue of a running driver.
    arrived: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Uncommitted {
    awaiting: Vec<AwaitingCommit>,
    /// The number of the next proposal.
    next: u64,
}

/// A proposed entry not known to be committed yet.
#[derive(Debug)]
struct AwaitingCommit {
    /// Which proposal it is: request ids need not be unique (a follower's retry of a
    /// forwarded write carries the id of its first attempt, which may be in the log too).
    proposal: u64,
    request_id: u128,
    /// Told once the entry is committed.
    tell: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// Whether a driver task is proposing the queue.
    driving: bool,
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
            !std::mem::replace(&mut q.driving, true)
        };
        if start_driver {
            // Its own task: a caller that gives up must not stop the others' proposal.
            tokio::spawn(drive(raft.clone(), self.clone(), bound));
        } else {
            self.arrived.notify_one();
        }
        match tokio::time::timeout(within, answered).await {
            Ok(Ok(attempt)) => attempt,
            // The driver never drops a waiter unanswered; a panic in it would.
            Ok(Err(_)) => Attempt::Maybe("the proposal was abandoned".into()),
            Err(_) => Attempt::Maybe("no quorum acknowledged the write in time".into()),
        }
    }

    /// Told by the state machine, on every node, that the entry holding `cmd` is committed and
    /// its apply begins: if it is a proposal of this node's, its driver may propose the next.
    /// (A single write's entry carries the client's request id; should an older entry carry
    /// the same id, the next proposal merely starts early.)
    pub fn committed(&self, cmd: Option<&Command>) {
        let Some(cmd) = cmd else { return };
        let mut uncommitted = self.uncommitted.lock().unwrap_or_else(|e| e.into_inner());
        let awaiting = &mut uncommitted.awaiting;
        if let Some(at) = awaiting.iter().position(|a| a.request_id == cmd.request_id) {
            let _ = awaiting.swap_remove(at).tell.send(());
        }
    }

    /// Notes a proposal of the entry with `request_id`: its number, and what says when the
    /// entry is committed.
    fn expect_commit(&self, request_id: u128) -> (u64, oneshot::Receiver<()>) {
        let (tell, told) = oneshot::channel();
        let mut uncommitted = self.uncommitted.lock().unwrap_or_else(|e| e.into_inner());
        let proposal = uncommitted.next;
        uncommitted.next += 1;
        uncommitted.awaiting.push(AwaitingCommit {
            proposal,
            request_id,
            tell,
        });
        (proposal, told)
    }

    /// Forgets proposal number `proposal`, which ended.
    fn stop_expecting(&self, proposal: u64) {
        let mut uncommitted = self.uncommitted.lock().unwrap_or_else(|e| e.into_inner());
        uncommitted.awaiting.retain(|a| a.proposal != proposal);
    }
}

/// Proposes the queued writes, one entry at a time, until the queue is empty. Each entry is
/// proposed once the one before is committed and the one before that is answered.
async fn drive(raft: Raft, group: GroupCommit, bound: Duration) {
    // The proposal committed last, while it is applied and answered.
    let mut answering: Option<JoinHandle<()>> = None;
    loop {
        let batch = {
            let mut q = group.queue.lock().unwrap_or_else(|e| e.into_inner());
            let batch = take_batch(&mut q.waiting);
            if batch.is_empty() && answering.is_none() {
                q.driving = false;
                return;
            }
            batch
        };
        if let (true, Some(last)) = (batch.is_empty(), answering.as_mut()) {
            // Nothing queued while the last entry is applied: wait for a write or its answer.
            tokio::select! {
                _ = group.arrived.notified() => {}
                _ = last => answering = None,
            }
            continue;
        }
        let entry = entry_for(&batch);
        let (number, committed) = group.expect_commit(entry.request_id);
        let mut proposal = tokio::spawn({
            let (raft, group) = (raft.clone(), group.clone());
            async move {
                propose_batch(&raft, entry, batch, bound).await;
                group.stop_expecting(number);
            }
        });
        let before = answering.take();
        let still_answering = tokio::select! {
            told = committed => match told {
                Ok(()) => Some(proposal),
                // The proposal ended before its entry was known to be committed.
                Err(_) => {
                    let _ = proposal.await;
                    None
                }
            },
            _ = &mut proposal => None,
        };
        if let Some(before) = before {
            let _ = before.await;
        }
        answering = still_answering;
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

/// The entry that proposes `batch`: a lone write as itself, more as one `Op::Batch`.
fn entry_for(batch: &[Waiting]) -> Command {
    if batch.len() == 1 {
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
    }
}

/// Proposes `entry`, made by [`entry_for`] from `batch`, and answers each of its writers.
async fn propose_batch(raft: &Raft, entry: Command, mut batch: Vec<Waiting>, bound: Duration) {
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
