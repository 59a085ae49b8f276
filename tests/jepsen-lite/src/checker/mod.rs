//! The linearizability checker: is there one order of the operations, consistent with real
//! time, in which a single copy of the [`Model`] gives every recorded answer?
//!
//! ```text
//!   History ──split by key──▶ partition "k1" ──▶ WGL search ──▶ Linearizable
//!                         ├─▶ partition "k2" ──▶ WGL search ──▶ Violation ──▶ shrink ──▶ witness
//!                         └─▶ ...                          └──▶ Unknown (budget spent)
//! ```
//!
//! * **Per key (P-compositionality).** Linearizability is local: a history is linearizable iff
//!   each object's sub-history is. The models keep one independent state per key, so each
//!   partition is checked alone, which turns one exponential search into many small ones.
//! * **Wing–Gong–Lowe search** ([`search`]) with memoisation of (placed set, model state), as in
//!   Lowe's "Testing for linearizability" and Porcupine.
//! * **Unknown outcomes.** A `fail` operation did not take effect and is left out. An `info`
//!   operation may take effect at any point after its invoke, or never: it never completes (its
//!   deadline is infinite) and the search succeeds as soon as every `ok` operation is placed,
//!   which leaves the unplaced `info` operations out.
//! * **Budget.** A partition that needs more steps or time than [`Budget`] allows gets
//!   [`Verdict::Unknown`], which the harness counts as a failure: a checker that gives up has
//!   not shown anything.
//! * **Witness.** For a violation, [`minimise`] finds a small sub-history that is already not
//!   linearizable, for the report to draw.
//!
//! Real-time order: `a` precedes `b` iff `a` is `ok` and `a.complete_ns < b.invoke_ns`. Equal
//! times count as overlapping.

mod minimise;
mod search;

#[cfg(test)]
mod brute_force;
#[cfg(test)]
mod cross_check;
#[cfg(test)]
mod scale;
#[cfg(test)]
mod tests;

use crate::history::{History, OpId, Outcome};
use crate::model::Model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much work the checker may spend on one partition.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Search steps (one step = one operation tried at one point) for the verdict.
    pub max_steps: u64,
    /// Wall time for the verdict.
    pub max_time: Duration,
    /// Extra wall time to shrink a violation into a small witness; when it runs out, the
    /// witness is correct but maybe not minimal ([`Violation::minimal`] is false).
    pub shrink_time: Duration,
}

impl Default for Budget {
    /// Generous for a `--full` run (hundreds of operations per key), yet bounded.
    fn default() -> Self {
        Budget {
            max_steps: 20_000_000,
            max_time: Duration::from_secs(60),
            shrink_time: Duration::from_secs(10),
        }
    }
}

/// The checker's answer for one partition.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// A linearization exists (`order`: the operations in one such order; unplaced `info`
    /// operations are left out).
    Linearizable {
        /// One linearization, by op id.
        order: Vec<OpId>,
    },
    /// No linearization exists.
    Violation(Violation),
    /// The budget ran out before an answer: count it as a failure.
    Unknown {
        /// Which budget ran out.
        reason: String,
    },
}

/// Why a partition is not linearizable, small enough to draw.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    /// The `ok` operation whose completion made the history not linearizable: the prefix of
    /// the history that ends with its completion is not linearizable, and (when
    /// [`Violation::minimal`]) every prefix that ends before it is.
    pub stuck: OpId,
    /// The witness: `ok` operations whose answers cannot all be right, even if every other
    /// operation invoked before `stuck` completed ([`Violation::context`]) took effect at any
    /// later time or never. These operations alone are not linearizable either. Sorted by
    /// invoke time.
    pub ops: Vec<OpId>,
    /// The other operations of that prefix, treated as unknown outcomes in the proof; draw them
    /// faded, or leave them out.
    pub context: Vec<OpId>,
    /// False if the shrink budget ran out: `ops` is still a witness, just maybe not the
    /// smallest one.
    pub minimal: bool,
    /// The longest order of operations the full search could place before getting stuck.
    pub longest_linearization: Vec<OpId>,
}

