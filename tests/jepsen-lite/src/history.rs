//! The history of a run: every client operation as an invoke, then `ok`, `fail` or `info`, on one
//! monotonic clock.
//!
//! What the checker relies on, and why the recorder gives it:
//! * **One clock.** Every time is nanoseconds since [`RunClock::start`], read from the same
//!   `Instant`, so "A completed before B was invoked" means the same thing for every client
//!   task (and for the fault windows, which the harness stamps with the same clock).
//! * **Invoke before send, complete after receive.** A client takes its [`PendingOp`] before the
//!   request leaves and completes it after the answer arrived, so the recorded interval always
//!   contains the moment the cluster acted.
//! * **No outcome is invented.** `fail` means the operation certainly did not take effect (the
//!   cluster said so); anything the client cannot be sure of is `info`. A [`PendingOp`] dropped
//!   without an outcome (a cancelled task, a panic) becomes `info`, and so does an operation
//!   still in flight when the history is taken.
//!
//! A failing run keeps its history: [`History::write_jsonl`] writes one operation per line, and
//! [`History::read_jsonl`] reads it back for a replay of the check.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An operation's index in its [`History`] (`history.ops[id].id == id`).
pub type OpId = usize;

/// The run's monotonic clock: nanoseconds since the run started.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    /// Starts the clock now.
    pub fn start() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start (saturates after 584 years).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<O> {
    /// It took effect, with this answer.
    Ok(O),
    /// It certainly did not take effect (the reason, for the report). The checker leaves it out.
    Fail(String),
    /// Unknown: it may take effect at any point after its invoke, or never (the reason, for the
    /// report, e.g. "timeout", "connection reset").
    Info(String),
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op<I, O> {
    /// Its index in the history.
    pub id: OpId,
    /// The client (process) that ran it; one client runs one operation at a time.
    pub process: u64,
    /// The partition it belongs to (the key name, or the identity): the checker checks each
    /// partition on its own.
    pub key: String,
    /// What was asked.
    pub input: I,
    /// When the request was about to be sent (ns since the run start).
    pub invoke_ns: u64,
    /// When the answer arrived; for `info`, when the client gave up (for drawing only: the
    /// checker treats an `info` operation as never completing). `None` while in flight.
    pub complete_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome<O>,
    /// The node (0-based) the request went to, when the client says ([`PendingOp::sent_to`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<usize>,
}

impl<I, O> Op<I, O> {
    /// The answer, if the operation is known to have taken effect.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Ok(o) => Some(o),
            _ => None,
        }
    }

    /// True for `ok`: it took effect, and its answer is known.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// True for `fail`: the operation did not take effect.
    pub fn is_fail(&self) -> bool {
        matches!(self.outcome, Outcome::Fail(_))
    }

    /// When the checker must have placed this operation by: its completion for `ok`, never
    /// (`u64::MAX`) for `info`.
    pub fn deadline_ns(&self) -> u64 {
        match (&self.outcome, self.complete_ns) {
            (Outcome::Ok(_), Some(t)) => t,
            _ => u64::MAX,
        }
    }
}

/// Every operation of a run, in invoke order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History<I, O> {
    /// The operations; `ops[i].id == i`.
    pub ops: Vec<Op<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        History { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finished operation (for histories built by hand, in tests or a replay) and returns
    /// its id.
    pub fn push(
        &mut self,
        process: u64,
        key: impl Into<String>,
        input: I,
        invoke_ns: u64,
        complete_ns: Option<u64>,
        outcome: Outcome<O>,
    ) -> OpId {
        let id = self.ops.len();
        self.ops.push(Op {
            id,
            process,
            key: key.into(),
            input,
            invoke_ns,
            complete_ns,
            outcome,
            node: None,
        });
        id
    }
}

impl<I: Serialize, O: Serialize> History<I, O> {
    /// Writes one JSON object per line, one line per operation.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        for op in &self.ops {
            serde_json::to_writer(&mut out, op)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Writes the history to `path` as JSON lines (see [`History::write_jsonl`]).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        self.write_jsonl(std::io::BufWriter::new(file))
    }
}

impl<I: for<'de> Deserialize<'de>, O: for<'de> Deserialize<'de>> History<I, O> {
    /// Reads what [`History::write_jsonl`] wrote. Ids are renumbered by line, so a hand-edited
    /// file (a line removed to shrink a case) still reads as a well-formed history.
    pub fn read_jsonl(input: impl BufRead) -> std::io::Result<Self> {
        let mut history = History::new();
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let mut op: Op<I, O> = serde_json::from_str(&line)?;
            op.id = history.ops.len();
            history.ops.push(op);
        }
        Ok(history)
    }
}

/// Records the operations of many client tasks. Cloning is cheap (one `Arc`); each record takes
/// a short, uncontended lock and never awaits.
pub struct Recorder<I, O> {
    clock: RunClock,
    ops: Arc<Mutex<Vec<Op<I, O>>>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Self {
        Recorder {
            clock: self.clock,
            ops: Arc::clone(&self.ops),
        }
    }
}

/// The reason recorded for an operation that was still in flight when the history was taken.
pub const IN_FLIGHT: &str = "in flight";
/// The reason recorded for a [`PendingOp`] dropped without an outcome.
pub const ABANDONED: &str = "abandoned: the client ended without an outcome";

