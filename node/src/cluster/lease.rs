//! The serving lease: a node answers reads only while it knows it is not stale.
//!
//! openraft never makes a leader that lost its quorum step down, so this applies to every
//! role. The leader confirms its leadership with a heartbeat round (`ensure_linearizable`)
//! every heartbeat interval; a follower asks the leader for its read index, and the leader
//! answers only inside its own lease. A confirmation is dated by when it was *asked*, so
//! delays only shorten the lease. A node serves while `now < confirmed_at + lease` and it has
//! applied the confirmed index. An isolated old leader therefore stops serving deleted keys
//! and revoked identities within one lease.

use super::Cluster;
use kes_cluster_proto::ReadIndexRequest;
use openraft::ServerState;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Confirmation {
    until: Instant,
    index: u64,
}

/// The latest confirmation, and when the last one was obtained (for status).
#[derive(Debug, Default)]
pub struct Lease {
    confirmed: Mutex<Option<Confirmation>>,
    /// Milliseconds since the process started, at the last confirmation (0: never).
    last_contact_ms: AtomicU64,
}

impl Lease {
    fn record(&self, asked_at: Instant, valid_for: Duration, index: u64, started: Instant) {
        let mut c = self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        let next = Confirmation {
            until: asked_at + valid_for,
            index,
        };
        if c.is_none_or(|old| old.until < next.until) {
            *c = Some(next);
        }
        self.last_contact_ms.store(
            asked_at.duration_since(started).as_millis() as u64 + 1,
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
    /// Whether this node may serve reads now; the error says why not.
    pub fn serving(&self) -> Result<(), String> {
        // On every request: borrow openraft's metrics instead of cloning them.
        let m = self.raft.metrics();
        let m = m.borrow();
        match m.state {
            ServerState::Leader | ServerState::Follower | ServerState::Learner => {}
            other => return Err(format!("node is {other:?}, not serving")),
        }
        if m.current_leader.is_none() {
            return Err("no leader is known".into());
        }
        let Some(c) = self.lease.current() else {
            return Err("the serving lease was never confirmed".into());
        };
        if Instant::now() >= c.until {
            return Err(
                "the serving lease expired: this node cannot confirm it is up to date".into(),
            );
        }
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        if applied < c.index {
            return Err(format!("catching up: applied {applied} of {}", c.index));
        }
        Ok(())
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

    /// Confirms leadership with a quorum (on the leader) and returns the read index.
    pub(super) async fn confirm_as_leader(&self) -> Result<u64, String> {
        let asked = Instant::now();
        let within = self.settings.lease;
        match tokio::time::timeout(within, self.raft.ensure_linearizable()).await {
            Ok(Ok(read)) => {
                let index = read.map(|l| l.index).unwrap_or(0);
                self.lease
                    .record(asked, self.settings.lease, index, self.started);
                Ok(index)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no quorum answered within the lease".into()),
        }
    }

    /// The leader's answer to a follower: its read index, if its own lease holds.
    pub(super) fn leader_read_index(&self) -> Result<(u64, Duration), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        let c = self
            .lease
            .current()
            .ok_or("leader lease not confirmed yet")?;
        let left = c.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("leader lease expired".into());
        }
        Ok((c.index.max(self.commit_floor()), left))
    }

    /// The commit index this leader knows to be committed (its applied index is a lower bound).
    fn commit_floor(&self) -> u64 {
        self.applied_index()
    }

    /// A follower's confirmation round with the leader.
    async fn confirm_as_follower(&self) -> Result<u64, String> {
        let (_, leader) = self.leader().ok_or("no leader is known")?;
        let mut client = self.channels.member_client(&leader)?;
        let asked = Instant::now();
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
        self.lease
            .record(asked, valid, r.commit_index, self.started);
        Ok(r.commit_index)
    }

    /// Confirms that this node's state is current, waiting (bounded) until it has applied the
    /// confirmed index. Used before answering 404, which must not come from a stale node.
    pub async fn confirm_current(&self) -> Result<(), String> {
        let index = if self.is_leader() {
            self.confirm_as_leader().await?
        } else {
            self.confirm_as_follower().await?
        };
        if self
            .wait_applied(index, self.settings.read_index_wait)
            .await
        {
            Ok(())
        } else {
            Err(format!(
                "could not apply up to the read index {index} in time"
            ))
        }
    }

    /// Keeps the lease fresh: one confirmation per heartbeat interval, forever.
    pub async fn keep_lease(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(self.settings.heartbeat).await;
            let m = self.metrics();
            let result = match m.state {
                ServerState::Leader => self.confirm_as_leader().await.map(|_| ()),
                ServerState::Follower | ServerState::Learner if m.current_leader.is_some() => {
                    self.confirm_as_follower().await.map(|_| ())
                }
                _ => Err("no leader".into()),
            };
            if let Err(e) = result {
                tracing::debug!("lease not confirmed: {e}");
                if !matches!(
                    m.state,
                    ServerState::Leader | ServerState::Follower | ServerState::Learner
                ) {
                    self.lease.clear();
                }
            }
        }
    }
}
