//! The unsealed-key cache of the read path.
//!
//! One entry per (enclave, name), holding the creation id of the incarnation it was opened
//! from: a lookup with any other creation id misses, so a deleted and re-created name can never
//! be served the old material, and caching the new incarnation drops the old one. Entries are
//! dropped after `cache.expiry.any`, or when unused for `cache.expiry.unused`; material is
//! zeroized on drop.
//!
//! Applied deletes evict just what they deleted ([`KeyCache::forget_applied`]), so a delete of
//! one key costs every node one map removal, not a cold cache. Eviction is hygiene, not what
//! makes a delete stick: the read path looks the key record up in the applied state before it
//! asks the cache, and asks with that record's creation id.

use crate::crypto::KeyVersions;
use crate::state::{Command, KeyEntry, Op};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Enclave → key name → the cached incarnation.
type Entries = HashMap<String, HashMap<String, Entry>>;

struct Entry {
    stamp: KeyStamp,
    key: Arc<LoadedKey>,
    loaded: Instant,
    used: Instant,
}

/// Which record a key was opened from: its incarnation, its newest version and the lowest
/// that may decrypt. A cached key serves only reads of the same record: a rotation, a
/// retirement or a minimum version changes the stamp, so the old key is never served after
/// one is applied, even before [`KeyCache::forget_applied`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStamp {
    /// The incarnation of the name.
    pub creation_id: u128,
    /// The newest version.
    pub version: u32,
    /// Versions below it refuse to decrypt.
    pub min_decrypt: u32,
    /// The record's revision: a retirement keeps the newest version but not the revision.
    pub revision: u64,
}

impl KeyStamp {
    /// The stamp of the record `entry`.
    pub fn of(entry: &KeyEntry) -> KeyStamp {
        KeyStamp {
            creation_id: entry.creation_id,
            version: entry.version,
            min_decrypt: entry.min_decrypt,
            revision: entry.revision,
        }
    }
}

/// A key opened for crypto: its retained versions, and the record they came from.
#[derive(Debug)]
pub struct LoadedKey {
    /// The retained versions.
    pub versions: KeyVersions,
    /// The record's stamp (its `min_decrypt` bounds decryption).
    pub stamp: KeyStamp,
}

/// Unsealed keys in memory.
pub struct KeyCache {
    entries: Mutex<Entries>,
    any: Duration,
    unused: Duration,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(..)")
    }
}

