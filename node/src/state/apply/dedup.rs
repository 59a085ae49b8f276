//! Deduplication of retried writes: request id → the first outcome, for a window of log
//! indexes.
//!
//! Two trees hold it: `requests` (request id → (index, outcome)) and `request_log` ((index,
//! position in the entry) → request id, big-endian, so it sorts by index). Each command applied
//! for the first time adds one record to each, and the same write sweeps every record at
//! an index `<= i - window` (at most [`SWEEP_LIMIT`] of them), so:
//!
//! - **Bounded:** after a command lands at index `i`, the table holds ids of indexes in
//!   `(i - window, i]`: one per command of those entries (a group-committed entry holds several).
//!   Entries without a request id (blanks, membership changes, retries) add nothing, so nothing
//!   can outgrow a sweep.
//! - **Retries inside the window still dedup:** the record made at `i` goes only in a sweep at
//!   some index `k >= i + window`, and every lookup at `k` runs before `k`'s own sweep, so a
//!   retry at any index `<= i + window` finds the first outcome.
//! - **Deterministic:** a lookup ignores a record older than the window even if it is still
//!   there, so whether a record has been swept yet never changes an outcome. (Versions before
//!   the position was part of the `request_log` key kept one record per index, so every other
//!   command of a group-committed entry left a `requests` record that no sweep finds;
//!   [`State::forget_expired_requests`] removes those.)
//! - **O(removed):** the expired records are one contiguous range at the front of
//!   `request_log`, read in order; nothing else is visited.
//!
//! Data dirs written before the sweep existed may hold records that an older version failed to
//! free; the limit drains them a batch per command rather than in one giant transaction.

use super::super::command::Outcome;
use super::super::store::{State, StateError, get};
use super::journal::Change;
use sled::IVec;

/// How many log indexes a request id is remembered for. A client retry arrives within
/// seconds, so this window is far larger than any retry can lag.
pub(super) const DEDUP_WINDOW: u64 = 100_000;

/// At most this many expired records are swept per command. In steady state one expires per
/// command (a few more after a run of blank entries); the limit only bounds the first sweeps
/// over a backlog left by an older version.
const SWEEP_LIMIT: usize = 256;

/// Request records that fell out of the window: (`request_log` key, request id).
pub(super) type Expired = Vec<(IVec, IVec)>;

impl State {
    /// The outcome a request id got when it was first applied, if that was inside the window
    /// of a command applied at `index`.
    pub(super) fn first_outcome(
        &self,
        request_id: &[u8],
        index: u64,
        window: u64,
    ) -> Result<Option<Outcome>, StateError> {
        Ok(
            get::<(u64, Outcome)>(&self.requests, "requests", request_id)?
                .filter(|(at, _)| at.saturating_add(window) >= index)
                .map(|(_, o)| o),
        )
    }

    /// Removes every `requests` record older than the window at the applied index, in batches
    /// (O(records), once per start). Those are records no lookup uses any more, left by a
    /// version that swept only one command per group-committed entry.
    pub fn forget_expired_requests(&self) -> Result<usize, StateError> {
        self.forget_expired_requests_in(DEDUP_WINDOW)
    }

    /// [`State::forget_expired_requests`] for a window of `window` indexes.
    pub(super) fn forget_expired_requests_in(&self, window: u64) -> Result<usize, StateError> {
        let Some(last) = self.applied_index().checked_sub(window) else {
            return Ok(0);
        };
        // This runs beside Raft and keeps no pre-images: each batch is removed while no
        // snapshot dump runs (`dump_view.rs`).
        let remove = |batch: sled::Batch| {
            self.dump_view
                .without_dump(|| self.requests.apply_batch(batch))
        };
        let mut removed = 0;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for kv in self.requests.iter() {
            let (id, record) = kv?;
            let (at, _) = super::super::store::decode::<(u64, Outcome)>("requests", &record)?;
            if at <= last {
                batch.remove(id);
                in_batch += 1;
            }
            if in_batch == SWEEP_LIMIT {
                remove(std::mem::take(&mut batch))?;
                removed += in_batch;
                in_batch = 0;
            }
        }
        remove(batch)?;
        Ok(removed + in_batch)
    }

    /// The records a command applied at `index` sweeps: those at indexes `<= index - window`.
    pub(super) fn expired_requests(&self, index: u64, window: u64) -> Result<Expired, StateError> {
        let Some(last) = index.checked_sub(window) else {
            return Ok(Vec::new());
        };
        // Keys are (index, position) now, and were the index alone before: every key of
        // either shape at an index `<= last` sorts before `last + 1`.
        let Some(end) = last.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in self
            .request_log
            .range(..end.to_be_bytes())
            .take(SWEEP_LIMIT)
        {
            out.push(kv?);
        }
        Ok(out)
    }
}

/// The `request_log` key of the command at `position` in the entry at `index`.
pub(super) fn log_key(index: u64, position: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&index.to_be_bytes());
    k[8..].copy_from_slice(&position.to_be_bytes());
    k
}

/// What a command applied for the first time leaves in the table: its `request_log` key, its
/// request id, and its outcome record.
pub(super) type Record = ([u8; 12], [u8; 16], Vec<u8>);

/// The changes that remember each of `records` and forget the `expired` records.
pub(super) fn changes(records: &[Record], expired: &Expired) -> Vec<Change> {
    let change = |tree, key: &[u8], value: Option<&[u8]>| Change {
        tree,
        key: key.to_vec(),
        value: value.map(<[u8]>::to_vec),
    };
    let mut out = Vec::with_capacity(2 * (records.len() + expired.len()));
    for (at, old_id) in expired {
        out.push(change("requests", old_id, None));
        out.push(change("request_log", at, None));
    }
    for (at, request_id, record) in records {
        out.push(change("requests", request_id, Some(record)));
        out.push(change("request_log", at, Some(request_id)));
    }
    out
}
