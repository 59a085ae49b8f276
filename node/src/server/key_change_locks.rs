//! One lock per key (striped) for the changes a handler makes from the key's current record:
//! rotate and retire (`api/key_versions.rs`).
//!
//! Such a change is committed with the record revision it was made from, and `apply` refuses it
//! if another change landed first. Without a lock, N concurrent rotations of one key on one node
//! all read the same revision, one wins, and the others start over: the last of them may lose
//! N - 1 rounds in a row and run out of attempts (409), though nothing else touched the key.
//! Taking the key's lock across read, seal and commit makes the changes made through one node
//! wait for each other instead; only changes made through different nodes at once still race,
//! and those are what the attempts are for.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use tokio::sync::{Mutex, MutexGuard};

/// How many locks the keys share. Two keys on one stripe only wait for each other, and version
/// changes are rare operator actions, so a small number is plenty.
const STRIPES: usize = 64;

/// The striped locks.
#[derive(Debug)]
pub struct KeyChangeLocks {
    stripes: Box<[Mutex<()>]>,
}

impl Default for KeyChangeLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl KeyChangeLocks {
    /// Waits for, and holds until the guard drops, the lock of key `name` in `enclave`.
    pub async fn lock(&self, enclave: &str, name: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        (enclave, name).hash(&mut h);
        self.stripes[h.finish() as usize % self.stripes.len()]
            .lock()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_key_waits_for_its_own_lock_and_not_for_every_key() {
        let locks = KeyChangeLocks::default();
        let held = locks.lock("default", "a").await;
        assert!(locks.lock("default", "a").now_or_never().is_none(), "held");
        // 32 tries: tokio's budget of 128 lock attempts per poll of a task must not run out.
        let others = (0..32).map(|i| format!("k{i}"));
        let free = others.filter(|k| locks.lock("default", k).now_or_never().is_some());
        let free = free.count();
        assert!(free > 16, "most other keys are not held up: {free} of 32");
        drop(held);
        assert!(
            locks.lock("default", "a").now_or_never().is_some(),
            "released"
        );
    }
}
