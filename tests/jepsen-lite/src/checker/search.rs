//! The Wing–Gong–Lowe search for one partition.
//!
//! The calls and returns of the `ok` operations form one list in time order (a call before a
//! return at the same time, so equal times overlap). At each point of the search, the operations
//! that may be placed next are the `ok` calls before the first return in the list (each was
//! invoked before any unplaced `ok` operation completed), and the unknown operations invoked by
//! the time of that return. The search tries them, `ok` ones first: when the model gives an
//! operation's recorded answer from the current state, it places it, takes it out of the lists
//! and starts again from the front. When no candidate is left, the last choice was wrong: it
//! undoes that choice and tries the next candidate after it. It succeeds when every `ok`
//! operation is placed, and fails when there is no choice left to undo.
//!
//! Why it is correct: it enumerates every order that respects real time, except orders it can
//! prove no better than one it also tries:
//! * two paths that placed the same set of operations and reached the same model state have the
//!   same future, so a (placed set, state) the search has left without success is not entered
//!   again (Lowe's memoisation; Porcupine's cache). Unknown operations sharpen this: a point with
//!   the same placed `ok` operations and state, but a superset of placed unknown ones, has fewer
//!   options, so it is not entered either;
//! * an `ok` read whose answer fits the current state may as well be placed now: it changes
//!   nothing, and placing it early only lets more operations follow it. So once one fits, the
//!   other candidates at that point are not tried (if the order that starts with the read fails,
//!   they all fail);
//! * an unknown operation need not be placed at all, and placing one that leaves the state as it
//!   is only takes options away (it never blocks anyone, its deadline being infinite), so such
//!   a placement is not tried; an unknown read is therefore never placed;
//! * unknown operations with equal inputs are interchangeable (none has a deadline, and any of
//!   them invoked by a point may be placed there), so they are placed in invoke order only:
//!   without this, ten timed-out deletes would be tried in every order.
//!
//! Why unknown operations are tried last and kept apart: a run has many of them (every timeout),
//! most took effect late or never, and an unknown operation is a candidate from its invoke to the
//! end. Trying them first would place each one as early as possible and then unwind it; kept in
//! a list of their own, in invoke order, they cost nothing until an `ok` answer needs one.

use super::{Call, ModelCall};
use crate::history::OpId;
use crate::model::Model;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

/// When to give up.
pub(crate) struct Limits {
    pub(crate) max_steps: u64,
    pub(crate) deadline: Instant,
}

/// What the search found.
pub(crate) enum Outcome {
    /// Every `ok` operation placed, in this order (with the unknown ones it needed).
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

/// A doubly linked list of nodes `1..=len` (0 is the head, `len + 1` the tail) with O(1) removal
/// and re-insertion in reverse order of removal (Knuth's dancing links).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(len: usize) -> Links {
        Links {
            next: (1..=len + 2).collect(),
            prev: (0..len + 2).map(|i| i.wrapping_sub(1)).collect(),
        }
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn is_tail(&self, node: usize) -> bool {
        node == self.next.len() - 1
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }
}

/// The calls and returns of the `ok` operations, in time order.
struct KnownEvents {
    links: Links,
    time: Vec<u64>,
    /// For each event: the call (index into the calls) it belongs to.
    call_of: Vec<usize>,
    /// For a call event: its return event; for a return event: `usize::MAX`.
    return_of: Vec<usize>,
}

