//! Indexes `apply` keeps beside the data, so that no delete scans a whole tree.
//!
//! - **Policy members**, `index/member/<enclave>\0<policy>\0<identity>` → empty: one entry per
//!   assignment, so `DeletePolicy` finds the identities it revokes with one prefix scan.
//! - **Version census**, `index/census/<tree>\0<version>` → count (both big-endian): how many
//!   records of each data tree are sealed (keys) or signed (metadata) under each storage-key
//!   version, so `RekeyFinish` learns whether anything is left under the old key from a
//!   handful of counters. A record whose version cannot be read counts as version 0, as it
//!   must: nothing proves it was re-sealed.
//!
//! (`DeleteEnclave` needs no index of its own: records are keyed `<enclave>\0<name>`, so an
//! enclave's records are one contiguous range of each tree.)
//!
//! **Invariant:** whenever `index/through` equals the applied index, the index entries are
//! exactly what [`State::rebuild_indexes`] derives from the data trees. Why it holds:
//!
//! - every write to a data tree goes through `apply`'s write list, and [`State::index_writes`]
//!   derives the index changes from that list and the records it replaces; `apply` commits
//!   them, and moves `index/through`, in the same write as the data;
//! - the entries live in `meta`, so a snapshot dump and install carry them together with the
//!   data they describe and with `index/through`, with no list of trees to keep in step;
//! - whatever else moves the applied index either carries `index/through` along, when it was
//!   current ([`State::record_applied`]), or leaves it behind: a data dir or snapshot of an
//!   older version, or entries an older binary applied. `apply` rebuilds from the data trees
//!   whenever it finds the marker behind. A rebuild is a pure function of the data trees, so
//!   every replica ends with the same index whenever it rebuilds.

use super::super::model::{EnclaveEntry, IdentityEntry, KeyEntry, PolicyEntry};
use super::super::store::{State, StateError, decode, scoped};
use super::{TreeId, Write};
use std::collections::{BTreeMap, HashMap};

/// `meta` key: the applied index the indexes are current at.
pub(super) const INDEX_THROUGH: &[u8] = b"index/through";
const INDEX_PREFIX: &[u8] = b"index/";
const MEMBER_PREFIX: &[u8] = b"index/member/";
const CENSUS_PREFIX: &[u8] = b"index/census/";

/// What the indexes need to know about one data record.
#[derive(Clone)]
struct Indexed {
    /// The storage-key version it is sealed or signed under (0: unknown).
    version: u32,
    /// For an identity: the enclave and the policy it is assigned to, and its name.
    member: Option<Vec<u8>>,
}

impl TreeId {
    /// The tree's name in sled and in dumps.
    pub(super) fn name(self) -> &'static str {
        match self {
            TreeId::Keys => "keys",
            TreeId::Policies => "policies",
            TreeId::Identities => "identities",
            TreeId::Enclaves => "enclaves",
            TreeId::Meta => "meta",
        }
    }

    /// The tree's name in census keys; `None` for `meta`, which is not indexed.
    fn census_name(self) -> Option<&'static [u8]> {
        (self != TreeId::Meta).then(|| self.name().as_bytes())
    }
}

/// The data trees the census counts, in a fixed order.
const CENSUS_TREES: [TreeId; 4] = [
    TreeId::Keys,
    TreeId::Policies,
    TreeId::Identities,
    TreeId::Enclaves,
];

/// What the indexes record about `value` stored under `key` in `tree`. Never fails: a record
/// that does not decode counts as version 0 and indexes no membership.
fn indexed(tree: TreeId, key: &[u8], value: &[u8]) -> Indexed {
    let member = match tree {
        TreeId::Identities => decode::<IdentityEntry>("identities", value)
            .ok()
            .and_then(|e| member_key(key, &e.policy)),
        _ => None,
    };
    Indexed {
        version: data_record_version(tree, value).unwrap_or(0),
        member,
    }
}