impl<I, O> Recorder<I, O> {
    /// A recorder on its own clock, started now.
    pub fn new() -> Self {
        Self::with_clock(RunClock::start())
    }

    /// A recorder on the run's clock (so fault windows and operations share one time line).
    pub fn with_clock(clock: RunClock) -> Self {
        Recorder {
            clock,
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The clock every time in this history is read from.
    pub fn clock(&self) -> RunClock {
        self.clock
    }

    /// Records the invoke of an operation; call it just before the request is sent. The
    /// returned handle records the outcome; dropping it without one records `info`.
    pub fn invoke(&self, process: u64, key: impl Into<String>, input: I) -> PendingOp<I, O> {
        let key = key.into();
        let mut ops = self.lock();
        let id = ops.len();
        // The time is read under the lock so that ids are in invoke order.
        let invoke_ns = self.clock.now_ns();
        ops.push(Op {
            id,
            process,
            key,
            input,
            invoke_ns,
            complete_ns: None,
            outcome: Outcome::Info(IN_FLIGHT.to_string()),
            node: None,
        });
        PendingOp {
            recorder: self.clone(),
            id,
            done: false,
        }
    }

    fn complete(&self, id: OpId, outcome: Outcome<O>) {
        let complete_ns = self.clock.now_ns();
        let mut ops = self.lock();
        let op = &mut ops[id];
        op.complete_ns = Some(complete_ns);
        op.outcome = outcome;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Op<I, O>>> {
        // A client task that panicked while holding the lock left a consistent vector (every
        // write is a single push or a single field update), so the poison is not a reason to
        // lose the history.
        self.ops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// A copy of the history so far; operations still in flight are `info` ([`IN_FLIGHT`]).
    pub fn history(&self) -> History<I, O> {
        History {
            ops: self.lock().clone(),
        }
    }
}

/// An invoked operation waiting for its outcome.
#[must_use = "an operation without an outcome is recorded as info"]
pub struct PendingOp<I, O> {
    recorder: Recorder<I, O>,
    id: OpId,
    done: bool,
}

impl<I, O> PendingOp<I, O> {
    /// Its id in the history.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// Notes which node (0-based) the request goes to, for whoever reads the history.
    pub fn sent_to(&self, node: usize) {
        self.recorder.lock()[self.id].node = Some(node);
    }

    /// It took effect, with this answer.
    pub fn ok(self, output: O) {
        self.finish(Outcome::Ok(output));
    }

    /// It certainly did not take effect.
    pub fn fail(self, reason: impl Into<String>) {
        self.finish(Outcome::Fail(reason.into()));
    }

    /// Its outcome is unknown (timeout, connection lost, 504).
    pub fn info(self, reason: impl Into<String>) {
        self.finish(Outcome::Info(reason.into()));
    }

    fn finish(mut self, outcome: Outcome<O>) {
        self.done = true;
        self.recorder.complete(self.id, outcome);
    }
}

impl<I, O> Drop for PendingOp<I, O> {
    fn drop(&mut self) {
        if !self.done {
            self.recorder
                .complete(self.id, Outcome::Info(ABANDONED.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_on_tasks_share_one_recorder_and_a_dropped_op_is_info() {
        let rec: Recorder<String, u32> = Recorder::new();
        let mut tasks = Vec::new();
        for p in 0..4u64 {
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25u32 {
                    let op = rec.invoke(p, format!("k{}", i % 3), format!("in{i}"));
                    tokio::task::yield_now().await;
                    match i % 4 {
                        0 => op.ok(i),
                        1 => op.fail("503 not applied"),
                        2 => op.info("timeout"),
                        _ => drop(op),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let still_flying = rec.invoke(9, "k0", "late".to_string());
        let history = rec.history();
        assert_eq!(history.ops.len(), 101);
        for (i, op) in history.ops.iter().enumerate() {
            assert_eq!(op.id, i);
            if let Some(c) = op.complete_ns {
                assert!(c >= op.invoke_ns);
            }
        }
        let abandoned = history
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Info(ABANDONED.into()))
            .count();
        assert_eq!(abandoned, 24);
        assert_eq!(
            history.ops[still_flying.id()].outcome,
            Outcome::Info(IN_FLIGHT.into())
        );
        // Invoke times follow ids, because ids are given under the same lock.
        assert!(
            history
                .ops
                .windows(2)
                .all(|w| w[0].invoke_ns <= w[1].invoke_ns)
        );
        still_flying.ok(7);
        assert_eq!(rec.history().ops[100].outcome, Outcome::Ok(7));
    }

    #[test]
    fn jsonl_round_trips() {
        let mut h: History<String, Option<u32>> = History::new();
        h.push(1, "a", "x".into(), 0, Some(5), Outcome::Ok(Some(3)));
        h.push(2, "a", "y".into(), 1, None, Outcome::Info("timeout".into()));
        h.push(3, "b", "z".into(), 2, Some(4), Outcome::Fail("503".into()));
        let mut buf = Vec::new();
        h.write_jsonl(&mut buf).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 3);
        let back: History<String, Option<u32>> = History::read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, h);
    }
}