impl KeyCache {
    /// A cache with the `cache.expiry` settings; a zero duration disables that rule.
    pub fn new(any: Duration, unused: Duration) -> Self {
        KeyCache {
            entries: Mutex::new(HashMap::new()),
            any,
            unused,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached key, if present, opened from the record `stamp` names, and fresh.
    pub fn get(&self, enclave: &str, name: &str, stamp: KeyStamp) -> Option<Arc<LoadedKey>> {
        let mut map = self.lock();
        let names = map.get_mut(enclave)?;
        let e = names.get_mut(name).filter(|e| e.stamp == stamp)?;
        let now = Instant::now();
        if !self.any.is_zero() && now.duration_since(e.loaded) > self.any {
            names.remove(name);
            return None;
        }
        e.used = now;
        Some(e.key.clone())
    }

    /// Caches a freshly unsealed key, replacing any other record of the name.
    pub fn insert(&self, enclave: &str, name: &str, key: Arc<LoadedKey>) {
        let now = Instant::now();
        self.lock().entry(enclave.to_owned()).or_default().insert(
            name.to_owned(),
            Entry {
                stamp: key.stamp,
                key,
                loaded: now,
                used: now,
            },
        );
    }

    /// Drops the cached incarnation of a name (on delete).
    pub fn remove_name(&self, enclave: &str, name: &str) {
        let mut map = self.lock();
        if let Some(names) = map.get_mut(enclave) {
            names.remove(name);
            if names.is_empty() {
                map.remove(enclave);
            }
        }
    }

    /// Drops every key of an enclave (on enclave delete).
    pub fn remove_enclave(&self, enclave: &str) {
        self.lock().remove(enclave);
    }

    /// Forgets what an applied command took away or changed: one key for a key delete,
    /// rotation, retirement or minimum version, an enclave's keys for an enclave delete, and
    /// everything after a snapshot install (`None`), which may have replaced any record. Other
    /// commands never change a key's versions under the same stamp (a rekey re-seals the same
    /// material), so they keep the cache.
    pub fn forget_applied(&self, applied: Option<&Command>) {
        let Some(cmd) = applied else {
            self.clear();
            return;
        };
        match &cmd.op {
            Op::DeleteKey { name }
            | Op::RotateKey { name, .. }
            | Op::RetireKeyVersions { name, .. }
            | Op::SetKeyMinVersion { name, .. }
            | Op::SealKeyMinVersion { name, .. } => self.remove_name(&cmd.enclave, name),
            Op::DeleteEnclave { name, .. } => self.remove_enclave(name),
            // A restore writes key records wholesale.
            Op::RestoreChunk { .. } | Op::RestoreFinish { .. } => self.clear(),
            _ => {}
        }
    }

    /// Drops everything (on seal).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Evicts stale entries; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut map = self.lock();
        for names in map.values_mut() {
            names.retain(|_, e| {
                let too_old = !self.any.is_zero() && now.duration_since(e.loaded) > self.any;
                let idle = !self.unused.is_zero() && now.duration_since(e.used) > self.unused;
                !(too_old || idle)
            });
        }
        map.retain(|_, names| !names.is_empty());
    }

    /// How often [`KeyCache::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        let candidates = [self.any, self.unused / 2];
        candidates
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(500))
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyCache, KeyStamp, LoadedKey};
    use crate::crypto::{Cipher, KeyVersions, SecretKey, StoredKey};
    use crate::state::{Command, Op};
    use std::sync::Arc;
    use std::time::Duration;

    /// The stamp of version 1 of incarnation `creation_id`.
    fn stamp(creation_id: u128) -> KeyStamp {
        KeyStamp {
            creation_id,
            version: 1,
            min_decrypt: 0,
            revision: 0,
        }
    }

    fn cached_at(cache: &KeyCache, enclave: &str, name: &str, stamp: KeyStamp) {
        let versions = KeyVersions::first(StoredKey {
            key: SecretKey::generate(Cipher::Aes256),
            created_at: None,
            created_by: String::new(),
        });
        cache.insert(enclave, name, Arc::new(LoadedKey { versions, stamp }));
    }

    fn cached(cache: &KeyCache, enclave: &str, name: &str, creation_id: u128) {
        cached_at(cache, enclave, name, stamp(creation_id));
    }

    /// A cache holding (enclave, name, creation id) of `keys`, with no expiry.
    fn holding(keys: &[(&str, &str, u128)]) -> KeyCache {
        let cache = KeyCache::new(Duration::ZERO, Duration::ZERO);
        for (enclave, name, creation_id) in keys {
            cached(&cache, enclave, name, *creation_id);
        }
        cache
    }

    fn applied(enclave: &str, op: Op) -> Command {
        Command {
            request_id: 1,
            identity: "admin".into(),
            path: "/".into(),
            enclave: enclave.into(),
            time: 1,
            op,
            restores_seen: None,
        }
    }

    #[test]
    fn an_applied_key_delete_forgets_that_key_only() {
        let cache = holding(&[("default", "a", 1), ("default", "b", 2), ("tenant", "a", 3)]);
        let delete_a = applied("default", Op::DeleteKey { name: "a".into() });
        cache.forget_applied(Some(&delete_a));
        assert!(
            cache.get("default", "a", stamp(1)).is_none(),
            "a deleted key must never be served from the cache"
        );
        assert!(
            cache.get("default", "b", stamp(2)).is_some(),
            "key b was evicted"
        );
        assert!(
            cache.get("tenant", "a", stamp(3)).is_some(),
            "the same name in another enclave was evicted"
        );
    }

    #[test]
    fn enclave_delete_and_snapshot_install_forget_more() {
        let cache = holding(&[("default", "a", 1), ("tenant", "a", 2), ("tenant", "b", 3)]);
        let force = Op::DeleteEnclave {
            name: "tenant".into(),
            force: true,
        };
        cache.forget_applied(Some(&applied("default", force)));
        assert!(cache.get("tenant", "a", stamp(2)).is_none());
        assert!(cache.get("tenant", "b", stamp(3)).is_none());
        assert!(cache.get("default", "a", stamp(1)).is_some());
        cache.forget_applied(None);
        assert!(cache.get("default", "a", stamp(1)).is_none());
    }

    #[test]
    fn a_new_incarnation_is_never_served_the_old_material() {
        let cache = holding(&[("default", "a", 1)]);
        assert!(cache.get("default", "a", stamp(2)).is_none());
        cached(&cache, "default", "a", 2);
        assert!(cache.get("default", "a", stamp(1)).is_none());
        assert!(cache.get("default", "a", stamp(2)).is_some());
    }

    #[test]
    fn a_rotated_retired_or_restricted_record_is_never_served_from_the_old_one() {
        let cache = holding(&[("default", "a", 1)]);
        for changed in [
            KeyStamp {
                version: 2,
                ..stamp(1)
            },
            KeyStamp {
                min_decrypt: 2,
                ..stamp(1)
            },
            KeyStamp {
                revision: 1,
                ..stamp(1)
            },
        ] {
            assert!(cache.get("default", "a", changed).is_none(), "{changed:?}");
        }
        let rotate = Op::RotateKey {
            name: "a".into(),
            creation_id: 1,
            from_version: 1,
            revision: 0,
            sealed: Vec::new(),
        };
        cache.forget_applied(Some(&applied("default", rotate)));
        assert!(cache.get("default", "a", stamp(1)).is_none());
    }
}