/// The storage-key version a data record is sealed (keys) or signed (metadata) under; `None`
/// for `meta` and for a record that does not decode.
pub(super) fn data_record_version(tree: TreeId, value: &[u8]) -> Option<u32> {
    match tree {
        TreeId::Keys => decode::<KeyEntry>("keys", value)
            .ok()
            .and_then(|e| crate::seal::record_version(&e.sealed)),
        TreeId::Policies => decode::<PolicyEntry>("policies", value)
            .ok()
            .map(|e| e.sig.version),
        TreeId::Identities => decode::<IdentityEntry>("identities", value)
            .ok()
            .map(|e| e.sig.version),
        TreeId::Enclaves => decode::<EnclaveEntry>("enclaves", value)
            .ok()
            .map(|e| e.sig.version),
        TreeId::Meta => None,
    }
}

/// `index/member/<enclave>\0<policy>\0<identity>` for the identity record keyed
/// `<enclave>\0<identity>`.
fn member_key(identity_key: &[u8], policy: &str) -> Option<Vec<u8>> {
    let split = identity_key.iter().position(|b| *b == 0)?;
    let (enclave, identity) = (&identity_key[..split], &identity_key[split + 1..]);
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(enclave);
    k.push(0);
    k.extend_from_slice(policy.as_bytes());
    k.push(0);
    k.extend_from_slice(identity);
    Some(k)
}

fn member_prefix(enclave: &str, policy: &str) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&scoped(enclave, policy));
    k.push(0);
    k
}

