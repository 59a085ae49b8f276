//! The records stored in the state machine trees (MessagePack-encoded).

use crate::auth::Policy;
use serde::{Deserialize, Serialize};

/// A key: its sealed record and the id of this incarnation of the name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    /// Unique per creation, so a deleted and re-created name never opens the old record.
    pub creation_id: u128,
    /// The KES key record (protobuf), sealed with the storage key.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// A policy, made through the API or declared in the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyEntry {
    /// The rules.
    pub policy: Policy,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// Identity of the writer.
    pub created_by: String,
    /// Declared in the config file, and therefore read-only through the API.
    pub from_config: bool,
}

/// An identity's assignment to a policy within one enclave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityEntry {
    /// The policy name.
    pub policy: String,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// Who assigned it.
    pub created_by: String,
    /// Declared in the config file.
    pub from_config: bool,
}

/// An enclave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnclaveEntry {
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// The admin who made it.
    pub created_by: String,
}

/// Facts fixed when the cluster was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterMeta {
    /// Random id, kept forever.
    pub cluster_id: String,
    /// The admin identity; a node configured with another refuses to start.
    pub admin: String,
    /// The cluster key, wrapped once per seal.
    pub wrapped: Vec<crate::seal::WrappedCopy>,
    /// Version of the storage key derived from the cluster key.
    pub storage_version: u32,
    /// During a rekey: the previous cluster key's copies and storage version, until every
    /// record is re-sealed under the new one.
    #[serde(default)]
    pub previous: Option<PreviousKey>,
    /// Unix time in nanoseconds.
    pub created_at: i64,
}

/// The cluster key a rekey is replacing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreviousKey {
    /// Its wrapped copies.
    pub wrapped: Vec<crate::seal::WrappedCopy>,
    /// Its storage-key version.
    pub storage_version: u32,
}

/// Now, as Unix nanoseconds; for handlers that build commands (never for `apply`).
pub fn unix_nanos_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
