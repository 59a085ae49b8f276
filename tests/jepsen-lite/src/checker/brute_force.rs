//! The reference the checker is tested against: tries every order of the whole history (all
//! keys together, so the per-key split is tested too) that real time allows, placing or leaving
//! out each unknown operation. Exponential; only for histories of a few operations.

use crate::history::{History, Op, Outcome};
use crate::model::Model;
use std::collections::BTreeMap;

/// True iff some order of the history's operations (`fail` ones left out, unknown ones placed
/// or left out) respects real time and gets every `ok` answer from the model.
pub(crate) fn linearizable<M: Model>(model: &M, history: &History<M::Input, M::Output>) -> bool {
    let ops: Vec<&Op<M::Input, M::Output>> = history
        .ops
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Fail(_)))
        .collect();
    let mut placed = vec![false; ops.len()];
    place_rest(model, &ops, &mut placed, &mut BTreeMap::new())
}

fn place_rest<M: Model>(
    model: &M,
    ops: &[&Op<M::Input, M::Output>],
    placed: &mut [bool],
    states: &mut BTreeMap<String, M::State>,
) -> bool {
    let unplaced = |i: usize, placed: &[bool]| !placed[i];
    if (0..ops.len()).all(|i| !unplaced(i, placed) || !ops[i].is_ok()) {
        return true;
    }
    for i in 0..ops.len() {
        if !unplaced(i, placed) {
            continue;
        }
        // `i` may go next only if no unplaced `ok` operation completed before it was invoked.
        let blocked = (0..ops.len()).any(|j| {
            unplaced(j, placed)
                && ops[j].is_ok()
                && ops[j].complete_ns.expect("ok has a completion") < ops[i].invoke_ns
        });
        if blocked {
            continue;
        }
        let key = &ops[i].key;
        let before = states.get(key).cloned().unwrap_or_else(|| model.init());
        let (after, answer) = model.apply(&before, &ops[i].input);
        if let Some(seen) = ops[i].output() {
            if *seen != answer {
                continue;
            }
        }
        placed[i] = true;
        states.insert(key.clone(), after);
        if place_rest(model, ops, placed, states) {
            return true;
        }
        placed[i] = false;
        states.insert(key.clone(), before);
    }
    false
}
