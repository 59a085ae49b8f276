//! The unsealed-key cache of the read path.
//!
//! One entry per (enclave, name), holding the key as its record was when it was opened. A
//! deleted and re-created name is never served the old material, because the delete evicted
//! it. Entries are dropped after `cache.expiry.any`, or
//! when unused for `cache.expiry.unused`; material is zeroized on drop.
//!
//! A cached key is served without reading its record, so eviction is what makes a change
//! stick. `apply` evicts what a command will change or remove before it writes the store
//! ([`KeyCache::hold_for`]), caches nothing more until it has written it, and evicts again
//! then ([`KeyCache::forget_applied`]), before openraft publishes the index: a read that
//! must see the change, having waited for that index, finds the key evicted, and so does a
//! request that saw the change in the store (a describe answering 404, say) and then asks
//! for the key. A delete of one key costs every node two map removals, not a cold cache. A key
//! opened while such a command was applied may have been opened from the record before it:
//! every eviction moves the cache's generation on, and a key is cached only if the generation
//! has not moved since before its record was read, and no change is being applied
//! ([`KeyCache::insert`]).

use crate::crypto::KeyVersions;
use crate::state::{Command, Op};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Enclave → key name → the cached incarnation.
type Entries = HashMap<String, HashMap<String, Entry>>;

/// The entries, how many evictions there have been, and how many changes are being applied.
#[derive(Default)]
struct Cached {
    entries: Entries,
    generation: u64,
    /// Commands held for ([`KeyCache::hold_for`]) and not yet applied: nothing is cached
    /// meanwhile. An apply that fails leaves it above zero, and the node caches nothing more
    /// (openraft stops the node's Raft on a storage error anyway).
    held: u64,
}

struct Entry {
    key: Arc<LoadedKey>,
    loaded: Instant,
    used: Instant,
}

/// A key opened for crypto: its retained versions, and the lowest that may decrypt.
#[derive(Debug)]
pub struct LoadedKey {
    /// The retained versions.
    pub versions: KeyVersions,
    /// Versions below it refuse to decrypt (the record's `min_decrypt`).
    pub min_decrypt: u32,
}

/// Unsealed keys in memory.
pub struct KeyCache {
    cached: Mutex<Cached>,
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
            cached: Mutex::new(Cached::default()),
            any,
            unused,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached key, if present and fresh: the record it was opened from is current, as every
    /// applied change of it evicted it.
    pub fn get(&self, enclave: &str, name: &str) -> Option<Arc<LoadedKey>> {
        let mut cached = self.lock();
        let names = cached.entries.get_mut(enclave)?;
        let e = names.get_mut(name)?;
        let now = Instant::now();
        if self.expired(e, now) {
            names.remove(name);
            return None;
        }
        e.used = now;
        Some(e.key.clone())
    }

