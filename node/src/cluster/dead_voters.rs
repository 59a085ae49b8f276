//! Dead-node cleanup (`cluster.cleanup_dead_after`, off by default): the leader tombstones a
//! voter that has answered no Raft RPC for that long, and the eviction loop (`evict.rs`) then
//! takes it out of the membership, as `kes-cluster remove` would.
//!
//! Why: a dead voter still counts toward the quorum. With five voters and one dead, one more
//! failure is all the cluster can take, where the operator believes it takes two (Vault
//! Autopilot's users found their failure tolerance silently halved this way). Cleanup never
//! takes the voters below `cluster.min_voters` (default 3), and takes out one voter at a time.
//!
//! A leader only knows when a peer last answered it, so it counts from when it became leader:
//! after a leader change, a dead voter is removed `cleanup_dead_after` later than it could be,
//! never sooner.

use super::Cluster;
use crate::state::Op;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the leader looks.
const EVERY: Duration = Duration::from_secs(1);

/// Runs for as long as the node does; does nothing unless `after` is set.
pub async fn remove_dead_voters(cluster: Arc<Cluster>, after: Duration, min_voters: usize) {
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(EVERY).await;
        if !cluster.is_leader() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(Instant::now);
        let m = cluster.metrics();
        let membership = m.membership_config.membership();
        // One at a time: while a removal is under way (a member tombstoned but not yet out, or
        // a membership change in its joint phase), the voter count is not what it will be.
        let removing = membership
            .nodes()
            .any(|(_, n)| !n.spki.is_empty() && cluster.state.is_tombstoned(&n.spki));
        if removing || membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters: Vec<_> = membership.voter_ids().collect();
        if voters.len() <= min_voters {
            continue;
        }
        let silent_for = |id: u64| {
            let last = cluster
                .contact
                .last_heard(id)
                .map_or(since, |t| t.max(since));
            last.elapsed()
        };
        let Some(dead) = voters
            .iter()
            .copied()
            .filter(|id| *id != cluster.node_id)
            .find(|id| silent_for(*id) >= after)
        else {
            continue;
        };
        let Some(spki) = membership.get_node(&dead).map(|n| n.spki.clone()) else {
            continue;
        };
        if spki.is_empty() {
            continue;
        }
        tracing::warn!(
            "voter {dead} has not answered for {}s (cluster.cleanup_dead_after): removing it \
             for good; {} voters remain",
            silent_for(dead).as_secs(),
            voters.len() - 1
        );
        let Ok(Some(admin)) = cluster.state.admin() else {
            continue;
        };
        let op = Op::Tombstone {
            node_id: dead,
            spki,
        };
        let cmd = super::system_command(&admin, "/v1/cluster/remove/", op);
        if let Err(e) = cluster.write(cmd).await {
            tracing::warn!("could not tombstone dead voter {dead} yet: {e}");
        }
    }
}
