//! Automatic key rotation (`rotate_every`): when each key is due, and the leader's loop that
//! proposes the rotations.
//!
//! A key's period and the time of its newest version are in its replicated record
//! (`KeyEntry::rotate_every`, `rotated_at`, set by `apply`), so every node knows when it is
//! due. Every node keeps the due times in memory, ordered, following what it applies (the
//! apply hook), so finding the due keys never scans the key store; a full scan happens only at
//! start, after a snapshot install and after a restore, off the apply path.
//!
//! Only the leader proposes, and a due rotation is proposed once: the leader checks the key's
//! record again before it proposes, and the rotation is made from one record revision and
//! applied only to it (`state/apply/key_versions.rs`). Should two leaders in turn propose the
//! same rotation, the second is refused as made from a changed key.

use crate::state::{Command, Op, State};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the leader looks for due keys.
const EVERY: Duration = Duration::from_secs(1);

/// The most rotations the leader proposes per look: a burst of due keys (after a long outage)
/// goes out over several seconds instead of all at once.
const PER_LOOK: usize = 64;

/// How long a rotation that failed waits before this node tries it again (in memory only).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a key at `limits.max_versions` waits before the leader tries again: retiring its
/// old versions takes an operator.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// (due time in Unix nanoseconds, enclave, key name).
type Due = (i64, String, String);

#[derive(Default)]
struct Table {
    due: BTreeSet<Due>,
    by_key: HashMap<(String, String), i64>,
    /// The last rebuild started: only it may swap its scan in (an older scan that finishes
    /// later would bring back what a newer one dropped).
    generation: u64,
    /// Whether a rebuild is under way, and the keys refreshed meanwhile: its scan may have
    /// read them before the change, so they are read again once it is swapped in.
    rebuilding: bool,
    touched: Vec<(String, String)>,
}

impl Table {
    fn set(&mut self, enclave: &str, name: &str, at: Option<i64>) {
        let key = (enclave.to_owned(), name.to_owned());
        if let Some(old) = self.by_key.remove(&key) {
            self.due.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(at) = at {
            self.due.insert((at, key.0.clone(), key.1.clone()));
            self.by_key.insert(key, at);
        }
    }
}

/// The due times of every key that rotates on its own.
#[derive(Default)]
pub struct RotationSchedule {
    table: Mutex<Table>,
}

impl std::fmt::Debug for RotationSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RotationSchedule({} keys)", self.lock().by_key.len())
    }
}

impl RotationSchedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every key of `state` again. Entries that a concurrent apply refreshed while the
    /// scan ran may come out older; the leader checks a key's record before it rotates it.
    pub fn rebuild(&self, state: &State) {
        let generation = {
            let mut table = self.lock();
            table.generation += 1;
            table.rebuilding = true;
            table.generation
        };
        let mut fresh = Table::default();
        match state.all_keys() {
            Ok(keys) => {
                for (enclave, name, entry) in keys {
                    fresh.set(&enclave, &name, entry.rotation_due());
                }
            }
            Err(e) => tracing::error!("key rotation schedule: cannot read the keys: {e}"),
        }
        let mut table = self.lock();
        if table.generation != generation {
            return; // A newer rebuild started: its scan replaces this one.
        }
        let touched = std::mem::take(&mut table.touched);
        fresh.generation = generation;
        *table = fresh;
        for (enclave, name) in touched {
            let at = due_of(state, &enclave, &name);
            table.set(&enclave, &name, at);
        }
    }

    /// Reads key `name` of `enclave` again: due when its record says, or not at all.
    pub fn refresh(&self, state: &State, enclave: &str, name: &str) {
        self.refresh_if(state, enclave, name, true);
    }

    /// [`RotationSchedule::refresh`], unless the change cannot have made the key due and the
    /// schedule does not hold it: a create or delete of a key that does not rotate, the bulk of
    /// what nodes apply, costs no read of the key store.
    fn refresh_if(&self, state: &State, enclave: &str, name: &str, may_rotate: bool) {
        // Read under the lock: two refreshes of one key (the apply hook's, the leader loop's)
        // then land in the order they read, and an older read never overwrites a newer.
        let mut table = self.lock();
        let held = || {
            table
                .by_key
                .contains_key(&(enclave.to_owned(), name.to_owned()))
        };
        if !may_rotate && !table.rebuilding && !held() {
            return;
        }
        let at = due_of(state, enclave, name);
        table.set(enclave, name, at);
        if table.rebuilding {
            table.touched.push((enclave.to_owned(), name.to_owned()));
        }
    }

    /// Follows a command this node applied (`None`: a snapshot was installed). A restore or a
    /// snapshot install replaces records wholesale: the schedule is rebuilt off this thread.
    pub fn follow(self: &Arc<Self>, state: &State, applied: Option<&Command>) {
        let Some(cmd) = applied else {
            return self.rebuild_in_background(state);
        };
        match &cmd.op {
            Op::CreateKey {
                name, rotate_every, ..
            } => self.refresh_if(state, &cmd.enclave, name, *rotate_every > 0),
            Op::DeleteKey { name }
            | Op::RotateKey { name, .. }
            | Op::RetireKeyVersions { name, .. } => {
                self.refresh_if(state, &cmd.enclave, name, false)
            }
            Op::SetKeyRotation { name, .. } => self.refresh(state, &cmd.enclave, name),
            Op::DeleteEnclave { name, .. } => {
                let mut table = self.lock();
                let gone: Vec<(String, String)> = table
                    .by_key
                    .keys()
                    .filter(|(e, _)| e == name)
                    .cloned()
                    .collect();
                for (enclave, key) in gone {
                    table.set(&enclave, &key, None);
                }
            }
            Op::RestoreFinish { .. } => self.rebuild_in_background(state),
            _ => {}
        }
    }

    /// [`RotationSchedule::rebuild`] on a thread of its own.
    pub fn rebuild_in_background(self: &Arc<Self>, state: &State) {
        let (schedule, state) = (self.clone(), state.clone());
        std::thread::spawn(move || schedule.rebuild(&state));
    }

    /// The keys due at `now` (Unix nanoseconds), earliest first, at most `limit`.
    fn due(&self, now: i64, limit: usize) -> Vec<(String, String)> {
        self.lock()
            .due
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .take(limit)
            .map(|(_, enclave, name)| (enclave.clone(), name.clone()))
            .collect()
    }

    /// Tries key `name` of `enclave` again no sooner than `until` (on this node only).
    fn postpone(&self, enclave: &str, name: &str, until: i64) {
        self.lock().set(enclave, name, Some(until));
    }
}

