//! Deduplication of retried writes: request id → the first outcome, for a window of log
//! indexes.
//!
//! Two trees hold it: `requests` (request id → (index, outcome)) and `request_log` (index →
//! request id, big-endian, so it sorts by index). Each command applied for the first time adds
//! one record to each, and the same transaction sweeps every record at an index `<= i - window`
//! (at most [`SWEEP_LIMIT`] of them), so:
//!
//! - **Bounded:** after a command lands at index `i`, the table holds ids of indexes in
//!   `(i - window, i]`, at most one per index: `window` records. Entries without a request id
//!   (blanks, membership changes, retries) add nothing, so nothing can outgrow a sweep.
//! - **Retries inside the window still dedup:** the record made at `i` goes only in a sweep at
//!   some index `k >= i + window`, and every lookup at `k` runs before `k`'s own sweep, so a
//!   retry at any index `<= i + window` finds the first outcome.
//! - **Deterministic:** a sweep depends on nothing but the index and the trees, which every
//!   replica (and every snapshot, which carries both trees) holds alike.
//! - **O(removed):** the expired records are one contiguous range at the front of
//!   `request_log`, read in order; nothing else is visited.
//!
//! Data dirs written before the sweep existed may hold records that an older version failed to
//! free; the limit drains them a batch per command rather than in one giant transaction.

use super::super::command::Outcome;
use super::super::store::{State, StateError, get};
use sled::IVec;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

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
    /// The outcome a request id got when it was first applied, if it is still remembered.
    pub(super) fn first_outcome(&self, request_id: &[u8]) -> Result<Option<Outcome>, StateError> {
        Ok(get::<(u64, Outcome)>(&self.requests, "requests", request_id)?.map(|(_, o)| o))
    }

    /// The records a command applied at `index` sweeps: those at indexes `<= index - window`.
    pub(super) fn expired_requests(&self, index: u64, window: u64) -> Result<Expired, StateError> {
        let Some(last) = index.checked_sub(window) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in self
            .request_log
            .range(..=last.to_be_bytes())
            .take(SWEEP_LIMIT)
        {
            out.push(kv?);
        }
        Ok(out)
    }
}

/// Inside `apply`'s transaction: remembers `request_id`'s outcome `record` at `index` and
/// forgets the `expired` records.
pub(super) fn remember(
    requests: &TransactionalTree,
    request_log: &TransactionalTree,
    index: u64,
    request_id: &[u8],
    record: &[u8],
    expired: &Expired,
) -> Result<(), ConflictableTransactionError<()>> {
    for (at, old_id) in expired {
        requests.remove(old_id)?;
        request_log.remove(at)?;
    }
    requests.insert(request_id, record)?;
    request_log.insert(&index.to_be_bytes(), request_id)?;
    Ok(())
}
