//! The second half of every remove, owned by whichever node leads: a member whose node
//! certificate is tombstoned is taken out of the membership, retried until the change lands.
//!
//! Remove commits the tombstone first, so every member refuses the removed node at once; the
//! membership change may then fail (a leader change, a change already in flight, a crash of
//! the node that took the request). This loop finishes it, so no tombstoned node stays a member.

use super::{AdminOp, Cluster};
use std::sync::Arc;
use std::time::Duration;

/// How often the leader looks for tombstoned members.
const EVERY: Duration = Duration::from_millis(500);

/// Runs for as long as the node does.
pub async fn evict_tombstoned(cluster: Arc<Cluster>) {
    loop {
        tokio::time::sleep(EVERY).await;
        if !cluster.is_leader() {
            continue;
        }
        let m = cluster.metrics();
        let tombstoned: Vec<_> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(_, n)| !n.spki.is_empty() && cluster.state.is_tombstoned(&n.spki))
            .map(|(id, _)| *id)
            .collect();
        for node_id in tombstoned {
            // A tombstoned leader is refused by its followers; one of them takes over and
            // removes it.
            if node_id == cluster.node_id {
                continue;
            }
            match cluster.run_admin(AdminOp::Remove { node_id }).await {
                Ok(_) => tracing::info!("removed tombstoned node {node_id} from the membership"),
                Err(e) => tracing::info!("tombstoned node {node_id} is still a member: {e}"),
            }
        }
    }
}
