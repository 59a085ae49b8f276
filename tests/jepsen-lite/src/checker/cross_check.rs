//! The checker against the brute force, on thousands of small random histories.
//!
//! Each history comes from a real sequential execution: every operation gets an interval and a
//! linearization point inside it, the model runs the operations in point order, and the answers
//! are recorded; some operations end unknown (half of them took effect, maybe after the client
//! gave up) or failed (did not).
//! Most histories are then corrupted (a wrong answer, a moved interval, an applied
//! operation reported failed, two answers swapped), so both verdicts occur often. The checker
//! must agree with the brute force on every one, its linearizations must replay, and every
//! witness it gives for a violation must itself be rejected by the brute force.

use super::{Budget, Verdict, Violation, brute_force, check};
use crate::history::{History, Op, OpId, Outcome};
use crate::model::{AuthInput, AuthOutput, KeyInput, KeyOutput, KeyRegister, Model, Revocation};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// A model with random inputs and the answers each input can plausibly get.
trait Workload: Model<Input: Clone, Output: Clone> {
    fn random_input(&self, rng: &mut StdRng) -> Self::Input;
    fn plausible_answers(&self, input: &Self::Input) -> Vec<Self::Output>;
}

/// A small pool of materials, so that imports collide and reads can see an old value.
const MATERIALS: [&str; 3] = ["m1", "m2", "m3"];

impl Workload for KeyRegister {
    fn random_input(&self, rng: &mut StdRng) -> KeyInput {
        let m = MATERIALS.choose(rng).expect("materials").to_string();
        match rng.random_range(0..13) {
            0..=2 => KeyInput::Import(m),
            3..=4 => KeyInput::Describe,
            5 => KeyInput::Generate,
            6..=7 => KeyInput::Decrypt(m),
            8 => KeyInput::Rotate,
            9 => KeyInput::MinVersion(*[0, 2].choose(rng).expect("minimums")),
            10 => KeyInput::Retire(2),
            _ => KeyInput::Delete,
        }
    }

    fn plausible_answers(&self, input: &KeyInput) -> Vec<KeyOutput> {
        match input {
            KeyInput::Import(_) => vec![KeyOutput::Created, KeyOutput::AlreadyExists],
            KeyInput::Describe => MATERIALS
                .iter()
                .map(|m| KeyOutput::Found(m.to_string()))
                .chain([KeyOutput::NotFound])
                .collect(),
            KeyInput::Generate | KeyInput::Delete => vec![KeyOutput::Done, KeyOutput::NotFound],
            KeyInput::Decrypt(_) => vec![KeyOutput::Done, KeyOutput::WrongKey, KeyOutput::NotFound],
            KeyInput::Rotate => (2..=4)
                .map(KeyOutput::Rotated)
                .chain([KeyOutput::Refused, KeyOutput::NotFound])
                .collect(),
            KeyInput::MinVersion(_) => {
                vec![KeyOutput::Done, KeyOutput::Refused, KeyOutput::NotFound]
            }
            KeyInput::Retire(_) => {
                vec![
                    KeyOutput::Retired(2),
                    KeyOutput::Refused,
                    KeyOutput::NotFound,
                ]
            }
        }
    }
}

impl Workload for Revocation {
    fn random_input(&self, rng: &mut StdRng) -> AuthInput {
        let grant = ["p", "q"].choose(rng).expect("grants").to_string();
        match rng.random_range(0..5) {
            0 => AuthInput::Grant(grant),
            1 => AuthInput::Revoke(grant),
            _ => AuthInput::Request(grant),
        }
    }

    fn plausible_answers(&self, input: &AuthInput) -> Vec<AuthOutput> {
        match input {
            AuthInput::Request(_) => vec![AuthOutput::Allowed, AuthOutput::Denied],
            _ => vec![AuthOutput::Done],
        }
    }
}

/// One planned operation: its interval, and its linearization point if it takes effect.
struct Planned<I> {
    key: String,
    input: I,
    invoke: u64,
    complete: u64,
    point: Option<(u64, u64)>,
    known: bool,
}

/// The shape of the random histories.
#[derive(Clone, Copy)]
struct Shape {
    /// At most this many operations.
    max_ops: usize,
    /// Percent of operations with an unknown outcome (half of them took effect); 15 % fail,
    /// the rest are `ok`.
    unknown_pct: u32,
}

