//! `apply`: the deterministic transition function of the state machine.
//!
//! Applying runs in two steps. `plan` reads the current state and decides the outcome and the
//! writes; then the writes are made together with the applied index and the dedup record, so a
//! crash leaves either all of it or none: in one sled transaction, or, for a run of key creates
//! and deletes, as plain writes behind a journal record ([`journal`]). Only one command is
//! applied at a time (the writer serialises them), which is why `plan` may read plain trees:
//! inside a sled transaction closure it must not (STACK.md, sled rule 3), and transactional
//! trees cannot scan.
//!
//! The same writes sweep the deduplication table ([`dedup`]) and keep the indexes that spare
//! deletes a whole-tree scan ([`index`]).

use super::DEFAULT_ENCLAVE;
use super::command::{Command, Op, Outcome};
use super::dump_view::tree_number;
use super::model::{ClusterMeta, EnclaveEntry, IdentityEntry, KeyEntry, PolicyEntry};
use super::store::{META_APPLIED, META_CLUSTER, State, StateError, encode, scoped};
use dedup::{DEDUP_WINDOW, Expired};
use index::INDEX_THROUGH;
use journal::Change;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

mod batch;
mod current_key;
mod dedup;
mod index;
mod journal;
mod key_versions;
mod pending;

/// For the test that every tree `State::open` makes is in a snapshot or the node's own.
#[cfg(test)]
pub(super) use journal::JOURNAL_TREE;
pub(crate) use journal::reencode_record as reencode_journal_record;
use pending::{Pending, joins_a_run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TreeId {
    Keys,
    Policies,
    Identities,
    Enclaves,
    Meta,
}

#[derive(Debug)]
enum Write {
    Put(TreeId, Vec<u8>, Vec<u8>),
    Del(TreeId, Vec<u8>),
}

impl From<Write> for Change {
    fn from(w: Write) -> Change {
        let (tree, key, value) = match w {
            Write::Put(t, k, v) => (t, k, Some(v)),
            Write::Del(t, k) => (t, k, None),
        };
        Change {
            tree: tree.name(),
            key,
            value,
        }
    }
}

/// Every change a run makes, in the order they are made: the commands' writes with the
/// indexes', the deduplication table's, then the applied index and the Raft layer's `marks`.
/// Those come last, so a crash that kept them kept everything before (`journal.rs`).
fn changes_of_run(
    writes: Vec<Write>,
    records: &[dedup::Record],
    expired: &Expired,
    index: u64,
    marks: &[(&[u8], Vec<u8>)],
) -> Vec<Change> {
    let mut changes: Vec<Change> = writes.into_iter().map(Change::from).collect();
    changes.extend(dedup::changes(records, expired));
    let applied = index.to_be_bytes().to_vec();
    let fixed = [(META_APPLIED, applied.clone()), (INDEX_THROUGH, applied)];
    let given = marks.iter().map(|(k, v)| (*k, v.clone()));
    for (key, value) in fixed.into_iter().chain(given) {
        changes.push(Change {
            tree: TreeId::Meta.name(),
            key: key.to_vec(),
            value: Some(value),
        });
    }
    changes
}

impl State {
    /// Applies `cmd` as log entry `index`. The same command sequence gives the same state and
    /// the same outcomes on every replica. A request id seen before returns the first outcome
    /// and changes nothing but the applied index.
    ///
    /// `marks` are extra `meta` entries written in the same transaction (the Raft layer records
    /// the applied log id and membership there), so a crash never separates them from the data.
    pub fn apply(
        &self,
        index: u64,
        cmd: &Command,
        marks: &[(&[u8], Vec<u8>)],
    ) -> Result<Outcome, StateError> {
        self.apply_in_window(index, 0, cmd, marks, DEDUP_WINDOW)
    }

    /// [`State::apply`] of the command at `position` in the entry at `index`, remembering
    /// request ids for `window` log indexes (tests shrink it).
    pub(super) fn apply_in_window(
        &self,
        index: u64,
        position: u32,
        cmd: &Command,
        marks: &[(&[u8], Vec<u8>)],
        window: u64,
    ) -> Result<Outcome, StateError> {
        let mut outcomes = self.apply_run(index, position, &[cmd], marks, window)?;
        Ok(outcomes.pop().expect("one outcome per command"))
    }

    /// Applies `run`, the commands at `first_position..` of the entry at `index`, in order and
    /// in one transaction, each with its own outcome and deduplication, as if each were applied
    /// alone. Every command but the first must [`joins_a_run`]: those change nothing `plan`
    /// reads but the `keys` records the run's [`Pending`] tracks.
    fn apply_run(
        &self,
        index: u64,
        first_position: u32,
        run: &[&Command],
        marks: &[(&[u8], Vec<u8>)],
        window: u64,
    ) -> Result<Vec<Outcome>, StateError> {
        if !self.indexes_current()? {
            self.rebuild_indexes()?;
        }
        // Read once: `plan` decides with it, and the key check holds the writes against it.
        // No command of a run changes it.
        let meta = self.cluster_meta()?;
        let mut pending = Pending::default();
        let mut writes = Vec::new();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(run.len());
        for (position, cmd) in (first_position..).zip(run) {
            let rid = cmd.request_id.to_be_bytes();
            if let Some(first) = pending.first_outcome(&rid) {
                outcomes.push(first);
                continue;
            }
            if let Some(first) = self.first_outcome(&rid, index, window)? {
                outcomes.push(first);
                continue;
            }
            let (outcome, planned) = match self.plan(cmd, meta.as_ref(), &pending)? {
                Ok(planned) if self.writes_under_dropped_key(&cmd.op, &planned, meta.as_ref()) => {
                    (Outcome::StaleClusterKey, Vec::new())
                }
                Ok(planned) => (Outcome::Done, planned),
                Err(refused) => (refused, Vec::new()),
            };
            pending.wrote(&planned, rid, &outcome);
            writes.extend(planned);
            records.push((
                dedup::log_key(index, position),
                rid,
                encode(&(index, &outcome)),
            ));
            outcomes.push(outcome);
        }
        if records.is_empty() {
            // Only retries: nothing changes but the applied index.
            self.record_applied(index, marks)?;
            return Ok(outcomes);
        }
        writes.extend(self.index_writes(&writes)?);
        let expired = self.expired_requests(index, window)?;
        let changes = changes_of_run(writes, &records, &expired, index, marks);
        if joins_a_run(&run[0].op) && !self.dump_view.is_running() {
            if let Some(record) = journal::record_within_limit(index, &changes) {
                self.write_journaled(record, &changes)?;
                return Ok(outcomes);
            }
        }
        self.write_in_transaction(&changes)?;
        Ok(outcomes)
    }

    /// Makes `changes` in one sled transaction, keeping what each replaces for a running dump
    /// (`dump_view.rs`).
    fn write_in_transaction(&self, changes: &[Change]) -> Result<(), StateError> {
        let [keys, policies, identities, enclaves, meta, requests, log] = self.data_trees();
        let trees = (keys, policies, identities, enclaves, meta, requests, log);
        let result: Result<(), TransactionError<()>> = trees.transaction(
            |(keys, policies, identities, enclaves, meta, requests, log)| {
                let trees = [keys, policies, identities, enclaves, meta, requests, log];
                for c in changes {
                    let tree = trees[usize::from(tree_number(c.tree))];
                    let old = match &c.value {
                        Some(v) => tree.insert(c.key.as_slice(), v.as_slice())?,
                        None => tree.remove(c.key.as_slice())?,
                    };
                    self.dump_view.keep(c.tree, &c.key, old);
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the closure never aborts"),
        }
    }

    /// Records that log entry `index` was applied without changing data (a blank or membership
    /// entry, a duplicate request, or the last entry of an installed snapshot), together with
    /// `marks`, atomically. The indexes stay current if they were (see [`index`]).
    pub fn record_applied(&self, index: u64, marks: &[(&[u8], Vec<u8>)]) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        let mut keep = |k: &[u8], v: &[u8]| {
            batch.insert(k, v);
            self.dump_view.keep_current("meta", &self.meta, k)
        };
        if self.indexes_current()? {
            keep(INDEX_THROUGH, &index.to_be_bytes())?;
        }
        keep(META_APPLIED, &index.to_be_bytes())?;
        for (k, v) in marks {
            keep(k, v)?;
        }
        self.meta.apply_batch(batch)?;
        Ok(())
    }

    /// Decides what `cmd` does: the writes to perform, or the outcome that refuses it.
    /// `meta` is the cluster record as it stands before `cmd`.
    /// `pending` holds what the commands applied before `cmd` in the same transaction wrote.
    fn plan(
        &self,
        cmd: &Command,
        meta: Option<&ClusterMeta>,
        pending: &Pending,
    ) -> Result<Result<Vec<Write>, Outcome>, StateError> {
        if let Op::Init {
            cluster_id,
            admin,
            wrapped,
            default_enclave_sig,
        } = &cmd.op
        {
            if meta.is_some() {
                return Ok(Err(Outcome::AlreadyInitialized));
            }
            let m = ClusterMeta {
                cluster_id: cluster_id.clone(),
                admin: admin.clone(),
                wrapped: wrapped.clone(),
                storage_version: 1,
                previous: None,
                created_at: cmd.time,
                restores: 0,
            };
            let mut default = EnclaveEntry::new(cmd.time, admin);
            default.sig = default_enclave_sig.clone();
            return Ok(Ok(vec![
                Write::Put(TreeId::Meta, META_CLUSTER.to_vec(), encode(&m)),
                Write::Put(
                    TreeId::Enclaves,
                    DEFAULT_ENCLAVE.as_bytes().to_vec(),
                    encode(&default),
                ),
            ]));
        }
        let admin = meta.map(|m| m.admin.clone()).unwrap_or_default();
        let is_admin = !admin.is_empty() && cmd.identity == admin;
        if let (Some(seen), Some(m)) = (cmd.restores_seen, meta) {
            if seen != m.restores {
                return Ok(Err(Outcome::StaleClusterKey));
            }
        }
        // Authorised again here, against the replicated state and the paths of the operation
        // itself (never the path the proposer claims), so a stale follower or a forged forward
        // cannot push through what the policies refuse.
        let policy_paths = cmd.op.policy_paths();
        let allowed = match &policy_paths {
            None => is_admin,
            Some(paths) => self.is_allowed(&cmd.identity, &cmd.enclave, paths)?,
        };
        if !allowed {
            return Ok(Err(Outcome::NotAuthorized));
        }
        if let Some(policy) = cmd.op.managed_policy() {
            if !self.may_manage_policy(&cmd.identity, &cmd.enclave, policy)? {
                return Ok(Err(Outcome::NotAuthorized));
            }
        }
        if let Some(rotate) = cmd.op.rotation_right() {
            if !is_admin && !self.is_allowed(&cmd.identity, &cmd.enclave, &[rotate])? {
                return Ok(Err(Outcome::NotAuthorized));
            }
        }
        if policy_paths.is_some() && !self.enclave_exists(&cmd.enclave)? {
            return Ok(Err(Outcome::EnclaveNotFound));
        }
        let e = cmd.enclave.as_str();
        let by = cmd.identity.clone();
        Ok(match &cmd.op {
            Op::Init { .. } => unreachable!("handled above"),
            // The state machine applies a batch command by command (`apply_batch`); one
            // inside another is never proposed.
            Op::Batch { .. } => Err(Outcome::ReadOnly("a batch cannot hold a batch".into())),
            Op::SetConfigPolicies { policies, sigs } => {
                self.plan_config_policies(policies, sigs, cmd.time, &admin)?
            }
            Op::CreateKey {
                name,
                creation_id,
                sealed,
                rotate_every,
            } => {
                if self.key_exists(pending, &scoped(e, name))? {
                    Err(Outcome::KeyExists)
                } else {
                    let entry = KeyEntry {
                        creation_id: *creation_id,
                        sealed: sealed.clone(),
                        version: 1,
                        min_decrypt: 0,
                        revision: 0,
                        rotate_every: *rotate_every,
                        rotated_at: if *rotate_every > 0 { cmd.time } else { 0 },
                    };
                    Ok(vec![Write::Put(
                        TreeId::Keys,
                        scoped(e, name),
                        encode(&entry),
                    )])
                }
            }
            Op::RotateKey {
                name,
                creation_id,
                from_version,
                revision,
                sealed,
            } => self.plan_key_change(e, name, (*creation_id, *from_version, *revision), |entry| {
                entry.version = from_version
                    .checked_add(1)
                    .ok_or_else(|| Outcome::BadKeyVersion("no version after the highest".into()))?;
                entry.sealed = sealed.clone();
                if entry.rotate_every > 0 {
                    entry.rotated_at = cmd.time;
                }
                Ok(())
            })?,
            Op::RetireKeyVersions {
                name,
                creation_id,
                version,
                revision,
                below,
                sealed,
            } => self.plan_key_change(e, name, (*creation_id, *version, *revision), |entry| {
                if *below > entry.version {
                    return Err(Outcome::BadKeyVersion(format!(
                        "cannot retire the newest version ({})",
                        entry.version
                    )));
                }
                entry.sealed = sealed.clone();
                Ok(())
            })?,
            Op::SetKeyRotation { name, rotate_every } => match self.key(e, name)? {
                None => Err(Outcome::KeyNotFound),
                Some(entry) if entry.rotate_every == *rotate_every => Ok(Vec::new()),
                Some(mut entry) => {
                    // A new period counts from now, not from the last version (which may be
                    // long past): setting one never rotates at once.
                    entry.rotate_every = *rotate_every;
                    entry.rotated_at = if *rotate_every > 0 { cmd.time } else { 0 };
                    Ok(vec![Write::Put(TreeId::Keys, scoped(e, name), encode(&entry))])
                }
            },
            Op::SealKeyMinVersion {
                name,
                min_decrypt,
                from: r,
            } => self.plan_key_change(e, name, (r.creation_id, r.version, r.revision), |entry| {
                if *min_decrypt > entry.version {
                    return Err(min_above_newest(entry));
                }
                entry.min_decrypt = *min_decrypt;
                entry.sealed = r.sealed.clone();
                Ok(())
            })?,
            Op::SetKeyMinVersion { name, min_decrypt } => match self.key(e, name)? {
                None => Err(Outcome::KeyNotFound),
                Some(entry) if *min_decrypt > entry.version => Err(min_above_newest(&entry)),
                Some(mut entry) => {
                    entry.min_decrypt = *min_decrypt;
                    Ok(vec![Write::Put(TreeId::Keys, scoped(e, name), encode(&entry))])
                }
            },
            Op::DeleteKey { name } => {
                if self.key_exists(pending, &scoped(e, name))? {
                    Ok(vec![Write::Del(TreeId::Keys, scoped(e, name))])
                } else {
                    Err(Outcome::KeyNotFound)
                }
            }
            Op::WritePolicy { name, policy, sig } => match self.policy(e, name)? {
                Some(p) if p.from_config => Err(read_only_policy(name)),
                _ => {
                    let mut entry = PolicyEntry::new(policy.clone(), cmd.time, &by, false);
                    entry.sig = sig.clone();
                    Ok(vec![Write::Put(
                        TreeId::Policies,
                        scoped(e, name),
                        encode(&entry),
                    )])
                }
            },
            Op::AssignPolicy {
                policy,
                identity,
                sig,
            } => {
                if *identity == admin || self.is_enclave_admin(identity, e)? {
                    Err(Outcome::AssignToAdmin)
                } else if *identity == cmd.identity {
                    Err(Outcome::AssignToSelf)
                } else if self.policy(e, policy)?.is_none() {
                    Err(Outcome::PolicyNotFound)
                } else if self.identity(e, identity)?.is_some_and(|i| i.from_config) {
                    Err(read_only_identity(identity))
                } else {
                    let mut entry = IdentityEntry::new(policy, cmd.time, &by, false);
                    entry.sig = sig.clone();
                    Ok(vec![Write::Put(
                        TreeId::Identities,
                        scoped(e, identity),
                        encode(&entry),
                    )])
                }
            }
            Op::DeletePolicy { name } => match self.policy(e, name)? {
                None => Err(Outcome::PolicyNotFound),
                Some(p) if p.from_config => Err(read_only_policy(name)),
                Some(_) => {
                    let mut writes = vec![Write::Del(TreeId::Policies, scoped(e, name))];
                    for id in self.policy_members(e, name)? {
                        writes.push(Write::Del(TreeId::Identities, id));
                    }
                    Ok(writes)
                }
            },
            Op::DeleteIdentity { identity } => match self.identity(e, identity)? {
                None => Err(Outcome::IdentityNotFound),
                Some(i) if i.from_config => Err(read_only_identity(identity)),
                Some(_) => Ok(vec![Write::Del(TreeId::Identities, scoped(e, identity))]),
            },
            Op::RestoreChunk { tree, items } => {
                let id = match tree.as_str() {
                    "keys" => TreeId::Keys,
                    "policies" => TreeId::Policies,
                    "identities" => TreeId::Identities,
                    "enclaves" => TreeId::Enclaves,
                    _ => {
                        return Ok(Err(Outcome::ReadOnly(format!(
                            "a restore cannot write tree '{tree}'"
                        ))));
                    }
                };
                Ok(items
                    .iter()
                    .map(|(k, v)| Write::Put(id, k.to_vec(), v.to_vec()))
                    .collect())
            }
            Op::RekeyBegin {
                wrapped,
                storage_version,
            } => match self.cluster_meta()? {
                None => Err(Outcome::ReadOnly("the cluster is not initialised".into())),
                Some(m) if m.previous.is_some() => Err(Outcome::ReadOnly(
                    "a rekey is already in progress; run `kes-cluster seal rekey` again to finish it".into(),
                )),
                Some(mut m) if *storage_version == m.storage_version + 1 => {
                    m.previous = Some(super::model::PreviousKey {
                        wrapped: std::mem::replace(&mut m.wrapped, wrapped.clone()),
                        storage_version: m.storage_version,
                    });
                    m.storage_version = *storage_version;
                    Ok(vec![Write::Put(TreeId::Meta, META_CLUSTER.to_vec(), encode(&m))])
                }
                Some(_) => Err(Outcome::ReadOnly("stale rekey request: the storage version moved on".into())),
            },
            Op::Reseal { items } => {
                let mut writes = Vec::new();
                for (enclave, name, creation_id, sealed) in items {
                    if let Some(mut e) = self.key(enclave, name)? {
                        if e.creation_id == *creation_id {
                            e.sealed = sealed.to_vec();
                            writes.push(Write::Put(TreeId::Keys, scoped(enclave, name), encode(&e)));
                        }
                    }
                }
                Ok(writes)
            }
            Op::Remac { tree, items } => {
                let (id, t) = match tree.as_str() {
                    "policies" => (TreeId::Policies, &self.policies),
                    "identities" => (TreeId::Identities, &self.identities),
                    "enclaves" => (TreeId::Enclaves, &self.enclaves),
                    "meta" if items.iter().all(|(k, _, _)| k.as_slice() == super::store::META_MEMBERSHIP) => {
                        (TreeId::Meta, &self.meta)
                    }
                    _ => return Ok(Err(Outcome::ReadOnly(format!("cannot re-sign tree '{tree}'")))),
                };
                let mut writes = Vec::new();
                for (k, expected, new) in items {
                    if t.get(k.as_slice())?.is_some_and(|v| v.as_ref() == expected.as_slice()) {
                        writes.push(Write::Put(id, k.to_vec(), new.to_vec()));
                    }
                }
                Ok(writes)
            }
            Op::RekeyFinish => match self.cluster_meta()? {
                None => Err(Outcome::ReadOnly("the cluster is not initialised".into())),
                Some(mut m) => {
                    if self.records_under_older_key(m.storage_version)? > 0 {
                        Err(Outcome::ReadOnly("some records are still sealed under the old key".into()))
                    } else {
                        m.previous = None;
                        Ok(vec![Write::Put(TreeId::Meta, META_CLUSTER.to_vec(), encode(&m))])
                    }
                }
            },
            Op::SealAdd { copy } => match self.cluster_meta()? {
                None => Err(Outcome::ReadOnly("the cluster is not initialised".into())),
                Some(mut m) => {
                    m.wrapped.retain(|c| c.seal_id != copy.seal_id);
                    m.wrapped.push(copy.clone());
                    Ok(vec![Write::Put(TreeId::Meta, META_CLUSTER.to_vec(), encode(&m))])
                }
            },
            Op::SealRemove { seal_id } => match self.cluster_meta()? {
                None => Err(Outcome::ReadOnly("the cluster is not initialised".into())),
                Some(mut m) => {
                    let users: Vec<u64> = self
                        .seal_uses()?
                        .into_iter()
                        .filter(|(_, s)| s == seal_id)
                        .map(|(n, _)| n)
                        .collect();
                    if !m.wrapped.iter().any(|c| c.seal_id == *seal_id) {
                        Err(Outcome::ReadOnly(format!("there is no seal '{seal_id}'")))
                    } else if m.wrapped.len() == 1 {
                        Err(Outcome::ReadOnly("cannot remove the last seal: the cluster key would be lost".into()))
                    } else if !users.is_empty() {
                        Err(Outcome::ReadOnly(format!(
                            "seal '{seal_id}' is what node(s) {users:?} last unsealed with; restart them with the new seal first"
                        )))
                    } else {
                        m.wrapped.retain(|c| c.seal_id != *seal_id);
                        Ok(vec![Write::Put(TreeId::Meta, META_CLUSTER.to_vec(), encode(&m))])
                    }
                }
            },
            Op::SignMembership { record } => Ok(vec![Write::Put(
                TreeId::Meta,
                super::store::META_MEMBERSHIP.to_vec(),
                record.clone(),
            )]),
            Op::SealUse { node_id, seal_id } => Ok(vec![Write::Put(
                TreeId::Meta,
                super::store::seal_use_key(*node_id),
                seal_id.as_bytes().to_vec(),
            )]),
            Op::RestoreFinish {
                wrapped,
                storage_version,
                metadata,
            } => match self.cluster_meta()? {
                None => Err(Outcome::ReadOnly("the cluster is not initialised".into())),
                Some(_) if metadata
                    .as_ref()
                    .is_some_and(|seen| self.metadata_digest().is_ok_and(|now| now != seen.as_slice())) =>
                {
                    Err(Outcome::MetadataChanged)
                }
                Some(mut m) => {
                    m.wrapped = wrapped.clone();
                    m.storage_version = *storage_version;
                    m.restores = m.restores.saturating_add(1);
                    Ok(vec![Write::Put(
                        TreeId::Meta,
                        META_CLUSTER.to_vec(),
                        encode(&m),
                    )])
                }
            },
            Op::Tombstone { node_id, spki } => Ok(vec![
                Write::Put(TreeId::Meta, super::store::tombstone_key(spki), node_id.to_be_bytes().to_vec()),
                Write::Del(TreeId::Meta, super::store::seal_use_key(*node_id)),
            ]),
            Op::CreateEnclave {
                name,
                admin: enclave_admin,
                sig,
            } => {
                if self.enclave_exists(name)? {
                    Err(Outcome::EnclaveExists)
                } else {
                    let mut entry = EnclaveEntry::new(cmd.time, &by).administered_by(enclave_admin);
                    entry.sig = sig.clone();
                    Ok(vec![Write::Put(
                        TreeId::Enclaves,
                        name.as_bytes().to_vec(),
                        encode(&entry),
                    )])
                }
            }
            Op::DeleteEnclave { name, force } => {
                if name == DEFAULT_ENCLAVE {
                    Err(Outcome::ReadOnly(
                        "the default enclave cannot be deleted".into(),
                    ))
                } else if !self.enclave_exists(name)? {
                    Err(Outcome::EnclaveNotFound)
                } else {
                    // An enclave's records are one contiguous range of each tree (keyed
                    // `<enclave>\0<name>`): reading them costs what the enclave holds, no more.
                    let scope = scoped(name, "");
                    let holds_keys = self.keys.scan_prefix(&scope).next().transpose()?.is_some();
                    if holds_keys && !force {
                        Err(Outcome::EnclaveNotEmpty)
                    } else {
                        let mut writes =
                            vec![Write::Del(TreeId::Enclaves, name.as_bytes().to_vec())];
                        for (tree, id) in [
                            (&self.keys, TreeId::Keys),
                            (&self.policies, TreeId::Policies),
                            (&self.identities, TreeId::Identities),
                        ] {
                            for kv in tree.scan_prefix(&scope) {
                                writes.push(Write::Del(id, kv?.0.to_vec()));
                            }
                        }
                        Ok(writes)
                    }
                }
            }
        })
    }

    /// Replaces the config-declared policies and identities of the default enclave. Entries
    /// whose content did not change are left alone, so their creation time survives restarts.
    fn plan_config_policies(
        &self,
        policies: &[(String, crate::auth::Policy, Vec<String>)],
        sigs: &[(String, serde_bytes::ByteBuf, super::Signature)],
        time: i64,
        admin: &str,
    ) -> Result<Result<Vec<Write>, Outcome>, StateError> {
        let sig_of = |tree: &str, key: &[u8]| {
            sigs.iter()
                .find(|(t, k, _)| t == tree && k.as_slice() == key)
                .map(|(_, _, s)| s.clone())
                .unwrap_or_default()
        };
        let e = DEFAULT_ENCLAVE;
        let mut writes = Vec::new();
        let mut wanted_ids = std::collections::BTreeMap::new();
        for (name, policy, ids) in policies {
            match self.policy(e, name)? {
                Some(p) if !p.from_config => {
                    return Ok(Err(Outcome::ConfigClash(format!(
                        "policy '{name}' is declared in the config file and was also made through the API; rename one of them"
                    ))));
                }
                Some(p) if p.policy == *policy => {}
                _ => {
                    let mut entry = PolicyEntry::new(policy.clone(), time, admin, true);
                    entry.sig = sig_of("policies", &scoped(e, name));
                    writes.push(Write::Put(
                        TreeId::Policies,
                        scoped(e, name),
                        encode(&entry),
                    ));
                }
            }
            for id in ids {
                wanted_ids.insert(id.clone(), name.clone());
            }
        }
        for (id, policy) in &wanted_ids {
            match self.identity(e, id)? {
                Some(i) if !i.from_config => {
                    return Ok(Err(Outcome::ConfigClash(format!(
                        "identity '{id}' is assigned in the config file and also through the API; remove one assignment"
                    ))));
                }
                Some(i) if i.policy == *policy => {}
                _ => {
                    let mut entry = IdentityEntry::new(policy, time, admin, true);
                    entry.sig = sig_of("identities", &scoped(e, id));
                    writes.push(Write::Put(
                        TreeId::Identities,
                        scoped(e, id),
                        encode(&entry),
                    ));
                }
            }
        }
        for name in self.names_in(&self.policies, e)? {
            let gone = !policies.iter().any(|(n, _, _)| *n == name);
            if gone && self.policy(e, &name)?.is_some_and(|p| p.from_config) {
                writes.push(Write::Del(TreeId::Policies, scoped(e, &name)));
            }
        }
        for id in self.names_in(&self.identities, e)? {
            if !wanted_ids.contains_key(&id)
                && self.identity(e, &id)?.is_some_and(|i| i.from_config)
            {
                writes.push(Write::Del(TreeId::Identities, scoped(e, &id)));
            }
        }
        Ok(Ok(writes))
    }
}

fn min_above_newest(entry: &KeyEntry) -> Outcome {
    Outcome::BadKeyVersion(format!("the key's newest version is {}", entry.version))
}

fn read_only_policy(name: &str) -> Outcome {
    Outcome::ReadOnly(format!(
        "policy '{name}' is declared in the config file and is read-only; change it there"
    ))
}

fn read_only_identity(id: &str) -> Outcome {
    Outcome::ReadOnly(format!(
        "identity '{id}' is assigned in the config file and is read-only; change it there"
    ))
}

#[cfg(test)]
mod tests;
