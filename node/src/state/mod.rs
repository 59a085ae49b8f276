//! The state machine: every change is a [`Command`], applied by a deterministic [`State::apply`].
//!
//! `apply` reads no clock and makes no randomness: timestamps, ids and sealed key records are
//! made by the API handler and carried in the command, so every replica that applies the same
//! log ends in the same state. Reads (`State::key`, lists, policy lookups) query the applied
//! state directly, without a round trip through the writer.
//!
//! Layout in sled, one tree each: `keys`, `policies` and `identities` keyed by
//! `<enclave>\0<name>`, `enclaves` keyed by name, `meta` (applied index, cluster facts), and
//! `requests` / `request_log` for deduplicating retried writes.

mod access;
mod apply;
mod command;
mod dump_format;
mod dump_view;
pub(crate) mod failpoint;
mod migrate;
mod model;
mod query;
mod reclaim;
mod snapshot;
mod store;

pub(crate) use apply::reencode_journal_record;
pub use command::{Command, Op, Outcome, ResealedFrom};
pub use dump_view::RunningDump;
pub use model::{
    ClusterMeta, EnclaveEntry, IdentityEntry, KeyEntry, PolicyEntry, PreviousKey, Signature,
    Signed, SignedMembership, unix_nanos_now,
};
pub use query::{ListPage, MetadataRecord};
pub use snapshot::{DumpSource, DumpTree};
pub use store::{META_MEMBERSHIP, RAFT_LOG_DIR, State, StateError, encode_record, scoped_key};

/// The enclave that applies when a request names none.
pub const DEFAULT_ENCLAVE: &str = "default";
