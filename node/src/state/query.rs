//! Reads over the applied state. These never go through the writer.

use super::DEFAULT_ENCLAVE;
use super::model::{EnclaveEntry, IdentityEntry, KeyEntry, PolicyEntry};
use super::store::{State, StateError, get, scoped};

/// A metadata record: (tree, record key, raw value).
pub type MetadataRecord = (&'static str, Vec<u8>, Vec<u8>);

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Names in order.
    pub names: Vec<String>,
    /// The next name, when a limit cut the list short.
    pub continue_at: Option<String>,
}

impl State {
    /// A key of an enclave.
    pub fn key(&self, enclave: &str, name: &str) -> Result<Option<KeyEntry>, StateError> {
        get(&self.keys, "keys", &scoped(enclave, name))
    }

    /// A policy of an enclave.
    pub fn policy(&self, enclave: &str, name: &str) -> Result<Option<PolicyEntry>, StateError> {
        get(&self.policies, "policies", &scoped(enclave, name))
    }

    /// An identity's assignment in an enclave.
    pub fn identity(&self, enclave: &str, id: &str) -> Result<Option<IdentityEntry>, StateError> {
        get(&self.identities, "identities", &scoped(enclave, id))
    }

    /// An enclave.
    pub fn enclave(&self, name: &str) -> Result<Option<EnclaveEntry>, StateError> {
        get(&self.enclaves, "enclaves", name.as_bytes())
    }

    /// Whether the enclave exists (`default` always does once initialised).
    pub fn enclave_exists(&self, name: &str) -> Result<bool, StateError> {
        Ok(name == DEFAULT_ENCLAVE || self.enclaves.contains_key(name.as_bytes())?)
    }

    /// The admin identity of the cluster.
    pub fn admin(&self) -> Result<Option<String>, StateError> {
        // The admin is fixed when the cluster is made, and every request asks for it: read it
        // from the store once.
        if let Some(a) = self.admin_cache.get() {
            return Ok(Some(a.clone()));
        }
        let admin = self.cluster_meta()?.map(|m| m.admin);
        if let Some(a) = &admin {
            let _ = self.admin_cache.set(a.clone());
        }
        Ok(admin)
    }

    /// Key names of an enclave starting with `prefix`, from `start` on, at most `limit`.
    pub fn list_keys(
        &self,
        enclave: &str,
        prefix: &str,
        start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StateError> {
        list(&self.keys, enclave, prefix, start, limit)
    }

    /// Policy names of an enclave.
    pub fn list_policies(
        &self,
        enclave: &str,
        prefix: &str,
        start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StateError> {
        list(&self.policies, enclave, prefix, start, limit)
    }

    /// Identities assigned in an enclave.
    pub fn list_identities(
        &self,
        enclave: &str,
        prefix: &str,
        start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StateError> {
        list(&self.identities, enclave, prefix, start, limit)
    }

    /// Enclave names.
    pub fn list_enclaves(
        &self,
        prefix: &str,
        start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StateError> {
        let mut page = ListPage::default();
        let from = start.filter(|s| *s > prefix).unwrap_or(prefix);
        for item in self.enclaves.range(from.as_bytes()..) {
            let (k, _) = item?;
            let name = String::from_utf8_lossy(&k).into_owned();
            if !name.starts_with(prefix) {
                break;
            }
            if limit.is_some_and(|l| page.names.len() >= l) {
                page.continue_at = Some(name);
                break;
            }
            page.names.push(name);
        }
        Ok(page)
    }

    /// Every metadata record as (tree, record key, raw value): what the metadata MAC covers.
    pub fn metadata_records(&self) -> Result<Vec<MetadataRecord>, StateError> {
        let mut out = Vec::new();
        for (name, tree) in [
            ("policies", &self.policies),
            ("identities", &self.identities),
            ("enclaves", &self.enclaves),
        ] {
            for kv in tree.iter() {
                let (k, v) = kv?;
                out.push((name, k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// A digest of every metadata record and the signed membership: a restore's finish names
    /// the one its handler saw after re-signing them, and is refused if any changed since
    /// (a record written meanwhile is signed with the key the restore replaces).
    pub fn metadata_digest(&self) -> Result<Vec<u8>, StateError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        for (tree, key, value) in self.metadata_records()? {
            part(tree.as_bytes());
            part(&key);
            part(&value);
        }
        if let Some(m) = self.meta.get(super::store::META_MEMBERSHIP)? {
            part(b"meta");
            part(&m);
        }
        Ok(h.finalize().to_vec())
    }

    /// Every key record as (enclave, name, entry), for a rekey.
    pub fn all_keys(&self) -> Result<Vec<(String, String, KeyEntry)>, StateError> {
        let mut out = Vec::new();
        for kv in self.keys.iter() {
            let (k, v) = kv?;
            let Some(split) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let enclave = String::from_utf8_lossy(&k[..split]).into_owned();
            let name = String::from_utf8_lossy(&k[split + 1..]).into_owned();
            out.push((enclave, name, super::store::decode("keys", &v)?));
        }
        Ok(out)
    }

    /// Every name in an enclave's tree, for apply's pre-scans (enclave and policy deletes).
    pub(super) fn names_in(
        &self,
        tree: &sled::Tree,
        enclave: &str,
    ) -> Result<Vec<String>, StateError> {
        Ok(list(tree, enclave, "", None, None)?.names)
    }
}

fn list(
    tree: &sled::Tree,
    enclave: &str,
    prefix: &str,
    start: Option<&str>,
    limit: Option<usize>,
) -> Result<ListPage, StateError> {
    let scope = scoped(enclave, "");
    let from = scoped(enclave, start.filter(|s| *s > prefix).unwrap_or(prefix));
    let mut page = ListPage::default();
    for item in tree.range(from..) {
        let (k, _) = item?;
        if !k.starts_with(&scope) {
            break;
        }
        let name = String::from_utf8_lossy(&k[scope.len()..]).into_owned();
        if !name.starts_with(prefix) {
            break;
        }
        if limit.is_some_and(|l| page.names.len() >= l) {
            page.continue_at = Some(name);
            break;
        }
        page.names.push(name);
    }
    Ok(page)
}
