//! Follows openraft's metrics: logs leadership changes (one "became leader in term N" line per
//! term, which the tests use to check that no term ever had two leaders) and exports the
//! `kes_cluster_*` gauges.

use super::Cluster;
use crate::obs::Metrics;
use openraft::ServerState;
use std::sync::Arc;

/// Runs until the Raft node shuts down.
pub async fn watch_metrics(cluster: Arc<Cluster>, metrics: Metrics) {
    let mut rx = cluster.raft.metrics();
    let mut led_term = None;
    let mut leader = None;
    let mut snapshot = None;
    loop {
        let m = rx.borrow_and_update().clone();
        if m.state == ServerState::Leader {
            cluster.read_leases.lead(m.current_term);
        } else if led_term.is_some() {
            cluster.read_leases.step_down();
        }
        if m.state == ServerState::Leader && led_term != Some(m.current_term) {
            led_term = Some(m.current_term);
            tracing::info!(
                "node {} became leader in term {}",
                cluster.node_id,
                m.current_term
            );
        }
        if m.current_leader != leader {
            if leader.is_some() || m.current_leader.is_some() {
                metrics.cluster_leader_changes.inc();
            }
            leader = m.current_leader;
        }
        if m.snapshot != snapshot {
            if m.snapshot.is_some() {
                metrics.cluster_snapshots.inc();
                tracing::info!("snapshot at {:?}", m.snapshot.map(|l| l.index));
            }
            snapshot = m.snapshot;
        }
        let role = match m.state {
            ServerState::Follower => 0.0,
            ServerState::Candidate => 1.0,
            ServerState::Leader => 2.0,
            ServerState::Learner => 3.0,
            ServerState::Shutdown => 4.0,
        };
        metrics.cluster_role.set(role);
        metrics.cluster_term.set(m.current_term as f64);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        metrics.cluster_applied_index.set(applied as f64);
        metrics
            .cluster_commit_index
            .set(cluster.lease_index().max(applied) as f64);
        let last = m.last_log_index.unwrap_or(0);
        let lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.values()
                    .map(|l| last.saturating_sub(l.map(|l| l.index).unwrap_or(0)))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        metrics.cluster_replication_lag_max.set(lag as f64);
        if rx.changed().await.is_err() {
            return;
        }
    }
}
