//! The unsealed-key cache of the read path.
//!
//! Entries are keyed by (enclave, name, creation id): a deleted and re-created name has a new
//! creation id, so it can never be served the old material. Entries are dropped after
//! `cache.expiry.any`, or when unused for `cache.expiry.unused`; material is zeroized on drop.

use crate::crypto::SecretKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type CacheKey = (String, String, u128);

struct Entry {
    key: Arc<SecretKey>,
    loaded: Instant,
    used: Instant,
}

/// Unsealed keys in memory.
pub struct KeyCache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached key, if present and fresh.
    pub fn get(&self, enclave: &str, name: &str, creation_id: u128) -> Option<Arc<SecretKey>> {
        let mut map = self.lock();
        let k = (enclave.to_owned(), name.to_owned(), creation_id);
        let e = map.get_mut(&k)?;
        let now = Instant::now();
        if !self.any.is_zero() && now.duration_since(e.loaded) > self.any {
            map.remove(&k);
            return None;
        }
        e.used = now;
        Some(e.key.clone())
    }

    /// Caches a freshly unsealed key.
    pub fn insert(&self, enclave: &str, name: &str, creation_id: u128, key: Arc<SecretKey>) {
        let now = Instant::now();
        self.lock().insert(
            (enclave.to_owned(), name.to_owned(), creation_id),
            Entry {
                key,
                loaded: now,
                used: now,
            },
        );
    }

    /// Drops every incarnation of a name (on delete).
    pub fn remove_name(&self, enclave: &str, name: &str) {
        self.lock()
            .retain(|(e, n, _), _| !(e == enclave && n == name));
    }

    /// Drops every key of an enclave (on enclave delete).
    pub fn remove_enclave(&self, enclave: &str) {
        self.lock().retain(|(e, _, _), _| e != enclave);
    }

    /// Drops everything (on seal).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Evicts stale entries; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, e| {
            let too_old = !self.any.is_zero() && now.duration_since(e.loaded) > self.any;
            let idle = !self.unused.is_zero() && now.duration_since(e.used) > self.unused;
            !(too_old || idle)
        });
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