impl KnownEvents {
    fn new<I, O>(calls: &[Call<'_, I, O>], known: &[usize]) -> KnownEvents {
        // (time, is_return, call): a call sorts before a return at the same time.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * known.len());
        for &i in known {
            order.push((calls[i].invoke, false, i));
            order.push((calls[i].deadline.max(calls[i].invoke), true, i));
        }
        order.sort_unstable();
        let len = order.len();
        let mut events = KnownEvents {
            links: Links::new(len),
            time: vec![0; len + 2],
            call_of: vec![usize::MAX; len + 2],
            return_of: vec![usize::MAX; len + 2],
        };
        let mut call_event = vec![0; calls.len()];
        for (pos, &(time, is_return, call)) in order.iter().enumerate() {
            let event = pos + 1;
            events.time[event] = time;
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

    /// Takes a placed operation's call and return out of the list.
    fn lift(&mut self, call: usize) {
        self.links.unlink(call);
        self.links.unlink(self.return_of[call]);
    }

    /// Undoes the last [`KnownEvents::lift`].
    fn unlift(&mut self, call: usize) {
        self.links.relink(self.return_of[call]);
        self.links.relink(call);
    }
}

/// The unknown operations that may change the state, in invoke order.
struct UnknownCalls {
    links: Links,
    invoke: Vec<u64>,
    call_of: Vec<usize>,
    /// For each node: the call of the unknown operation with an equal input invoked just
    /// before it, which must be placed first.
    after: Vec<Option<usize>>,
}

impl UnknownCalls {
    fn new<I: Eq + Hash, O>(calls: &[Call<'_, I, O>], unknown: &[usize]) -> UnknownCalls {
        let mut order: Vec<(u64, usize)> = unknown.iter().map(|&i| (calls[i].invoke, i)).collect();
        order.sort_unstable();
        let mut last_with_input: HashMap<&I, usize> = HashMap::new();
        let after = order
            .iter()
            .map(|&(_, i)| last_with_input.insert(calls[i].input, i));
        // Node k (1-based) is the k-th unknown operation by invoke time; 0 and the last are the
        // head and tail.
        let times = order.iter().map(|&(t, _)| t);
        let ids = order.iter().map(|&(_, i)| i);
        UnknownCalls {
            links: Links::new(order.len()),
            invoke: std::iter::once(0).chain(times).chain([u64::MAX]).collect(),
            call_of: std::iter::once(usize::MAX)
                .chain(ids)
                .chain([usize::MAX])
                .collect(),
            after: std::iter::once(None).chain(after).chain([None]).collect(),
        }
    }
}

/// Which operations are placed: a bit set, with a Zobrist fingerprint (the XOR of a fixed
/// pseudo-random word per placed operation) kept up to date in O(1), so that remembering a
/// placed set costs one word of hashing instead of n/64. Equality still compares the bits: the
/// fingerprint only picks the bucket, it never decides.
#[derive(Clone)]
struct Placed {
    bits: Vec<u64>,
    fingerprint: u64,
}

impl PartialEq for Placed {
    fn eq(&self, other: &Placed) -> bool {
        self.fingerprint == other.fingerprint && self.bits == other.bits
    }
}

impl Eq for Placed {}

impl Hash for Placed {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.fingerprint);
    }
}

/// A well-mixed word per operation index (SplitMix64), the same on every run.
fn zobrist(i: usize) -> u64 {
    let mut z = (i as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Placed {
    fn new(n: usize) -> Placed {
        Placed {
            bits: vec![0; n.div_ceil(64)],
            fingerprint: 0,
        }
    }

    fn with(&self, i: usize) -> Placed {
        let mut placed = self.clone();
        placed.bits[i / 64] |= 1 << (i % 64);
        placed.fingerprint ^= zobrist(i);
        placed
    }

    fn has(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn clear(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
        self.fingerprint ^= zobrist(i);
    }

    fn subset_of(&self, other: &Placed) -> bool {
        if self.fingerprint == other.fingerprint {
            return self.bits == other.bits;
        }
        let mut w = 0;
        while w < self.bits.len() {
            if self.bits[w] & !other.bits[w] != 0 {
                return false;
            }
            w += 1;
        }
        true
    }
}

/// Where the walk is: at an event of the `ok` list, or at an unknown operation (with the time of
/// the first `ok` return, after which no unknown operation is a candidate yet).
#[derive(Clone, Copy)]
enum Cursor {
    Known(usize),
    Unknown(usize, u64),
}

/// A placement, to undo: where it was made, the operation, the state before it, and whether it
/// was forced (a read that fits: the other candidates at that point need not be tried).
struct Choice<S> {
    at: Cursor,
    call: usize,
    before: S,
    forced: bool,
}

/// The longest partial order seen, kept in step with the stack at amortised O(1) per step
/// (copying the stack at every dead end would cost O(n) each).
#[derive(Default)]
struct Longest {
    calls: Vec<usize>,
    /// `calls[..common]` equals the calls of `stack[..common]`.
    common: usize,
}

impl Longest {
    fn observe<S>(&mut self, stack: &[Choice<S>]) {
        if stack.len() > self.calls.len() {
            self.calls.truncate(self.common);
            self.calls
                .extend(stack[self.common..].iter().map(|c| c.call));
            self.common = stack.len();
        }
    }

    fn popped(&mut self, depth: usize) {
        self.common = self.common.min(depth);
    }
}

/// What trying an operation at the current point gave.
enum Try<S> {
    /// Its answer does not fit, or (unknown) it would change nothing, or it is not its turn.
    No,
    /// It fits, but leads where the search already failed (or somewhere no better).
    Failed,
    /// It fits: the state after it.
    Placed(S),
}

/// The points the search has left without success, by (placed `ok` operations, state), each
/// with the sets of placed unknown operations it was left with.
type FailedPoints<S> = HashMap<(Placed, S), Vec<Placed>>;

/// The search state that a placement changes and a backtrack restores.
struct Search<'c, 'h, M: Model> {
    model: &'c M,
    calls: &'c [ModelCall<'h, M>],
    events: KnownEvents,
    pending: UnknownCalls,
    unplaced_ok: usize,
    placed_ok: Placed,
    placed_unknown: Placed,
    state: M::State,
    failed: FailedPoints<M::State>,
    stack: Vec<Choice<M::State>>,
    longest: Longest,
}

impl<M: Model> Search<'_, '_, M> {
    fn try_call(&mut self, i: usize) -> Try<M::State> {
        let call = &self.calls[i];
        let Some(next) = self.model.step(&self.state, call.input, call.output) else {
            return Try::No;
        };
        let (key, unknown_after) = if call.output.is_some() {
            ((self.placed_ok.with(i), next), self.placed_unknown.clone())
        } else if next == self.state {
            return Try::No;
        } else {
            ((self.placed_ok.clone(), next), self.placed_unknown.with(i))
        };
        // Having placed fewer unknown operations only leaves more options: a point left without
        // success with a subset of these placed is at least as good as this one.
        let no_better = self
            .failed
            .get(&key)
            .is_some_and(|sets| sets.iter().any(|failed| failed.subset_of(&unknown_after)));
        if no_better {
            Try::Failed
        } else {
            Try::Placed(key.1)
        }
    }

    fn push(&mut self, at: Cursor, call: usize, next: M::State, forced: bool) {
        let before = std::mem::replace(&mut self.state, next);
        self.stack.push(Choice {
            at,
            call,
            before,
            forced,
        });
        match at {
            Cursor::Known(e) => {
                self.placed_ok = self.placed_ok.with(call);
                self.events.lift(e);
                self.unplaced_ok -= 1;
            }
            Cursor::Unknown(u, _) => {
                self.placed_unknown = self.placed_unknown.with(call);
                self.pending.links.unlink(u);
            }
        }
    }

    /// Remembers that the current point leads nowhere. Only points the search has left are
    /// remembered, so a point is never pruned by one still being explored.
    fn mark_failed(&mut self) {
        let sets = self
            .failed
            .entry((self.placed_ok.clone(), self.state.clone()))
            .or_default();
        let now = &self.placed_unknown;
        if sets.iter().any(|old| old.subset_of(now)) {
            return;
        }
        sets.retain(|old| !now.subset_of(old));
        sets.push(now.clone());
    }

    /// Undoes choices up to the last one whose alternatives are still worth trying, and returns
    /// where to go on; `None` when there is none left.
    fn backtrack(&mut self) -> Option<Cursor> {
        self.longest.observe(&self.stack);
        loop {
            self.mark_failed();
            let choice = self.stack.pop()?;
            self.longest.popped(self.stack.len());
            self.state = choice.before;
            let resume = match choice.at {
                Cursor::Known(e) => {
                    self.placed_ok.clear(choice.call);
                    self.events.unlift(e);
                    self.unplaced_ok += 1;
                    Cursor::Known(self.events.links.next[e])
                }
                Cursor::Unknown(u, frontier) => {
                    self.placed_unknown.clear(choice.call);
                    self.pending.links.relink(u);
                    Cursor::Unknown(self.pending.links.next[u], frontier)
                }
            };
            if !choice.forced {
                return Some(resume);
            }
        }
    }

    fn ids(&self, order: impl Iterator<Item = usize>) -> Vec<OpId> {
        order.map(|i| self.calls[i].id).collect()
    }
}

/// Searches for a linearization of `calls` (one partition).
pub(crate) fn search<M: Model>(model: &M, calls: &[ModelCall<'_, M>], limits: &Limits) -> Found {
    let known: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].output.is_some())
        .collect();
    let unknown: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].output.is_none() && !model.is_read_only(calls[i].input))
        .collect();
    let mut s = Search {
        model,
        calls,
        events: KnownEvents::new(calls, &known),
        pending: UnknownCalls::new(calls, &unknown),
        unplaced_ok: known.len(),
        placed_ok: Placed::new(calls.len()),
        placed_unknown: Placed::new(calls.len()),
        state: model.init(),
        failed: HashMap::new(),
        stack: Vec::new(),
        longest: Longest::default(),
    };
    let mut steps: u64 = 0;
    let mut cursor = Cursor::Known(s.events.links.first());
    loop {
        if s.unplaced_ok == 0 {
            let order = s.ids(s.stack.iter().map(|c| c.call));
            return Found {
                outcome: Outcome::Linearizable { order },
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
        let dead_end = match cursor {
            Cursor::Known(e) if !s.events.is_call(e) => {
                // The first return: now the unknown operations invoked by then.
                cursor = Cursor::Unknown(s.pending.links.first(), s.events.time[e]);
                false
            }
            Cursor::Known(e) => {
                let i = s.events.call_of[e];
                let read = model.is_read_only(calls[i].input);
                match s.try_call(i) {
                    Try::Placed(next) => {
                        s.push(cursor, i, next, read);
                        cursor = Cursor::Known(s.events.links.first());
                        false
                    }
                    // A read that fits was already explored from here, and any order from here
                    // could start with it: nothing from here works.
                    Try::Failed if read => true,
                    Try::Failed | Try::No => {
                        cursor = Cursor::Known(s.events.links.next[e]);
                        false
                    }
                }
            }
            Cursor::Unknown(u, frontier)
                if !s.pending.links.is_tail(u) && s.pending.invoke[u] <= frontier =>
            {
                let i = s.pending.call_of[u];
                let its_turn =
                    s.pending.after[u].is_none_or(|earlier| s.placed_unknown.has(earlier));
                match if its_turn { s.try_call(i) } else { Try::No } {
                    Try::Placed(next) => {
                        s.push(cursor, i, next, false);
                        cursor = Cursor::Known(s.events.links.first());
                    }
                    Try::Failed | Try::No => {
                        cursor = Cursor::Unknown(s.pending.links.next[u], frontier);
                    }
                }
                false
            }
            Cursor::Unknown(..) => true,
        };
        if dead_end {
            match s.backtrack() {
                Some(resume) => cursor = resume,
                None => {
                    let longest = s.ids(s.longest.calls.iter().copied());
                    return Found {
                        outcome: Outcome::Stuck { longest },
                        steps,
                    };
                }
            }
        }
    }
}

fn gave_up(reason: String, steps: u64) -> Found {
    Found {
        outcome: Outcome::GaveUp { reason },
        steps,
    }
}
