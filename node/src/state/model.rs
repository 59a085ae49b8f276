//! The records stored in the state machine trees (MessagePack-encoded).

use crate::auth::Policy;
use serde::{Deserialize, Serialize};

/// A key: its sealed record and the id of this incarnation of the name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    /// Unique per creation, so a deleted and re-created name never opens the old record.
    pub creation_id: u128,
    /// The key's versions (`crypto::KeyVersions`), sealed with the storage key: the KES
    /// protobuf record itself while the key was never rotated.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
    /// The newest version's number: 1 until the key is first rotated. Left out of the record
    /// while it is 1, so a key never rotated is stored as before versions existed.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
    /// Versions below it refuse to decrypt (`/v1/key/min-version`); 0 (or 1): none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_decrypt: u32,
    /// Counts the changes of `sealed` (rotations, retirements): a change is made from one
    /// revision and applied only to it, and the key cache holds a record by its revision.
    /// The version alone cannot tell, as a retirement keeps the newest version.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub revision: u64,
    /// Rotate it automatically this often, in seconds; 0: never.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rotate_every: u64,
    /// When its newest version was made (the creating or rotating command's time, Unix
    /// nanoseconds), while it rotates automatically; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub rotated_at: i64,
}

impl KeyEntry {
    /// When its next automatic rotation is due (Unix nanoseconds), if it rotates on its own.
    pub fn rotation_due(&self) -> Option<i64> {
        let every = i64::try_from(self.rotate_every).ok().filter(|e| *e > 0)?;
        Some(
            self.rotated_at
                .saturating_add(every.saturating_mul(1_000_000_000)),
        )
    }
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// A metadata MAC: the storage-key version whose MAC key made it, and the MAC. Records made
/// before the MAC existed, or altered on disk, fail verification at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    /// Which cluster key's MAC key signed the record.
    pub version: u32,
    /// HMAC-SHA256 over the tree, the record's key and the record with an empty signature.
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

#[cfg(test)]
impl Signature {
    /// A signature as the first cluster key makes it, for tests of the state machine, which
    /// reads a signature's version and never checks its MAC.
    pub(crate) fn under_first_key() -> Signature {
        Signature {
            version: 1,
            mac: vec![7; 32],
        }
    }
}

/// A record authenticated with the metadata MAC key.
pub trait Signed: Serialize + Clone {
    /// The signature.
    fn signature(&self) -> &Signature;
    /// Replaces the signature.
    fn set_signature(&mut self, sig: Signature);
    /// The bytes the MAC covers: the record with an empty signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.set_signature(Signature::default());
        super::store::encode(&unsigned)
    }
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
    /// Metadata MAC.
    #[serde(default)]
    pub sig: Signature,
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
    /// Metadata MAC.
    #[serde(default)]
    pub sig: Signature,
}

/// An enclave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnclaveEntry {
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// The admin who made it.
    pub created_by: String,
    /// The identity that administers this enclave's keys, policies and identities (empty:
    /// only the system admin). Left out of the encoding when empty, so records made before
    /// enclave admins existed keep their bytes and their MAC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub admin: String,
    /// Metadata MAC.
    #[serde(default)]
    pub sig: Signature,
}

/// The membership (node id → http, grpc, SPKI), authenticated with the metadata MAC key. Peers
/// are accepted only if their SPKI is in it, so a member added by editing a data dir is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedMembership {
    /// Node id → (KES URL, gRPC address, SPKI hash).
    pub nodes: std::collections::BTreeMap<u64, (String, String, String)>,
    /// Node id → the SPKI of its next certificate, while it rotates it (also accepted).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub next: std::collections::BTreeMap<u64, String>,
    /// Metadata MAC.
    #[serde(default)]
    pub sig: Signature,
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl Signed for $t {
            fn signature(&self) -> &Signature {
                &self.sig
            }
            fn set_signature(&mut self, sig: Signature) {
                self.sig = sig;
            }
        }
    )*};
}
signed!(PolicyEntry, IdentityEntry, EnclaveEntry, SignedMembership);

impl PolicyEntry {
    /// The record a write of `policy` at `time` by `by` stores (before signing). Handlers and
    /// `apply` both build it here, so the MAC a handler computes matches what is stored.
    pub fn new(policy: Policy, time: i64, by: &str, from_config: bool) -> Self {
        PolicyEntry {
            policy,
            created_at: time,
            created_by: by.to_owned(),
            from_config,
            sig: Signature::default(),
        }
    }
}

impl IdentityEntry {
    /// The record of an assignment (before signing).
    pub fn new(policy: &str, time: i64, by: &str, from_config: bool) -> Self {
        IdentityEntry {
            policy: policy.to_owned(),
            created_at: time,
            created_by: by.to_owned(),
            from_config,
            sig: Signature::default(),
        }
    }
}

impl EnclaveEntry {
    /// The record of an enclave (before signing), administered by the system admin only.
    pub fn new(time: i64, by: &str) -> Self {
        EnclaveEntry {
            created_at: time,
            created_by: by.to_owned(),
            admin: String::new(),
            sig: Signature::default(),
        }
    }
}

impl EnclaveEntry {
    /// The same record, administered also by `admin` (empty: by the system admin only).
    pub fn administered_by(mut self, admin: &str) -> Self {
        self.admin = admin.to_owned();
        self
    }
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
    /// How many restores replaced the cluster key. A restore's key may carry the storage
    /// version of the key before it, so records made with that one are told apart by this
    /// (`Command::restores_seen`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub restores: u64,
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
