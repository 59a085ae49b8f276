//! Follower read leases: a follower answers reads from its own state with no round trip to
//! the leader, and no read anywhere can miss a write that any node has already exposed.
//!
//! A write is *exposed* once some node applies it: from then on a read there, or an
//! acknowledgement, can show it. The leader grants a follower a read lease when the follower
//! confirms its lease (every heartbeat), and from then until the lease ends it exposes an
//! entry only once that follower holds it in its log:
//!
//! - the leader applies an entry (and so acknowledges it, or answers reads with it) only once
//!   every holder of an unexpired lease has appended it ([`ReadLeases::exposable`]);
//! - the commit index it sends a follower is held at what every *other* holder has appended
//!   ([`ReadLeases::commit_for`]), since a follower applies what it is told is committed.
//!
//! A holder then answers a read once it has applied its whole log as it was when the read
//! arrived (and the read index of its last confirmation): every exposed entry is in it. This
//! is the invalidation-before-acknowledgement design (Chubby), with the log itself as the
//! invalidation: deletes and revocations cost no extra round, and an entry reaches a holder in
//! the same AppendEntries as always.
//!
//! The leader's record of a lease starts when it grants it and the follower's when it asked,
//! both for the same length, so the leader's ends later. Each lease ends no later than the
//! leader's own, so no new leader can expose anything while one from an older term holds. A
//! holder that stops keeping up is not renewed, so a dead or slow follower holds writes back
//! for at most one lease (`cluster.lease`).

use super::NodeId;
use crate::cluster::boot_clock::BootInstant;
use openraft::LogId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The leader's table of read leases, shared by the Raft network (which records what each
/// follower appended and holds commit indexes back), the state machine (which waits before it
/// applies) and the ReadIndex service (which grants).
#[derive(Debug, Clone, Default)]
pub struct ReadLeases(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    table: Mutex<Table>,
    /// Woken when a holder appended more, or the table was cleared.
    changed: Notify,
    /// Set when a commit index was held back; then a follower must hear the higher one soon.
    held_back: AtomicBool,
    /// Woken when a held-back commit index can now be sent.
    resend: Notify,
}

#[derive(Debug, Default)]
struct Table {
    /// The term this node leads, while it grants leases in it (0: none).
    term: u64,
    holders: HashMap<NodeId, Holder>,
    /// The last entry each follower has appended in this term, holder or not: an entry of this
    /// leader's log, so its log id can be sent as a commit index.
    appended: HashMap<NodeId, LogId<NodeId>>,
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    until: BootInstant,
    /// A renewal needs the follower to have appended this much: what was exposed at the
    /// previous grant, a heartbeat ago.
    renew_floor: u64,
}

impl Table {
    fn appended_index(&self, node: NodeId) -> u64 {
        self.appended.get(&node).map_or(0, |l| l.index)
    }

    /// Among the holders of an unexpired lease but `except`, the one that has appended least
    /// (`Err` when one has appended nothing), and when the first of those that hold `index`
    /// back runs out.
    #[allow(clippy::type_complexity)]
    fn blocking(
        &self,
        index: u64,
        except: Option<NodeId>,
    ) -> (Option<Result<LogId<NodeId>, ()>>, Option<BootInstant>) {
        let now = BootInstant::now();
        let mut least: Option<Result<LogId<NodeId>, ()>> = None;
        let mut first_end: Option<BootInstant> = None;
        for (node, h) in &self.holders {
            if Some(*node) == except || h.until <= now {
                continue;
            }
            let appended = self.appended.get(node).copied().ok_or(());
            let behind = match (&least, appended) {
                (_, Err(())) => true,
                (None, Ok(_)) => true,
                (Some(Err(())), _) => false,
                (Some(Ok(l)), Ok(a)) => a.index < l.index,
            };
            if behind {
                least = Some(appended);
            }
            if self.appended_index(*node) < index {
                first_end = Some(first_end.map_or(h.until, |e| e.min(h.until)));
            }
        }
        (least, first_end)
    }
}

impl ReadLeases {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node leads `term`: a table from another term is dropped.
    pub fn lead(&self, term: u64) {
        let mut t = self.table();
        if t.term != term {
            *t = Table {
                term,
                ..Table::default()
            };
        }
    }

    /// This node no longer leads: it holds nothing back. A follower's lease from it ends with
    /// this node's own lease, before another leader can be elected.
    pub fn step_down(&self) {
        {
            let mut t = self.table();
            if t.term == 0 {
                return; // cleared already: the metrics watch calls this on every change
            }
            *t = Table::default();
        }
        self.0.changed.notify_waiters();
    }

    /// `node` acknowledged an append up to `last` from this node as leader of `term`.
    pub fn appended(&self, node: NodeId, term: u64, last: LogId<NodeId>) {
        let raised = {
            let mut t = self.table();
            if t.term != term || term == 0 {
                return;
            }
            let raised = t.appended_index(node) < last.index;
            if raised {
                t.appended.insert(node, last);
            }
            raised && t.holders.contains_key(&node)
        };
        if raised {
            self.0.changed.notify_waiters();
            if self.0.held_back.swap(false, Ordering::SeqCst) {
                self.0.resend.notify_one();
            }
        }
    }

