//! Applying a change of a key's versions (rotate, retire): the command carries the whole
//! re-sealed record, made by the handler from the record at one version. Applied only if the
//! key is still exactly that record's key, so that two changes made from the same record
//! cannot both land and the second drop what the first added.

use super::super::command::Outcome;
use super::super::model::KeyEntry;
use super::super::store::{State, StateError, encode, scoped};
use super::{TreeId, Write};

impl State {
    /// The write that `change` makes to key `name` of `enclave`, if the key is still the
    /// record the change was made from (`from`: incarnation, newest version, revision), and no
    /// rekey runs: a rekey re-seals every record from what it read, and would overwrite a
    /// record changed meanwhile. The change counts as a new revision.
    pub(super) fn plan_key_change(
        &self,
        enclave: &str,
        name: &str,
        from: (u128, u32, u64),
        change: impl FnOnce(&mut KeyEntry) -> Result<(), Outcome>,
    ) -> Result<Result<Vec<Write>, Outcome>, StateError> {
        let Some(mut entry) = self.key(enclave, name)? else {
            return Ok(Err(Outcome::KeyNotFound));
        };
        if (entry.creation_id, entry.version, entry.revision) != from {
            return Ok(Err(Outcome::KeyChanged));
        }
        if self.cluster_meta()?.is_some_and(|m| m.previous.is_some()) {
            return Ok(Err(Outcome::RekeyRunning));
        }
        if let Err(refused) = change(&mut entry) {
            return Ok(Err(refused));
        }
        entry.revision = entry.revision.wrapping_add(1);
        Ok(Ok(vec![Write::Put(
            TreeId::Keys,
            scoped(enclave, name),
            encode(&entry),
        )]))
    }
}
