//! The Wing–Gong–Lowe search for one partition.
//!
//! The calls and returns of the operations form one list in time order (a call before a return
//! at the same time, so equal times overlap). The search walks the list from the front: at a
//! call, it tries to place that operation next (the model must give its recorded answer); if it
//! can, it takes the operation's call and return out of the list and starts again from the
//! front. Reaching a return means the operation it belongs to was not placed before it
//! completed, so the last choice was wrong: it undoes that choice and tries the next call after
//! it. The search succeeds when every `ok` operation is placed, and fails when there is no
//! choice left to undo.
//!
//! Why it is correct: at any point, the calls before the first return in the list are exactly
//! the operations that may be placed next (each was invoked before any unplaced operation
//! completed), so the search enumerates every linearization, and an operation whose return it
//! passes cannot be placed later. `info` operations have their return at infinity, after every
//! `ok` return, so they never block and are simply left unplaced when the search succeeds.
//!
//! Why it is fast enough: two paths that placed the same set of operations and reached the same
//! model state have the same future, so the pair (placed set, state) is remembered and never
//! explored twice (Lowe's memoisation; Porcupine's cache).

use super::{Call, ModelCall};
use crate::history::OpId;
use crate::model::Model;
use std::collections::HashSet;
use std::time::Instant;

/// When to give up.
pub(crate) struct Limits {
    pub(crate) max_steps: u64,
    pub(crate) deadline: Instant,
}

/// What the search found.
pub(crate) enum Outcome {
    /// Every `ok` operation placed, in this order.
    Linearizable { order: Vec<OpId> },
    /// No order exists; `longest` is the longest partial order the search reached.
    Stuck { longest: Vec<OpId> },
    /// A limit was reached first.
    GaveUp { reason: String },
}

pub(crate) struct Found {
    pub(crate) outcome: Outcome,
    pub(crate) steps: u64,
}

/// How often (in steps) the wall clock is read.
const CLOCK_EVERY: u64 = 1024;

/// The time-ordered list of calls and returns, with O(1) removal and LIFO re-insertion
/// (Knuth's dancing links): index 0 is the head, `len - 1` the tail.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each event: the call it belongs to (index into the calls).
    call_of: Vec<usize>,
    /// For each call event: its return event; for a return event: `usize::MAX`.
    return_of: Vec<usize>,
}

impl Events {
    const HEAD: usize = 0;

    fn new<I, O>(calls: &[Call<'_, I, O>]) -> Events {
        // (time, is_return, call): a call sorts before a return at the same time.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * calls.len());
        for (i, c) in calls.iter().enumerate() {
            order.push((c.invoke, false, i));
            order.push((c.deadline.max(c.invoke), true, i));
        }
        order.sort_unstable();
        let len = order.len() + 2;
        let mut events = Events {
            next: (1..=len).collect(),
            prev: (0..len).map(|i| i.wrapping_sub(1)).collect(),
            call_of: vec![usize::MAX; len],
            return_of: vec![usize::MAX; len],
        };
        let mut call_event = vec![0; calls.len()];
        for (pos, &(_, is_return, call)) in order.iter().enumerate() {
            let event = pos + 1;
            events.call_of[event] = call;
            if is_return {
                events.return_of[call_event[call]] = event;
            } else {
                call_event[call] = event;
            }
        }
        events
    }

    fn is_call(&self, event: usize) -> bool {
        self.return_of[event] != usize::MAX
    }

    fn is_tail(&self, event: usize) -> bool {
        event == self.next.len() - 1
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    /// Takes a placed operation's call and return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.return_of[call]);
    }

    /// Undoes the last [`Events::lift`] (must be called in reverse order of the lifts).
    fn unlift(&mut self, call: usize) {
        self.relink(self.return_of[call]);
        self.relink(call);
    }
}

/// Which operations are placed, as a hashable bit set.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(n: usize) -> Placed {
        Placed(vec![0; n.div_ceil(64)])
    }

    fn with(&self, i: usize) -> Placed {
        let mut bits = self.clone();
        bits.0[i / 64] |= 1 << (i % 64);
        bits
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Searches for a linearization of `calls` (one partition).
pub(crate) fn search<M: Model>(model: &M, calls: &[ModelCall<'_, M>], limits: &Limits) -> Found {
    let mut events = Events::new(calls);
    let mut unplaced_ok = calls.iter().filter(|c| c.output.is_some()).count();
    let mut placed = Placed::new(calls.len());
    let mut state = model.init();
    let mut seen: HashSet<(Placed, M::State)> = HashSet::new();
    // The choices made so far: the call event placed, and the state before it.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<OpId> = Vec::new();
    let mut steps: u64 = 0;
    let mut event = events.next[Events::HEAD];
    let order_of = |stack: &[(usize, M::State)], events: &Events| -> Vec<OpId> {
        stack
            .iter()
            .map(|&(e, _)| calls[events.call_of[e]].id)
            .collect()
    };
    loop {
        if unplaced_ok == 0 {
            return Found {
                outcome: Outcome::Linearizable {
                    order: order_of(&stack, &events),
                },
                steps,
            };
        }
        steps += 1;
        if steps > limits.max_steps {
            return gave_up(format!("step budget of {} spent", limits.max_steps), steps);
        }
        if steps % CLOCK_EVERY == 0 && Instant::now() > limits.deadline {
            return gave_up("time budget spent".to_string(), steps);
        }
        // An `ok` return is still in the list, and the walk stops at the first return.
        debug_assert!(!events.is_tail(event), "walked past every return");
        if events.is_call(event) {
            let i = events.call_of[event];
            let call = &calls[i];
            if let Some(next) = model.step(&state, call.input, call.output) {
                let now_placed = placed.with(i);
                if seen.insert((now_placed.clone(), next.clone())) {
                    stack.push((event, std::mem::replace(&mut state, next)));
                    placed = now_placed;
                    events.lift(event);
                    if call.output.is_some() {
                        unplaced_ok -= 1;
                    }
                    event = events.next[Events::HEAD];
                    continue;
                }
            }
            event = events.next[event];
        } else {
            // The operation returning here was never placed: undo the last choice.
            if stack.len() >= longest.len() {
                longest = order_of(&stack, &events);
            }
            let Some((call_event, before)) = stack.pop() else {
                return Found {
                    outcome: Outcome::Stuck { longest },
                    steps,
                };
            };
            let i = events.call_of[call_event];
            state = before;
            placed.clear(i);
            if calls[i].output.is_some() {
                unplaced_ok += 1;
            }
            events.unlift(call_event);
            event = events.next[call_event];
        }
    }
}

fn gave_up(reason: String, steps: u64) -> Found {
    Found {
        outcome: Outcome::GaveUp { reason },
        steps,
    }
}
