//! Shrinks a non-linearizable partition into a small witness, for the report to draw.
//!
//! Every step keeps the witness honest: it only ever *weakens* the history (anything the
//! original satisfies, the weaker one satisfies too), and keeps a weakening only if the search
//! still proves it not linearizable. So the witness being not linearizable proves the original
//! is not. Two weakenings are used:
//!
//! 1. **Cut at a time `t`**: keep the operations invoked by `t`; those that completed after `t`
//!    become unknown. A linearization of the whole history, cut at `t`, is one of the prefix
//!    (every kept `ok` operation precedes every dropped one in real time, and unknown ones may
//!    be left out), so the smallest `t` whose cut is not linearizable is found by binary search
//!    over the `ok` completion times.
//! 2. **Forget an answer**: an `ok` operation becomes unknown (it may take effect at any later
//!    time, or never), or, for a read, is left out, which is the same thing for an operation
//!    that changes nothing. Answers are forgotten a block at a time, latest completion first,
//!    and a block that cannot be forgotten whole is split in halves; the answers that cannot be
//!    forgotten one by one are the witness, and the one of them completing at `t` is the
//!    operation that could not be placed.
//!
//! A search that runs out of budget counts as "maybe linearizable", so the weakening is not
//! kept: the witness can only be larger than needed, never wrong.

use super::search::{self, Limits, Outcome};
use super::{Call, ModelCall};
use crate::history::OpId;
use crate::model::Model;
use std::time::Instant;

/// The witness for [`super::Violation`].
pub(crate) struct Witness {
    pub(crate) stuck: OpId,
    pub(crate) ops: Vec<OpId>,
    pub(crate) context: Vec<OpId>,
    pub(crate) minimal: bool,
}

/// Shrinks `calls`, which the search found not linearizable, giving each trial search
/// `trial_steps` (a trial that needs more keeps its operations in the witness).
pub(crate) fn minimise<M: Model>(
    model: &M,
    calls: &[ModelCall<'_, M>],
    trial_steps: u64,
    deadline: Instant,
) -> Witness {
    let limits = Limits {
        max_steps: trial_steps,
        deadline,
    };
    let gave_up = std::cell::Cell::new(false);
    let not_linearizable = |calls: &[ModelCall<'_, M>]| -> bool {
        match search::search(model, calls, &limits).outcome {
            Outcome::Stuck { .. } => true,
            Outcome::Linearizable { .. } => false,
            Outcome::GaveUp { .. } => {
                gave_up.set(true);
                false
            }
        }
    };

    // 1. The smallest cut that is not linearizable. The last one is the whole history (less
    //    unknown operations invoked after every `ok` completion, which may be left out).
    let mut cuts: Vec<u64> = calls
        .iter()
        .filter(|c| c.output.is_some())
        .map(|c| c.deadline)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut lo, mut hi) = (0, cuts.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if not_linearizable(&cut(calls, cuts[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let t = cuts[hi];
    let mut witness = cut(calls, t);
    // 2. Forget answers, latest completion first, a block at a time: most answers can be
    //    forgotten, so a whole block usually goes in one trial, and only a block that cannot
    //    is split in halves (as in delta debugging).
    let mut candidates: Vec<&ModelCall<'_, M>> =
        witness.iter().filter(|c| c.output.is_some()).collect();
    // Reads first: leaving them out adds no unknown operation to the search, so their trials
    // are cheap, and with them gone the writes' trials are cheaper too.
    candidates.sort_by_key(|c| (!model.is_read_only(c.input), std::cmp::Reverse(c.deadline)));
    let candidates: Vec<OpId> = candidates.iter().map(|c| c.id).collect();
    let mut blocks: Vec<&[OpId]> = vec![&candidates];
    while let Some(block) = blocks.pop() {
        if Instant::now() > deadline {
            gave_up.set(true);
            break;
        }
        let trial: Vec<ModelCall<'_, M>> = witness
            .iter()
            .filter(|c| !(block.contains(&c.id) && model.is_read_only(c.input)))
            .map(|c| {
                let mut c = c.clone();
                if block.contains(&c.id) {
                    c.make_unknown();
                }
                c
            })
            .collect();
        if not_linearizable(&trial) {
            witness = trial;
        } else if block.len() > 1 {
            let (near, far) = block.split_at(block.len() / 2);
            blocks.push(far);
            blocks.push(near);
        }
    }

    let mut ops: Vec<&ModelCall<'_, M>> = witness.iter().filter(|c| c.output.is_some()).collect();
    ops.sort_by_key(|c| (c.invoke, c.id));
    // Its latest completion is `t`: were they all earlier, an earlier cut would not be
    // linearizable either.
    let stuck = ops
        .iter()
        .max_by_key(|c| (c.deadline, std::cmp::Reverse(c.id)))
        .expect("a witness that is not linearizable has an ok operation")
        .id;
    let ops: Vec<OpId> = ops.iter().map(|c| c.id).collect();
    let mut context: Vec<OpId> = calls
        .iter()
        .filter(|c| c.invoke <= t && !ops.contains(&c.id))
        .map(|c| c.id)
        .collect();
    context.sort_unstable();
    Witness {
        stuck,
        ops,
        context,
        minimal: !gave_up.get(),
    }
}

/// The history as it stood at time `t`: operations invoked by `t`, those not completed by `t`
/// made unknown.
fn cut<'h, I, O>(calls: &[Call<'h, I, O>], t: u64) -> Vec<Call<'h, I, O>> {
    calls
        .iter()
        .filter(|c| c.invoke <= t)
        .map(|c| {
            let mut c = c.clone();
            if c.deadline > t {
                c.make_unknown();
            }
            c
        })
        .collect()
}
