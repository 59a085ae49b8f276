//! The serving lease: how a node knows, without a round trip, that no other leader can have
//! acknowledged a write it has not seen.
//!
//! openraft never makes a leader that lost its quorum step down, so this applies to every
//! role. The leader confirms its leadership with a heartbeat round (`ensure_linearizable`)
//! every heartbeat interval; a follower asks the leader for its read index, and the leader
//! answers only inside its own lease. A confirmation is dated by when it was *asked*, so
//! delays only shorten the lease, and on `CLOCK_BOOTTIME`, so a suspend shortens it too.
//!
//! A confirmation belongs to the term and the role it was obtained in. A follower that
//! becomes leader must not serve from what the old leader told it: the old leader may have
//! acknowledged writes after that answer, which the new leader has not applied yet.
//!
//! The lease proves a *leader's* reads (a new leader needs the votes of followers that refuse
//! to vote while they hear from a leader, for longer than the lease). A follower's lease says
//! that it is in touch; when the leader also granted it a read lease (`raft/read_leases.rs`),
//! it reads without asking. Either way its reads go through [`Cluster::read_barrier`].

use super::Cluster;
use super::boot_clock::BootInstant;
use crate::raft::NodeId;
use kes_cluster_proto::ReadIndexRequest;
use openraft::ServerState;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// In which role a confirmation was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
    /// A follower the leader granted a read lease.
    LeaseHolder,
}

#[derive(Debug, Clone, Copy)]
struct Confirmation {
    until: BootInstant,
    index: u64,
    /// The term this node was in when it asked.
    term: u64,
    /// Whether it asked as the leader (a quorum round) or as a follower (the leader's answer),
    /// and, as a follower, whether the leader granted it a read lease until `until`
    /// (`raft/read_leases.rs`), so it may read without asking.
    role: Role,
}

impl Confirmation {
    fn as_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// The latest confirmation, and when the last one was obtained (for status).
#[derive(Debug, Default)]
pub struct Lease {
    confirmed: Mutex<Option<Confirmation>>,
    /// Milliseconds since the process started, at the last confirmation (0: never).
    last_contact_ms: AtomicU64,
    /// `(term, index)`: this node led `term` when it stopped, and its log then ended at
    /// `index`. See [`Lease::resuming`].
    resumed: Option<(u64, u64)>,
}

impl Lease {
    /// The lease of a node whose log, at startup, ended at `last_index`, and which led
    /// `led_term` when it stopped.
    ///
    /// openraft restores such a node as leader of that term at once, without an election and
    /// so without a first entry of its own to commit. Its read index is then the commit index
    /// it wrote down, which is never synced: after a power cut it can be older than writes it
    /// had applied and acknowledged (every one of which is in its log, which is synced before
    /// an entry is sent to anyone). Until it has applied its whole log as it was, its reads
    /// could miss them; in that term its read index is at least `last_index`.
    pub fn resuming(led_term: Option<u64>, last_index: Option<u64>) -> Lease {
        Lease {
            resumed: led_term.zip(last_index),
            ..Lease::default()
        }
    }

    /// The least read index of a leader in `term`.
    fn floor(&self, term: u64) -> u64 {
        match self.resumed {
            Some((led, index)) if led == term => index,
            _ => 0,
        }
    }

    fn record(&self, next: Confirmation, asked_at: BootInstant, started: BootInstant) {
        let mut c = self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        // A later answer from the same term and role extends the lease; one from a new term or
        // role replaces it, whatever its expiry.
        let replaces = c.is_none_or(|old| {
            old.term != next.term || old.as_leader() != next.as_leader() || old.until < next.until
        });
        if replaces {
            *c = Some(next);
        }
        self.last_contact_ms.store(
            asked_at.saturating_duration_since(started).as_millis() as u64 + 1,
            Ordering::Relaxed,
        );
    }