/// When key `name` of `enclave` is due, as its record says now.
fn due_of(state: &State, enclave: &str, name: &str) -> Option<i64> {
    state
        .key(enclave, name)
        .ok()
        .flatten()
        .and_then(|e| e.rotation_due())
}

fn now_nanos() -> i64 {
    crate::state::unix_nanos_now()
}

/// The leader's loop: proposes the rotation of every due key, as the admin. Runs for as long as
/// the node does.
pub(super) async fn rotate_due_keys(node: Arc<super::Node>) {
    loop {
        tokio::time::sleep(EVERY).await;
        if !node.cluster.is_leader() || node.seal.is_sealed() {
            continue;
        }
        let now = now_nanos();
        let Some(admin) = node.state.admin().ok().flatten() else {
            continue;
        };
        for (enclave, name) in node.rotation_schedule.due(now, PER_LOOK) {
            // The record decides, not the schedule, which may be a moment behind.
            let entry = node.state.key(&enclave, &name).ok().flatten();
            if entry
                .and_then(|e| e.rotation_due())
                .is_none_or(|at| at > now)
            {
                node.rotation_schedule.refresh(&node.state, &enclave, &name);
                continue;
            }
            match crate::api::rotate_as(node.clone(), &enclave, &name, &admin).await {
                Ok(version) => {
                    tracing::info!(
                        "rotated key '{name}' in enclave '{enclave}' to version {version} (rotate_every)"
                    )
                }
                // Rotated or retired meanwhile (by an operator, or by the previous leader,
                // whose rotation this node had not applied yet): its record says when next.
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
                    node.rotation_schedule.refresh(&node.state, &enclave, &name);
                }
                Err(e) => {
                    let wait = if e.message.contains("max_versions") {
                        FULL_RETRY_AFTER
                    } else {
                        RETRY_AFTER
                    };
                    tracing::warn!(
                        "cannot rotate key '{name}' in enclave '{enclave}' (rotate_every): {}; trying again in {}s",
                        e.message,
                        wait.as_secs()
                    );
                    let until = now.saturating_add(wait.as_nanos() as i64);
                    node.rotation_schedule.postpone(&enclave, &name, until);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_come_out_earliest_first_and_moved_or_removed_keys_move() {
        let s = RotationSchedule::default();
        {
            let mut t = s.lock();
            t.set("e", "late", Some(30));
            t.set("e", "early", Some(10));
            t.set("other", "mid", Some(20));
        }
        assert_eq!(
            s.due(25, 10),
            [("e".into(), "early".into()), ("other".into(), "mid".into())]
        );
        assert_eq!(s.due(25, 1).len(), 1, "at most the limit");
        s.postpone("e", "early", 40);
        s.lock().set("other", "mid", None);
        assert!(s.due(25, 10).is_empty());
        assert_eq!(s.due(40, 10).len(), 2);
        assert_eq!(s.lock().by_key.len(), 2);
    }
}