/// The result for one partition.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionReport {
    /// The key (or identity) of the partition.
    pub key: String,
    /// Operations checked (those not `fail`).
    pub ops: usize,
    /// Operations with an unknown outcome among them.
    pub unknown_ops: usize,
    /// Search steps spent on the verdict.
    pub steps: u64,
    /// Wall time spent, in milliseconds, shrink included.
    pub elapsed_ms: u64,
    /// The answer.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The result for a whole history.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per key, in key order.
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    /// Partitions that are not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &PartitionReport> {
        self.partitions
            .iter()
            .filter(|p| matches!(p.verdict, Verdict::Violation(_)))
    }

    /// Partitions the checker gave up on.
    pub fn unknown(&self) -> impl Iterator<Item = &PartitionReport> {
        self.partitions
            .iter()
            .filter(|p| matches!(p.verdict, Verdict::Unknown { .. }))
    }

    /// True iff every partition is linearizable (an `Unknown` is not a pass).
    pub fn passed(&self) -> bool {
        self.partitions
            .iter()
            .all(|p| matches!(p.verdict, Verdict::Linearizable { .. }))
    }
}

/// One operation as the search sees it.
#[derive(Debug)]
pub(crate) struct Call<'h, I, O> {
    pub(crate) id: OpId,
    pub(crate) input: &'h I,
    /// `None` for an unknown outcome.
    pub(crate) output: Option<&'h O>,
    pub(crate) invoke: u64,
    /// When it must have been placed by: `u64::MAX` for an unknown outcome.
    pub(crate) deadline: u64,
}

/// A [`Call`] of model `M`.
pub(crate) type ModelCall<'h, M> = Call<'h, <M as Model>::Input, <M as Model>::Output>;

// Not derived: a derive would ask `I: Clone, O: Clone`, but only the references are copied.
impl<I, O> Clone for Call<'_, I, O> {
    fn clone(&self) -> Self {
        Call { ..*self }
    }
}

impl<I, O> Call<'_, I, O> {
    /// Forget the answer: the operation may take effect later, or never.
    pub(crate) fn make_unknown(&mut self) {
        self.output = None;
        self.deadline = u64::MAX;
    }
}

/// Checks `history` against `model`, one partition per key, each within `budget`.
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    budget: &Budget,
) -> Report {
    let mut partitions: BTreeMap<&str, Vec<ModelCall<'_, M>>> = BTreeMap::new();
    for op in &history.ops {
        if matches!(op.outcome, Outcome::Fail(_)) {
            continue;
        }
        partitions.entry(&op.key).or_default().push(Call {
            id: op.id,
            input: &op.input,
            output: op.output(),
            invoke: op.invoke_ns,
            deadline: op.deadline_ns(),
        });
    }
    Report {
        partitions: partitions
            .into_iter()
            .map(|(key, calls)| check_partition(model, key, &calls, budget))
            .collect(),
    }
}

fn check_partition<M: Model>(
    model: &M,
    key: &str,
    calls: &[ModelCall<'_, M>],
    budget: &Budget,
) -> PartitionReport {
    let started = Instant::now();
    let limits = search::Limits {
        max_steps: budget.max_steps,
        deadline: started + budget.max_time,
    };
    let found = search::search(model, calls, &limits);
    let verdict = match found.outcome {
        search::Outcome::Linearizable { order } => Verdict::Linearizable { order },
        search::Outcome::Stuck { longest } => {
            let shrink_deadline = Instant::now() + budget.shrink_time;
            // A trial is a weaker history than the one just searched: allow it a few times the
            // steps that search took, so that hopeless trials are cut short.
            let trial_steps = found
                .steps
                .saturating_mul(4)
                .clamp(20_000, budget.max_steps);
            let witness = minimise::minimise(model, calls, trial_steps, shrink_deadline);
            Verdict::Violation(Violation {
                stuck: witness.stuck,
                ops: witness.ops,
                context: witness.context,
                minimal: witness.minimal,
                longest_linearization: longest,
            })
        }
        search::Outcome::GaveUp { reason } => Verdict::Unknown { reason },
    };
    PartitionReport {
        key: key.to_string(),
        ops: calls.len(),
        unknown_ops: calls.iter().filter(|c| c.output.is_none()).count(),
        steps: found.steps,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        verdict,
    }
}