    fn current(&self) -> Option<Confirmation> {
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clear(&self) {
        *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Cluster {
    /// The confirmation that holds now for this node's term and role, if any.
    fn valid_confirmation(&self) -> Result<Confirmation, String> {
        let (state, term, leader) =
            self.with_metrics(|m| (m.state, m.current_term, m.current_leader));
        match state {
            ServerState::Leader | ServerState::Follower | ServerState::Learner => {}
            other => return Err(format!("node is {other:?}, not serving")),
        }
        if leader.is_none() {
            return Err("no leader is known".into());
        }
        let c = self
            .lease
            .current()
            .filter(|c| c.term == term && c.as_leader() == (state == ServerState::Leader))
            .ok_or("the serving lease is not confirmed in this term yet")?;
        let planted = c.as_leader() && crate::planted::active(crate::planted::Bug::ServePastLease);
        if BootInstant::now() >= c.until && !planted {
            return Err(
                "the serving lease expired: this node cannot confirm it is up to date".into(),
            );
        }
        Ok(c)
    }

    /// Whether this node is in touch with a leader that holds its quorum, and has applied what
    /// that leader last told it; the error says why not. This is readiness, not a read check:
    /// reads pass [`Cluster::read_barrier`].
    pub fn serving(&self) -> Result<(), String> {
        let c = self.valid_confirmation()?;
        let applied = self.applied_index();
        if applied < c.index {
            return Err(format!("catching up: applied {applied} of {}", c.index));
        }
        Ok(())
    }

    /// Like [`Cluster::serving`], but a node a few entries behind gets `within` to apply them
    /// before it is called not ready: applying takes well under a millisecond.
    pub async fn serving_within(&self, within: Duration) -> Result<(), String> {
        let c = self.valid_confirmation()?;
        if self.wait_applied(c.index, within).await {
            Ok(())
        } else {
            self.serving()
        }
    }

    /// On the leader, inside its lease: the index every read must have applied to see each
    /// write acknowledged before now. `None` when a quorum round is needed first.
    pub(super) fn leader_lease_index(&self) -> Option<u64> {
        let c = self.valid_confirmation().ok()?;
        c.as_leader().then(|| c.index.max(self.sent_commit.get()))
    }

    /// On a follower inside a read lease: the index a read must have applied to see every
    /// write exposed anywhere before now. The leader exposes nothing that is not in this
    /// node's log, so its whole log as it is now covers every such write; the read index of
    /// the confirmation covers those exposed before the lease began. `None` without a lease.
    pub(super) fn follower_lease_index(&self) -> Option<u64> {
        let c = self.valid_confirmation().ok()?;
        (c.role == Role::LeaseHolder).then(|| c.index.max(self.last_appended.get()))
    }

    /// The index of the latest confirmation (the leader's read index), 0 before any.
    pub fn lease_index(&self) -> u64 {
        self.lease.current().map(|c| c.index).unwrap_or(0)
    }

    /// Milliseconds since the last lease confirmation, if any.
    pub fn millis_since_contact(&self) -> Option<u64> {
        let at = self.lease.last_contact_ms.load(Ordering::Relaxed);
        (at > 0).then(|| (self.started.elapsed().as_millis() as u64).saturating_sub(at - 1))
    }

    fn record_confirmation(
        &self,
        asked: BootInstant,
        valid_for: Duration,
        index: u64,
        term: u64,
        role: Role,
    ) {
        let c = Confirmation {
            until: asked + valid_for,
            index,
            term,
            role,
        };
        self.lease.record(c, asked, self.started);
    }

    /// Confirms leadership with a quorum (on the leader) and returns the read index.
    pub(super) async fn confirm_as_leader(&self) -> Result<u64, String> {
        let asked = BootInstant::now();
        let term = self.with_metrics(|m| m.current_term);
        let within = self.settings.lease;
        // Not `ensure_linearizable`, which also waits for the apply: the apply may be held
        // back for a read-lease holder that stopped answering, and the lease must not lapse
        // meanwhile. A read waits for the apply itself (`read_barrier`).
        match tokio::time::timeout(within, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _applied))) => {
                let index = read
                    .map(|l| l.index)
                    .unwrap_or(0)
                    .max(self.lease.floor(term));
                self.record_confirmation(asked, self.settings.lease, index, term, Role::Leader);
                Ok(index)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no quorum answered within the lease".into()),
        }
    }

    /// The leader's answer to a follower: its read index, if its own lease holds. Every write
    /// this leader acknowledged, it had applied first; and every read it answered saw its
    /// store, which it writes before openraft counts an entry applied. So the index of the
    /// last entry in its store covers both; openraft's applied index may lag it, and a
    /// follower that waited only for that could answer older than a read here just did. And
    /// every read another follower answered saw at most the commit index this leader sent it
    /// ([`crate::raft::SentCommit`]), which this leader may not have applied yet.
    ///
    /// `caller`, a follower, gets a read lease for the rest of this leader's own when it keeps
    /// up. The lease is granted *before* the index is read: a write exposed after the index
    /// was read is then held back until the follower has it.
    pub(super) fn leader_read_index(
        &self,
        caller: Option<NodeId>,
    ) -> Result<(u64, Duration, bool), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        let c = self.valid_confirmation()?;
        if !c.as_leader() {
            return Err("leader lease not confirmed yet".into());
        }
        let left = c.until.saturating_duration_since(BootInstant::now());
        let exposed = || {
            let stored = self.state.applied_index();
            let sent = self.sent_commit.get();
            c.index.max(self.applied_index()).max(stored).max(sent)
        };
        let granted =
            caller.is_some_and(|node| self.read_leases.grant(node, c.term, left, exposed()));
        Ok((exposed(), left, granted))
    }

