//! What the commands of one group-committed entry wrote before the next one is planned, so
//! that several commands can be applied in one write (a sled transaction, or a journaled run).
//!
//! Applying each command of an entry in its own transaction made the followers' apply the
//! largest cost of a replicated create (one transaction per command, over seven trees). A run
//! of key creates and deletes is applied in one instead. Such commands change nothing that
//! `plan` reads for them but the existence of the keys they name (authorisation reads
//! policies, identities, enclaves and the cluster record; the census counters are summed over
//! the whole run by `index_writes`), so `plan` sees every earlier command of the run by asking
//! [`State::key_exists`] with this record of the run's key writes.

use super::super::command::{Op, Outcome};
use super::super::store::{State, StateError};
use super::{TreeId, Write};
use std::collections::HashMap;

/// Whether a command may share a write with the commands before it in the entry.
pub(super) fn joins_a_run(op: &Op) -> bool {
    matches!(op, Op::CreateKey { .. } | Op::DeleteKey { .. })
}

/// The effects of the commands applied so far in one write.
#[derive(Default)]
pub(super) struct Pending {
    /// `keys` record key → whether it exists after the commands so far.
    keys: HashMap<Vec<u8>, bool>,
    /// Request id → the outcome it got, for a retry inside the same entry.
    outcomes: HashMap<[u8; 16], Outcome>,
}

impl Pending {
    /// Notes that request `rid` got `outcome` by performing `writes`.
    pub(super) fn wrote(&mut self, writes: &[Write], rid: [u8; 16], outcome: &Outcome) {
        for w in writes {
            match w {
                Write::Put(TreeId::Keys, k, _) => self.keys.insert(k.clone(), true),
                Write::Del(TreeId::Keys, k) => self.keys.insert(k.clone(), false),
                _ => None,
            };
        }
        self.outcomes.insert(rid, outcome.clone());
    }

    /// The outcome of an earlier command of the run with request id `rid`.
    pub(super) fn first_outcome(&self, rid: &[u8; 16]) -> Option<Outcome> {
        self.outcomes.get(rid).cloned()
    }
}

impl State {
    /// Whether the `keys` record `key` exists once the commands in `pending` are applied.
    pub(super) fn key_exists(&self, pending: &Pending, key: &[u8]) -> Result<bool, StateError> {
        match pending.keys.get(key) {
            Some(exists) => Ok(*exists),
            None => Ok(self.keys.contains_key(key)?),
        }
    }
}