    /// Whether `e` is past `cache.expiry.any` since it was loaded, or `cache.expiry.unused`
    /// since it was last served, at `now`.
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        let too_old = !self.any.is_zero() && now.duration_since(e.loaded) > self.any;
        let idle = !self.unused.is_zero() && now.duration_since(e.used) > self.unused;
        too_old || idle
    }

    /// The generation to pass to [`KeyCache::insert`]: read it before the key's record.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches a freshly unsealed key, opened from a record read after `generation` was: if
    /// anything was evicted since, or a change is being applied, the record may be one an
    /// applied command replaces, and the key is not cached (it is still good for the request
    /// that opened it, which began before that command was applied). Returns whether it was
    /// cached.
    pub fn insert(&self, enclave: &str, name: &str, key: Arc<LoadedKey>, generation: u64) -> bool {
        let mut cached = self.lock();
        if cached.held > 0 || cached.generation != generation {
            return false;
        }
        let now = Instant::now();
        cached
            .entries
            .entry(enclave.to_owned())
            .or_default()
            .insert(
                name.to_owned(),
                Entry {
                    key,
                    loaded: now,
                    used: now,
                },
            );
        true
    }

    /// Called by `apply` just before it writes `applying` to the store (`None`: a snapshot
    /// install): evicts what the command will change, and caches nothing until
    /// [`KeyCache::forget_applied`] for the same command.
    pub fn hold_for(&self, applying: Option<&Command>) {
        let mut cached = self.lock();
        if evict_for(&mut cached.entries, applying) {
            cached.generation += 1;
            cached.held += 1;
        }
    }

    /// Called by `apply` once it has written `applied` (refused commands too): evicts again
    /// what it changed, and ends what [`KeyCache::hold_for`] began.
    pub fn forget_applied(&self, applied: Option<&Command>) {
        let mut cached = self.lock();
        if evict_for(&mut cached.entries, applied) {
            cached.generation += 1;
            cached.held = cached.held.saturating_sub(1);
        }
    }

    /// Drops everything (on seal and unseal); a key being opened meanwhile is not cached.
    pub fn clear(&self) {
        let mut cached = self.lock();
        cached.generation += 1;
        cached.entries.clear();
    }

    /// Evicts stale entries; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut cached = self.lock();
        let map = &mut cached.entries;
        for names in map.values_mut() {
            names.retain(|_, e| !self.expired(e, now));
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

/// Removes from `entries` what `applied` changes or removes, and says whether it changes any
/// key record's versions or minimum: one key for a key delete, rotation, retirement or
/// minimum version, the keys a rekey re-sealed (the same material: evicted all the same, so no
/// cached key outlives a write of its record), an enclave's keys for an enclave delete, and
/// everything for a restore or a snapshot install (`None`). A rotation period changes neither.
fn evict_for(entries: &mut Entries, applied: Option<&Command>) -> bool {
    let Some(cmd) = applied else {
        entries.clear();
        return true;
    };
    match &cmd.op {
        Op::DeleteKey { name }
        | Op::RotateKey { name, .. }
        | Op::RetireKeyVersions { name, .. }
        | Op::SetKeyMinVersion { name, .. }
        | Op::SealKeyMinVersion { name, .. } => remove_name_in(entries, &cmd.enclave, name),
        Op::Reseal { items } => {
            for (enclave, name, _, _) in items {
                remove_name_in(entries, enclave, name);
            }
        }
        Op::DeleteEnclave { name, .. } => {
            entries.remove(name);
        }
        // `apply` holds and forgets a batch's commands one by one; this is for any other caller.
        Op::Batch { commands } => {
            let mut changes = false;
            for c in commands {
                changes |= evict_for(entries, Some(c));
            }
            return changes;
        }
        Op::RestoreChunk { .. } | Op::RestoreFinish { .. } => entries.clear(),
        _ => return false,
    }
    true
}

fn remove_name_in(entries: &mut Entries, enclave: &str, name: &str) {
    if let Some(names) = entries.get_mut(enclave) {
        names.remove(name);
        if names.is_empty() {
            entries.remove(enclave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyCache, LoadedKey};
    use crate::crypto::{Cipher, KeyVersions, SecretKey, StoredKey};
    use crate::state::{Command, Op};
    use std::sync::Arc;
    use std::time::Duration;

    /// A fresh key at version 1.
    fn key() -> Arc<LoadedKey> {
        let versions = KeyVersions::first(StoredKey {
            key: SecretKey::generate(Cipher::Aes256),
            created_at: None,
            created_by: String::new(),
        });
        Arc::new(LoadedKey {
            versions,
            min_decrypt: 0,
        })
    }

    /// A cache holding the (enclave, name) keys of `keys`, with no expiry.
    fn holding(keys: &[(&str, &str)]) -> KeyCache {
        let cache = KeyCache::new(Duration::ZERO, Duration::ZERO);
        for (enclave, name) in keys {
            assert!(cache.insert(enclave, name, key(), cache.generation()));
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

    fn is_cached(cache: &KeyCache, enclave: &str, name: &str) -> bool {
        cache.get(enclave, name).is_some()
    }

    #[test]
    fn an_applied_key_delete_forgets_that_key_only() {
        let cache = holding(&[("default", "a"), ("default", "b"), ("tenant", "a")]);
        let delete_a = applied("default", Op::DeleteKey { name: "a".into() });
        cache.forget_applied(Some(&delete_a));
        assert!(
            !is_cached(&cache, "default", "a"),
            "a deleted key must never be served from the cache"
        );
        assert!(is_cached(&cache, "default", "b"), "key b was evicted");
        assert!(
            is_cached(&cache, "tenant", "a"),
            "the same name in another enclave was evicted"
        );
    }

    #[test]
    fn enclave_delete_and_snapshot_install_forget_more() {
        let cache = holding(&[("default", "a"), ("tenant", "a"), ("tenant", "b")]);
        let force = Op::DeleteEnclave {
            name: "tenant".into(),
            force: true,
        };
        cache.forget_applied(Some(&applied("default", force)));
        assert!(!is_cached(&cache, "tenant", "a"));
        assert!(!is_cached(&cache, "tenant", "b"));
        assert!(is_cached(&cache, "default", "a"));
        cache.forget_applied(None);
        assert!(!is_cached(&cache, "default", "a"));
    }

    #[test]
    fn every_change_of_a_key_record_forgets_the_key() {
        let changes = [
            Op::RotateKey {
                name: "a".into(),
                creation_id: 1,
                from_version: 1,
                revision: 0,
                sealed: Vec::new(),
            },
            Op::Reseal {
                items: vec![("default".into(), "a".into(), 1, Default::default())],
            },
            Op::Batch {
                commands: vec![applied("default", Op::DeleteKey { name: "a".into() })],
            },
            Op::RestoreChunk {
                tree: "keys".into(),
                items: Vec::new(),
            },
        ];
        for change in changes {
            let cache = holding(&[("default", "a")]);
            cache.forget_applied(Some(&applied("default", change.clone())));
            assert!(!is_cached(&cache, "default", "a"), "{change:?}");
        }
        let cache = holding(&[("default", "a")]);
        let unrelated = Op::DeletePolicy { name: "p".into() };
        cache.forget_applied(Some(&applied("default", unrelated)));
        assert!(
            is_cached(&cache, "default", "a"),
            "a policy delete evicted a key"
        );
    }

    /// The race the generation closes: a read opens a key from its record, a delete (or any
    /// change) of that record is applied and evicts nothing, and only then would the read
    /// cache what it opened.
    #[test]
    fn a_key_opened_before_a_change_was_applied_is_not_cached_after_it() {
        let cache = holding(&[]);
        let before = cache.generation();
        let delete = applied("default", Op::DeleteKey { name: "a".into() });
        cache.forget_applied(Some(&delete));
        assert!(!cache.insert("default", "a", key(), before));
        assert!(!is_cached(&cache, "default", "a"));
        // A change of any other key counts too: the generation is one for the whole cache.
        let before = cache.generation();
        let delete_b = applied("default", Op::DeleteKey { name: "b".into() });
        cache.forget_applied(Some(&delete_b));
        assert!(!cache.insert("default", "a", key(), before));
        let now = cache.generation();
        assert!(cache.insert("default", "a", key(), now));
        assert!(is_cached(&cache, "default", "a"));
    }

    /// Between `apply`'s write of a change and its hook, the store already shows the change:
    /// a key cached in that window, or before it, would be served against what the store says.
    #[test]
    fn while_a_change_is_applied_its_key_is_evicted_and_nothing_is_cached() {
        let cache = holding(&[("default", "a"), ("default", "b")]);
        let delete_a = applied("default", Op::DeleteKey { name: "a".into() });
        cache.hold_for(Some(&delete_a));
        assert!(
            !is_cached(&cache, "default", "a"),
            "evicted before the write"
        );
        assert!(is_cached(&cache, "default", "b"));
        // Opened from the record before the delete was written, and offered after the hold:
        let during = cache.generation();
        assert!(!cache.insert("default", "a", key(), during));
        assert!(!cache.insert("default", "c", key(), during));
        cache.forget_applied(Some(&delete_a));
        assert!(!is_cached(&cache, "default", "a"));
        let after = cache.generation();
        assert!(cache.insert("default", "c", key(), after));
        // A command that changes no key record holds nothing.
        let unrelated = applied("default", Op::DeletePolicy { name: "p".into() });
        cache.hold_for(Some(&unrelated));
        assert!(cache.insert("default", "d", key(), cache.generation()));
        cache.forget_applied(Some(&unrelated));
        // A snapshot install holds everything.
        cache.hold_for(None);
        assert!(!is_cached(&cache, "default", "b"));
        assert!(!cache.insert("default", "b", key(), cache.generation()));
        cache.forget_applied(None);
        assert!(cache.insert("default", "b", key(), cache.generation()));
    }
}