    /// A follower's confirmation round with the leader.
    pub(super) async fn confirm_as_follower(&self) -> Result<u64, String> {
        let (_, leader) = self.leader().ok_or("no leader is known")?;
        let mut client = self.channels.member_client(&leader)?;
        let asked = BootInstant::now();
        let term = self.with_metrics(|m| m.current_term);
        let mut req = tonic::Request::new(ReadIndexRequest {
            cluster_id: self.cluster_id(),
        });
        req.set_timeout(self.settings.lease);
        let r = client
            .read_index(req)
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        if !r.not_leader.is_empty() {
            return Err(r.not_leader);
        }
        let valid = Duration::from_millis(r.lease_remaining_ms).min(self.settings.lease);
        // The leader's record of a read lease runs from its answer, this one from the question:
        // a margin for clocks that run at slightly different rates keeps this one shorter.
        let (valid, role) = match r.read_lease {
            true => (valid - valid / 32, Role::LeaseHolder),
            false => (valid, Role::Follower),
        };
        self.record_confirmation(asked, valid, r.commit_index, term, role);
        Ok(r.commit_index)
    }

    /// One confirmation round in this node's current role: the read index it returns covers
    /// every write acknowledged anywhere before the round began.
    pub(super) async fn confirm_round(&self) -> Result<u64, String> {
        if self.is_leader() {
            self.confirm_as_leader().await
        } else {
            self.confirm_as_follower().await
        }
    }

    /// Sends a commit index that was held back for a read-lease holder as soon as every holder
    /// has the entries: a heartbeat carries it, instead of the next write or heartbeat.
    pub async fn send_held_back_commits(self: std::sync::Arc<Self>) {
        loop {
            self.read_leases.held_back_released().await;
            if self.raft.trigger().heartbeat().await.is_err() {
                return; // Raft has shut down
            }
        }
    }

    /// Keeps the lease fresh: one confirmation per heartbeat interval, forever.
    pub async fn keep_lease(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.heartbeat).await;
            let (state, leader) = self.with_metrics(|m| (m.state, m.current_leader));
            let result = match state {
                ServerState::Leader => self.confirm_as_leader().await.map(|_| ()),
                ServerState::Follower | ServerState::Learner if leader.is_some() => {
                    self.confirm_as_follower().await.map(|_| ())
                }
                _ => Err("no leader".into()),
            };
            if let Err(e) = result {
                tracing::debug!("lease not confirmed: {e}");
                if !matches!(
                    state,
                    ServerState::Leader | ServerState::Follower | ServerState::Learner
                ) {
                    self.lease.clear();
                }
            }
        }
    }
}