/// A history from a real execution, maybe corrupted.
fn random_history<W: Workload>(
    w: &W,
    rng: &mut StdRng,
    shape: Shape,
) -> History<W::Input, W::Output> {
    let keys = ["a", "b"];
    let keys = &keys[..rng.random_range(1..=2)];
    let planned: Vec<Planned<W::Input>> = (0..rng.random_range(2..=shape.max_ops))
        .map(|_| {
            let invoke = rng.random_range(0..24);
            let point = invoke + rng.random_range(0..=3);
            let complete = point + rng.random_range(0..=3);
            let roll = rng.random_range(0..100);
            let (known, applied) = if roll < shape.unknown_pct {
                (false, rng.random_bool(0.5))
            } else {
                (true, roll < 85)
            };
            Planned {
                key: keys.choose(rng).expect("keys").to_string(),
                input: w.random_input(rng),
                invoke,
                complete,
                point: applied.then(|| (point, rng.random())),
                known,
            }
        })
        .collect();

    // Run the operations that take effect in point order (ties broken at random).
    let mut by_point: Vec<usize> = (0..planned.len())
        .filter(|&i| planned[i].point.is_some())
        .collect();
    by_point.sort_by_key(|&i| planned[i].point);
    let mut states: BTreeMap<&str, W::State> = BTreeMap::new();
    let mut answers: BTreeMap<usize, W::Output> = BTreeMap::new();
    for i in by_point {
        let state = states
            .entry(planned[i].key.as_str())
            .or_insert_with(|| w.init());
        let (next, answer) = w.apply(state, &planned[i].input);
        *state = next;
        answers.insert(i, answer);
    }

    let mut history = History::new();
    for (i, p) in planned.iter().enumerate() {
        let (complete, outcome) = match (p.known, answers.remove(&i)) {
            (true, Some(answer)) => (Some(p.complete), Outcome::Ok(answer)),
            (true, None) => (Some(p.complete), Outcome::Fail("not applied".into())),
            // The client may give up before the operation takes effect, or never hear back.
            (false, _) => (
                rng.random_bool(0.7)
                    .then(|| rng.random_range(p.invoke..=p.complete)),
                Outcome::Info("unknown".into()),
            ),
        };
        history.push(
            i as u64 % 3,
            p.key.clone(),
            p.input.clone(),
            p.invoke,
            complete,
            outcome,
        );
    }
    if rng.random_bool(0.7) {
        for _ in 0..rng.random_range(1..=2) {
            corrupt(w, rng, &mut history);
        }
    }
    history
}

fn corrupt<W: Workload>(w: &W, rng: &mut StdRng, history: &mut History<W::Input, W::Output>) {
    let ok: Vec<OpId> = history
        .ops
        .iter()
        .filter(|o| o.is_ok())
        .map(|o| o.id)
        .collect();
    let Some(&victim) = ok.choose(rng) else {
        return;
    };
    match rng.random_range(0..4) {
        0 => {
            // A wrong answer, on an operation that has more than one possible answer.
            let wrong_answers = |op: &Op<W::Input, W::Output>| -> Vec<W::Output> {
                let mut answers = w.plausible_answers(&op.input);
                answers.retain(|a| op.output() != Some(a));
                answers
            };
            let answerable: Vec<OpId> = ok
                .iter()
                .copied()
                .filter(|&id| !wrong_answers(&history.ops[id]).is_empty())
                .collect();
            if let Some(&id) = answerable.choose(rng) {
                let wrong = wrong_answers(&history.ops[id]);
                history.ops[id].outcome = Outcome::Ok(wrong.choose(rng).expect("answers").clone());
            }
        }
        1 => {
            let op = &mut history.ops[victim];
            op.invoke_ns = rng.random_range(0..28);
            op.complete_ns = Some(op.invoke_ns + rng.random_range(0..=4));
        }
        2 => history.ops[victim].outcome = Outcome::Fail("reported failed, yet applied".into()),
        _ => {
            let other = *ok.choose(rng).expect("victim is ok");
            let a = history.ops[victim].outcome.clone();
            history.ops[victim].outcome = history.ops[other].outcome.clone();
            history.ops[other].outcome = a;
        }
    }
}

/// Replays a linearization the checker gave: real time respected, every `ok` answer matched,
/// every `ok` operation of the partition present.
fn assert_order_replays<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    key: &str,
    order: &[OpId],
) {
    let mut state = model.init();
    for (pos, &id) in order.iter().enumerate() {
        let op = &history.ops[id];
        assert_eq!(op.key, key);
        for &later in &order[pos + 1..] {
            let later = &history.ops[later];
            assert!(
                !(later.is_ok() && later.deadline_ns() < op.invoke_ns),
                "order breaks real time"
            );
        }
        state = model
            .step(&state, &op.input, op.output())
            .expect("order replays with the recorded answers");
    }
    for op in history.ops.iter().filter(|o| o.key == key && o.is_ok()) {
        assert!(
            order.contains(&op.id),
            "ok op {} missing from the order",
            op.id
        );
    }
}

