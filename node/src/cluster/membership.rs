//! Membership changes on the leader that wait out another change in flight.
//!
//! openraft takes one membership change at a time and refuses a second with `InProgress`. Two
//! nodes joining at once (as `kes-cluster dev` starts them), or a join during a remove, would
//! otherwise fail half-way: the first step (add as learner) landed, the second (promote) did
//! not. The change in flight commits within a few heartbeats, so the second one waits for it.

use super::Cluster;
use crate::raft::{NodeId, NodeInfo, TypeConfig};
use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use std::time::{Duration, Instant};

/// How long a change waits for one in flight.
const WAIT_FOR_CHANGE_IN_FLIGHT: Duration = Duration::from_secs(30);

type ChangeResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>;

fn in_progress(result: &ChangeResult) -> bool {
    matches!(
        result,
        Err(RaftError::APIError(
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))
        ))
    )
}

impl Cluster {
    /// Adds `id` as a learner and waits until it is close to the leader's log.
    pub(super) async fn add_learner_when_free(
        &self,
        id: NodeId,
        info: NodeInfo,
    ) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_FOR_CHANGE_IN_FLIGHT;
        loop {
            let result = self.raft.add_learner(id, info.clone(), true).await;
            if !in_progress(&result) || Instant::now() >= deadline {
                return result.map(drop).map_err(|e| e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Applies `change` to the membership.
    pub(super) async fn change_membership_when_free(
        &self,
        change: ChangeMembers<NodeId, NodeInfo>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_FOR_CHANGE_IN_FLIGHT;
        loop {
            let result = self.raft.change_membership(change.clone(), false).await;
            if !in_progress(&result) || Instant::now() >= deadline {
                return result.map(drop).map_err(|e| e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
