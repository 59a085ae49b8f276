//! Refusing records sealed or signed under a cluster key the cluster no longer holds.
//!
//! A node seals a new key record, or signs a new policy, identity, enclave or membership
//! record, with the cluster key its unseal loop holds, and then proposes it. A rekey can finish
//! in between. A node that had not yet unwrapped the new key then proposes a record under the
//! old one, and once applied after `RekeyFinish` that record is a key nobody can open (lost),
//! or a signature that every node's integrity check refuses (so every node seals itself for
//! good). `apply` refuses such a record, alike on every replica; the proposer answers 503 and
//! the client retries under the new key.
//!
//! While a rekey runs, records under the previous key are still accepted: the census counts
//! them, so `RekeyFinish` is refused until the rekey has re-sealed them too.

use super::super::command::Op;
use super::super::model::{ClusterMeta, SignedMembership};
use super::super::store::{META_MEMBERSHIP, State, decode};
use super::index::data_record_version;
use super::{TreeId, Write};

impl State {
    /// Whether `writes`, planned for `op` against the cluster record `meta`, put a record under
    /// a storage-key version the cluster holds no key for: neither the current one nor, during
    /// a rekey, the previous one.
    pub(super) fn writes_under_dropped_key(
        &self,
        op: &Op,
        writes: &[Write],
        meta: Option<&ClusterMeta>,
    ) -> bool {
        // A restore adopts the snapshot's records and keys, and re-signing (rekey, restore)
        // names its own key: both write under versions this check cannot know yet.
        if matches!(op, Op::RestoreChunk { .. } | Op::Remac { .. }) {
            return false;
        }
        let Some(meta) = meta else {
            return false;
        };
        let held = |version: Option<u32>| {
            version.is_some_and(|v| {
                v == meta.storage_version
                    || meta
                        .previous
                        .as_ref()
                        .is_some_and(|p| p.storage_version == v)
            })
        };
        for w in writes {
            let Write::Put(tree, key, value) = w else {
                continue;
            };
            let version = match tree {
                TreeId::Meta if key.as_slice() == META_MEMBERSHIP => {
                    decode::<SignedMembership>("meta", value)
                        .ok()
                        .map(|m| m.sig.version)
                }
                TreeId::Meta => continue,
                data => data_record_version(*data, value),
            };
            if !held(version) {
                return true;
            }
        }
        false
    }
}
