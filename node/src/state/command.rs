//! Commands: the only way the state changes.

use crate::auth::Policy;
use serde::{Deserialize, Serialize};

/// One state change, with who asked for it and on which path, so `apply` can check the
/// authorisation again against the replicated policies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Command {
    /// Random id; a retried write with the same id applies once and gets the first result.
    pub request_id: u128,
    /// The caller's identity.
    pub identity: String,
    /// The request path the caller was authorised for.
    pub path: String,
    /// The enclave the request selected.
    pub enclave: String,
    /// When the handler accepted it, Unix nanoseconds.
    pub time: i64,
    /// What to do.
    pub op: Op,
    /// For a command whose record the proposer sealed or signed: `ClusterMeta::restores` of
    /// the cluster key it used. `apply` refuses it once a restore has replaced that key, since
    /// the record would be one no node can open, or a signature every node's check refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores_seen: Option<u64>,
}

/// The operations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Op {
    /// Makes the cluster: id, admin, wrapped cluster key, and the default enclave.
    Init {
        /// Random cluster id.
        cluster_id: String,
        /// The admin identity.
        admin: String,
        /// The cluster key, wrapped by each seal of the bootstrapping node.
        wrapped: Vec<crate::seal::WrappedCopy>,
        /// The signature of the default enclave's record.
        default_enclave_sig: super::Signature,
    },
    /// Replaces the config-declared policies and identities of the default enclave.
    SetConfigPolicies {
        /// name → (rules, identities).
        policies: Vec<(String, Policy, Vec<String>)>,
        /// Signatures of the records this writes, by (tree, record key).
        sigs: Vec<(String, serde_bytes::ByteBuf, super::Signature)>,
    },
    /// Creates (or imports) a key; the record is already sealed.
    CreateKey {
        /// Key name.
        name: String,
        /// Id of this incarnation.
        creation_id: u128,
        /// Sealed record.
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
        /// Rotate it automatically this often, in seconds (0: never).
        #[serde(default, skip_serializing_if = "is_zero")]
        rotate_every: u64,
    },
    /// Deletes a key.
    DeleteKey {
        /// Key name.
        name: String,
    },
    /// Writes (creates or overwrites) a policy; assignments are kept.
    WritePolicy {
        /// Policy name.
        name: String,
        /// Rules.
        policy: Policy,
        /// Signature of the stored record.
        sig: super::Signature,
    },
    /// Assigns an identity to a policy.
    AssignPolicy {
        /// Policy name.
        policy: String,
        /// The identity.
        identity: String,
        /// Signature of the stored record.
        sig: super::Signature,
    },
    /// Deletes a policy and its assignments.
    DeletePolicy {
        /// Policy name.
        name: String,
    },
    /// Removes an identity's assignment.
    DeleteIdentity {
        /// The identity.
        identity: String,
    },
    /// Creates an enclave.
    CreateEnclave {
        /// Enclave name.
        name: String,
        /// The identity that administers the enclave (empty: only the system admin does).
        #[serde(default)]
        admin: String,
        /// Signature of the stored record.
        sig: super::Signature,
    },
    /// Adds a version to a key: its record re-sealed with every version it held at
    /// `from_version` and a new one (`/v1/key/rotate`). Refused if the key changed meanwhile.
    RotateKey {
        /// Key name.
        name: String,
        /// The incarnation the record was made from.
        creation_id: u128,
        /// The newest version the record was made from; the new one is the next.
        from_version: u32,
        /// The revision of the record it was made from (`KeyEntry::revision`).
        #[serde(default)]
        revision: u64,
        /// The new sealed record.
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Deletes a key's versions below `below` for good: its record re-sealed without them
    /// (`/v1/key/retire`). Refused if the key changed meanwhile.
    RetireKeyVersions {
        /// Key name.
        name: String,
        /// The incarnation the record was made from.
        creation_id: u128,
        /// The newest version when the record was made.
        version: u32,
        /// The revision of the record it was made from (`KeyEntry::revision`).
        #[serde(default)]
        revision: u64,
        /// The lowest version kept.
        below: u32,
        /// The new sealed record.
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Sets how often a key is rotated automatically, in seconds (0: never): the config's
    /// `keys[].rotate_every`, or `/v1/key/rotation`.
    SetKeyRotation {
        /// Key name.
        name: String,
        /// The period in seconds, or 0.
        rotate_every: u64,
    },
    /// Makes a key's versions below `min_decrypt` refuse to decrypt, or (lower) lets them again.
    /// Versions before the minimum was sealed with the record proposed this; such log entries
    /// still apply as they did.
    SetKeyMinVersion {
        /// Key name.
        name: String,
        /// The lowest version that may decrypt (0 or 1: all).
        min_decrypt: u32,
    },
    /// Makes a key's versions below `min_decrypt` refuse to decrypt, or (lower) lets them again
    /// (`/v1/key/min-version`): its record re-sealed with the new minimum, made from one record
    /// and refused if the key changed meanwhile, like a rotation. A variant of its own, so that
    /// a node too old to know it stops on it rather than apply it as [`Op::SetKeyMinVersion`]
    /// and diverge.
    SealKeyMinVersion {
        /// Key name.
        name: String,
        /// The lowest version that may decrypt (0 or 1: all).
        min_decrypt: u32,
        /// The re-sealed record, and the record it was made from.
        from: ResealedFrom,
    },
    /// Records a removed member's SPKI, which is refused for good afterwards.
    Tombstone {
        /// The removed node.
        node_id: u64,
        /// Its node-certificate SPKI hash.
        spki: String,
    },
    /// Restores part of a snapshot into an empty cluster: raw records of one data tree.
    RestoreChunk {
        /// `keys`, `policies`, `identities` or `enclaves`.
        tree: String,
        /// Records as stored (key records stay sealed).
        items: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    },
    /// Finishes a restore: the restored records are sealed under the snapshot's cluster key,
    /// which this cluster adopts (wrapped for this cluster id by this cluster's root key).
    RestoreFinish {
        /// The snapshot's cluster key, wrapped for this cluster by this cluster's seals.
        wrapped: Vec<crate::seal::WrappedCopy>,
        /// The snapshot's storage-key version.
        storage_version: u32,
        /// `State::metadata_digest` as the restore saw it once it had re-signed this
        /// cluster's own records with the snapshot's key: refused if a record changed since,
        /// as it would be signed with the key the restore replaces. Absent in older commands.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_bytes::ByteBuf>,
    },
    /// Starts a rekey: a new cluster key becomes current; the old one stays until every
    /// record is re-sealed.
    RekeyBegin {
        /// The new cluster key, wrapped by the rekeying node's seals.
        wrapped: Vec<crate::seal::WrappedCopy>,
        /// The new storage-key version.
        storage_version: u32,
    },
    /// Replaces sealed key records with ones sealed under the new storage key.
    Reseal {
        /// (enclave, name, creation id, new sealed record); a record whose creation id
        /// changed meanwhile (deleted, re-created) is left alone.
        items: Vec<(String, String, u128, serde_bytes::ByteBuf)>,
    },
    /// Re-signs metadata records with the new MAC key during a rekey, or with the adopted one
    /// during a restore: each record is replaced only if it still holds the expected bytes (a
    /// concurrent write wins).
    Remac {
        /// `policies`, `identities`, `enclaves`, or `meta` for the signed membership alone.
        tree: String,
        /// (record key, expected current value, new value).
        items: Vec<(
            serde_bytes::ByteBuf,
            serde_bytes::ByteBuf,
            serde_bytes::ByteBuf,
        )>,
    },
    /// Ends a rekey: the old cluster key is dropped. Refused while any record is still
    /// sealed under it.
    RekeyFinish,
    /// Records the membership as signed by an unsealed leader with the metadata MAC key.
    SignMembership {
        /// The signed record (encoded [`crate::state::SignedMembership`]).
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
    /// Adds (or replaces) the copy of the cluster key wrapped by one seal.
    SealAdd {
        /// The copy.
        copy: crate::seal::WrappedCopy,
    },
    /// Removes one seal's copy.
    SealRemove {
        /// Which seal.
        seal_id: String,
    },
    /// Records which seal a node last unsealed with.
    SealUse {
        /// The node.
        node_id: u64,
        /// Its seal.
        seal_id: String,
    },
    /// Deletes an enclave; with `force`, also its keys, policies and identities.
    DeleteEnclave {
        /// Enclave name.
        name: String,
        /// Delete even when it still holds keys.
        force: bool,
    },
    /// Several clients' commands that reached the leader together, proposed as one log entry
    /// (`cluster::group_commit`) so they share one fsync on every node. Each is applied in
    /// order, authorised and deduplicated on its own, with its own outcome; the wrapping
    /// command's identity, path and request id play no part.
    Batch {
        /// The commands, in the order they are applied.
        commands: Vec<Command>,
    },
}

/// A key's record re-sealed by a handler, and the record it was made from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResealedFrom {
    /// The incarnation the record was made from.
    pub creation_id: u128,
    /// The newest version the record was made from.
    pub version: u32,
    /// The revision of the record it was made from (`KeyEntry::revision`).
    pub revision: u64,
    /// The new sealed record.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

#[cfg(test)]
impl Command {
    /// A test command: `op` by the identity `admin`, in the default enclave, at time 1.
    pub(crate) fn test_by_admin(request_id: u128, op: Op) -> Command {
        Command {
            request_id,
            identity: "admin".into(),
            path: "/".into(),
            enclave: "default".into(),
            time: 1,
            op,
            restores_seen: None,
        }
    }
}

#[cfg(test)]
impl Op {
    /// The `Init` of a test cluster administered by `admin`, with no seals.
    pub(crate) fn test_init(admin: &str) -> Op {
        Op::Init {
            cluster_id: "c".into(),
            admin: admin.into(),
            wrapped: vec![],
            default_enclave_sig: Default::default(),
        }
    }
}

/// The result of applying a command. Deterministic, so every replica answers alike.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Outcome {
    /// Applied.
    Done,
    /// The caller is not allowed by the replicated policies.
    NotAuthorized,
    /// `key already exists`.
    KeyExists,
    /// `key does not exist`.
    KeyNotFound,
    /// `policy does not exist`.
    PolicyNotFound,
    /// `identity does not exist`.
    IdentityNotFound,
    /// `enclave already exists`.
    EnclaveExists,
    /// `enclave does not exist`.
    EnclaveNotFound,
    /// The enclave still holds keys and `force` was not given.
    EnclaveNotEmpty,
    /// The policy or identity comes from the config file.
    ReadOnly(String),
    /// Policies cannot be assigned to the admin.
    AssignToAdmin,
    /// An identity cannot assign a policy to itself.
    AssignToSelf,
    /// The cluster is already initialised (Init applied twice).
    AlreadyInitialized,
    /// A config-declared name clashes with one made through the API.
    ConfigClash(String),
    /// The record was sealed or signed under a cluster key that a finished rekey dropped
    /// (see `apply/current_key.rs`); nothing was written.
    StaleClusterKey,
    /// The key was rotated or retired since the record in the command was made from it.
    KeyChanged,
    /// A restore's finish: this cluster's policies, identities, enclaves or membership changed
    /// after the restore re-signed them.
    MetadataChanged,
    /// A key version that does not exist, or may not be used so.
    BadKeyVersion(String),
    /// A rekey is re-sealing every key record: a record re-sealed by a rotation or retirement
    /// now could be overwritten by it.
    RekeyRunning,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