/// The witness as a history of its own: its `ok` ops as recorded, its context unknown.
fn witness_history<I: Clone, O: Clone>(
    history: &History<I, O>,
    ops: &[OpId],
    context: &[OpId],
) -> History<I, O> {
    let mut witness = History::new();
    for op in &history.ops {
        let outcome = if ops.contains(&op.id) {
            op.outcome.clone()
        } else if context.contains(&op.id) {
            Outcome::Info("context".into())
        } else {
            continue;
        };
        witness.push(
            op.process,
            op.key.clone(),
            op.input.clone(),
            op.invoke_ns,
            op.complete_ns,
            outcome,
        );
    }
    witness
}

/// A witness proves the partition wrong only if it is a weakening of it: its `ok` operations
/// keep their answers, its context becomes unknown, and an operation left out is either a read
/// or was invoked after every witness operation completed (a cut).
fn assert_witness_weakens<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    key: &str,
    v: &Violation,
) {
    let cut = v
        .ops
        .iter()
        .map(|&id| history.ops[id].deadline_ns())
        .max()
        .expect("a witness has ops");
    for op in history.ops.iter().filter(|o| o.key == key && !o.is_fail()) {
        if v.ops.contains(&op.id) {
            assert!(op.is_ok(), "witness op {} has no answer", op.id);
        } else if !v.context.contains(&op.id) {
            assert!(
                model.is_read_only(&op.input) || op.invoke_ns > cut,
                "op {} left out of the witness, yet it may have changed the state by {cut}",
                op.id
            );
        }
    }
}

/// Checks `count` random histories; returns (linearizable, not linearizable).
fn cross_check<W: Workload>(w: &W, seed: u64, count: u64, shape: Shape) -> (u64, u64) {
    let (mut good, mut bad) = (0, 0);
    for case in 0..count {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(case));
        let history = random_history(w, &mut rng, shape);
        let expected = brute_force::linearizable(w, &history);
        let report = check(w, &history, &Budget::default());
        let context = || format!("seed {seed} case {case}: {:#?}", history.ops);
        assert_eq!(
            report.passed(),
            expected,
            "verdict differs from brute force, {}",
            context()
        );
        for p in &report.partitions {
            match &p.verdict {
                Verdict::Linearizable { order } => assert_order_replays(w, &history, &p.key, order),
                Verdict::Violation(v) => {
                    assert!(v.minimal, "{}", context());
                    assert!(v.ops.contains(&v.stuck), "{}", context());
                    assert_witness_weakens(w, &history, &p.key, v);
                    let with_context = witness_history(&history, &v.ops, &v.context);
                    assert!(
                        !brute_force::linearizable(w, &with_context),
                        "witness {v:?}, {}",
                        context()
                    );
                    let alone = witness_history(&history, &v.ops, &[]);
                    assert!(
                        !brute_force::linearizable(w, &alone),
                        "witness {v:?}, {}",
                        context()
                    );
                }
                Verdict::Unknown { reason } => panic!("gave up ({reason}), {}", context()),
            }
        }
        if expected {
            good += 1;
        } else {
            bad += 1;
        }
    }
    (good, bad)
}

fn assert_both_verdicts_common(good: u64, bad: u64) {
    let total = good + bad;
    assert!(
        good * 5 > total && bad * 5 > total,
        "{good} linearizable, {bad} not: the generator is lopsided"
    );
}

/// A fifth of the operations unknown, as in a run with faults.
const TYPICAL: Shape = Shape {
    max_ops: 8,
    unknown_pct: 20,
};

/// Most operations unknown: many unknown operations placed, or not, at the same point, which
/// is where the search prunes hardest.
const MOSTLY_UNKNOWN: Shape = Shape {
    max_ops: 8,
    unknown_pct: 60,
};

#[test]
fn key_register_with_many_unknown_outcomes_agrees_with_brute_force() {
    let (good, bad) = cross_check(&KeyRegister, 0x756e_6b6e, 5000, MOSTLY_UNKNOWN);
    eprintln!("key register, mostly unknown: {good} linearizable, {bad} not");
    assert!(bad * 10 > good + bad, "{good} linearizable, {bad} not");
}

#[test]
fn key_register_agrees_with_brute_force() {
    let (good, bad) = cross_check(&KeyRegister, 0x6b65_7331, 10_000, TYPICAL);
    eprintln!("key register: {good} linearizable, {bad} not");
    assert_both_verdicts_common(good, bad);
}

#[test]
fn revocation_agrees_with_brute_force() {
    let (good, bad) = cross_check(&Revocation, 0x7265_766b, 5000, TYPICAL);
    eprintln!("revocation: {good} linearizable, {bad} not");
    assert_both_verdicts_common(good, bad);
}