    /// Grants or renews `node`'s lease for `valid_for`, when this node leads `term` and the
    /// follower keeps up: it has appended all that was exposed at its previous grant, or, for
    /// a first grant, all that is `exposed` now. Returns whether it holds a lease now.
    pub fn grant(&self, node: NodeId, term: u64, valid_for: Duration, exposed: u64) -> bool {
        let mut t = self.table();
        if t.term != term || term == 0 {
            return false;
        }
        let now = BootInstant::now();
        let appended = t.appended_index(node);
        let floor = match t.holders.get(&node) {
            Some(h) if h.until > now => h.renew_floor,
            _ => exposed,
        };
        if appended < floor {
            return false;
        }
        t.holders.insert(
            node,
            Holder {
                until: now + valid_for,
                renew_floor: exposed,
            },
        );
        true
    }

    /// The commit index to send `target`, given the leader's `commit`: no higher than what
    /// every other holder has appended (`None`: none yet).
    pub fn commit_for(&self, target: NodeId, commit: LogId<NodeId>) -> Option<LogId<NodeId>> {
        let (least, _) = self.table().blocking(commit.index, Some(target));
        match least {
            Some(Ok(l)) if l.index >= commit.index => Some(commit),
            None => Some(commit),
            held => {
                self.0.held_back.store(true, Ordering::SeqCst);
                held.and_then(Result::ok)
            }
        }
    }

    /// Waits until every holder of an unexpired lease has appended `index`, so the leader may
    /// apply it. Returns at once on a node that leads no term.
    pub async fn exposable(&self, index: u64) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (_, first_end) = self.table().blocking(index, None);
            let Some(end) = first_end else {
                return;
            };
            let left = end.saturating_duration_since(BootInstant::now());
            let _ = tokio::time::timeout(left, changed).await;
        }
    }

    /// Waits until a commit index held back from a follower may be sent.
    pub async fn held_back_released(&self) {
        self.0.resend.notified().await;
    }
}

/// The index of the last entry this node's log holds, set (`SharedIndex::set`, as a truncation
/// lowers it) before an append is acknowledged.
pub type LastAppended = super::SharedIndex;

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(200);

    fn at(index: u64) -> LogId<NodeId> {
        LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
    }

    fn commit_for(l: &ReadLeases, target: NodeId, commit: u64) -> u64 {
        l.commit_for(target, at(commit)).map_or(0, |c| c.index)
    }

    #[test]
    fn a_commit_index_is_held_at_what_every_other_holder_appended() {
        let l = ReadLeases::default();
        l.lead(3);
        l.appended(2, 3, at(10));
        l.appended(3, 3, at(10));
        assert!(l.grant(2, 3, LEASE, 10));
        assert!(l.grant(3, 3, LEASE, 10));
        l.appended(2, 3, at(15));
        // Node 3 has not appended 11..15: node 2 may not apply them yet; node 3 may.
        assert_eq!(commit_for(&l, 2, 15), 10);
        assert_eq!(commit_for(&l, 3, 15), 15);
        l.appended(3, 3, at(15));
        assert_eq!(commit_for(&l, 2, 15), 15);
        // An append acknowledged in another term counts for nothing.
        l.appended(3, 2, at(20));
        assert_eq!(commit_for(&l, 2, 20), 15);
    }

    #[test]
    fn a_first_grant_needs_what_is_exposed_and_a_renewal_what_was() {
        let l = ReadLeases::default();
        assert!(
            !l.grant(2, 1, LEASE, 0),
            "a node that leads no term grants nothing"
        );
        l.lead(1);
        l.appended(2, 1, at(4));
        assert!(!l.grant(2, 1, LEASE, 5), "behind what is exposed");
        l.appended(2, 1, at(5));
        assert!(l.grant(2, 1, LEASE, 5));
        assert!(
            l.grant(2, 1, LEASE, 9),
            "has what was exposed at the first grant"
        );
        assert!(!l.grant(2, 1, LEASE, 12), "has not caught up with 9 since");
        l.appended(2, 1, at(9));
        assert!(l.grant(2, 1, LEASE, 12));
        l.lead(2);
        assert!(!l.grant(2, 1, LEASE, 12), "a grant of an older term");
        assert_eq!(
            commit_for(&l, 3, 12),
            12,
            "a new term starts with no holder"
        );
    }

    #[tokio::test]
    async fn the_leader_applies_once_every_holder_appended_or_its_lease_ran_out() {
        let l = ReadLeases::default();
        l.lead(1);
        l.appended(2, 1, at(1));
        l.appended(3, 1, at(1));
        assert!(l.grant(2, 1, LEASE, 1));
        assert!(l.grant(3, 1, Duration::from_secs(60), 1));
        tokio::time::timeout(Duration::from_millis(50), l.exposable(1))
            .await
            .expect("appended everywhere: no wait");
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.exposable(2).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !waiting.is_finished(),
            "applied before the holders appended it"
        );
        l.appended(2, 1, at(2));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "applied before node 3 appended it");
        l.appended(3, 1, at(2));
        tokio::time::timeout(Duration::from_millis(500), waiting)
            .await
            .expect("applies once both appended")
            .unwrap();
        // A holder that stops answering holds the leader back until its lease ends.
        let started = std::time::Instant::now();
        l.appended(3, 1, at(3));
        tokio::time::timeout(Duration::from_secs(5), l.exposable(3))
            .await
            .expect("the silent holder's lease ran out");
        assert!(started.elapsed() < LEASE + Duration::from_millis(100));
        l.step_down();
        tokio::time::timeout(Duration::from_millis(50), l.exposable(100))
            .await
            .expect("a node that stepped down holds nothing back");
    }
}