fn census_key(tree: &[u8], version: u32) -> Vec<u8> {
    let mut k = CENSUS_PREFIX.to_vec();
    k.extend_from_slice(tree);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// (tree, version) of a census key.
fn parse_census_key(k: &[u8]) -> Option<(&[u8], u32)> {
    let rest = k.strip_prefix(CENSUS_PREFIX)?;
    let split = rest.iter().position(|b| *b == 0)?;
    let version: [u8; 4] = rest[split + 1..].try_into().ok()?;
    Some((&rest[..split], u32::from_be_bytes(version)))
}

fn count(v: &[u8]) -> Result<u64, StateError> {
    let b: [u8; 8] = v.try_into().map_err(|_| StateError::Corrupt {
        tree: "meta",
        reason: "a census count is not 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(b))
}

impl State {
    /// Whether the indexes are current: `index/through` equals the applied index.
    pub(super) fn indexes_current(&self) -> Result<bool, StateError> {
        let through = self.meta.get(INDEX_THROUGH)?;
        Ok(through.as_deref() == Some(&self.applied_index().to_be_bytes()[..]))
    }

    /// Derives every index from the data trees, replacing what was there, in one atomic
    /// batch, and marks them current at the applied index. Runs once per data dir or
    /// snapshot written by an older version; O(records).
    pub(super) fn rebuild_indexes(&self) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        // Every record written below is under INDEX_PREFIX, so each one either is read here
        // or did not exist: what a running snapshot dump keeps (`dump_view.rs`).
        let mut replaced = Vec::new();
        for kv in self.meta.scan_prefix(INDEX_PREFIX) {
            let (k, v) = kv?;
            batch.remove(&k);
            replaced.push((k, v));
        }
        let mut made = Vec::new();
        let mut census: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for tree in CENSUS_TREES {
            let name = tree.census_name().expect("data trees have census names");
            for kv in self.tree_of(tree).iter() {
                let (k, v) = kv?;
                let i = indexed(tree, &k, &v);
                *census.entry(census_key(name, i.version)).or_default() += 1;
                if let Some(m) = i.member {
                    batch.insert(m.as_slice(), &[]);
                    made.push(m);
                }
            }
        }
        for (k, n) in census {
            batch.insert(k.as_slice(), &n.to_be_bytes());
            made.push(k);
        }
        batch.insert(INDEX_THROUGH, &self.applied_index().to_be_bytes());
        made.push(INDEX_THROUGH.to_vec());
        for (k, v) in replaced {
            self.dump_view.keep("meta", &k, Some(v));
        }
        for k in made {
            // A no-op for a record kept above: the first pre-image stays.
            self.dump_view.keep("meta", &k, None);
        }
        self.meta.apply_batch(batch)?;
        Ok(())
    }

    /// The index writes that keep the indexes exact once `writes` are applied, derived from
    /// `writes` and the records they replace (the current ones, or an earlier write of the
    /// same list). Costs one read per data write and one per census counter touched.
    pub(super) fn index_writes(&self, writes: &[Write]) -> Result<Vec<Write>, StateError> {
        let mut pending: HashMap<(TreeId, &[u8]), Option<Indexed>> = HashMap::new();
        let mut census: BTreeMap<Vec<u8>, i128> = BTreeMap::new();
        let mut out = Vec::new();
        for w in writes {
            let (tree, key, value) = match w {
                Write::Put(t, k, v) => (*t, k.as_slice(), Some(v.as_slice())),
                Write::Del(t, k) => (*t, k.as_slice(), None),
            };
            let Some(name) = tree.census_name() else {
                continue;
            };
            let old = match pending.get(&(tree, key)) {
                Some(p) => p.clone(),
                None => self.tree_of(tree).get(key)?.map(|v| indexed(tree, key, &v)),
            };
            let new = value.map(|v| indexed(tree, key, v));
            if let Some(old) = &old {
                *census.entry(census_key(name, old.version)).or_default() -= 1;
                if let Some(m) = &old.member {
                    out.push(Write::Del(TreeId::Meta, m.clone()));
                }
            }
            if let Some(new) = &new {
                *census.entry(census_key(name, new.version)).or_default() += 1;
                if let Some(m) = &new.member {
                    out.push(Write::Put(TreeId::Meta, m.clone(), Vec::new()));
                }
            }
            pending.insert((tree, key), new);
        }
        for (k, delta) in census {
            if delta == 0 {
                continue;
            }
            let now = match self.meta.get(&k)? {
                Some(v) => i128::from(count(&v)?),
                None => 0,
            };
            let after = u64::try_from(now + delta).map_err(|_| StateError::Corrupt {
                tree: "meta",
                reason: "a census count would go below zero: the indexes do not match the data"
                    .into(),
            })?;
            out.push(match after {
                0 => Write::Del(TreeId::Meta, k),
                n => Write::Put(TreeId::Meta, k, n.to_be_bytes().to_vec()),
            });
        }
        Ok(out)
    }

    /// The `identities` record keys of everyone assigned `policy` in `enclave`.
    pub(super) fn policy_members(
        &self,
        enclave: &str,
        policy: &str,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let prefix = member_prefix(enclave, policy);
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let mut record = scoped(enclave, "");
            record.extend_from_slice(&k[prefix.len()..]);
            out.push(record);
        }
        Ok(out)
    }

    /// How many data records are sealed or signed under a storage-key version older than
    /// `version`, the signed membership included.
    pub(super) fn records_under_older_key(&self, version: u32) -> Result<u64, StateError> {
        let mut n = 0;
        for kv in self.meta.scan_prefix(CENSUS_PREFIX) {
            let (k, v) = kv?;
            match parse_census_key(&k) {
                Some((_, at)) if at < version => n += count(&v)?,
                Some(_) => {}
                None => {
                    return Err(StateError::Corrupt {
                        tree: "meta",
                        reason: "a census key does not parse".into(),
                    });
                }
            }
        }
        if self
            .signed_membership()?
            .is_some_and(|m| m.sig.version < version)
        {
            n += 1;
        }
        Ok(n)
    }

    fn tree_of(&self, tree: TreeId) -> &sled::Tree {
        match tree {
            TreeId::Keys => &self.keys,
            TreeId::Policies => &self.policies,
            TreeId::Identities => &self.identities,
            TreeId::Enclaves => &self.enclaves,
            TreeId::Meta => &self.meta,
        }
    }
}
