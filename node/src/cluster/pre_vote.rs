//! Elections with a pre-vote round (Raft thesis §9.6), which openraft 0.9 lacks.
//!
//! Without it, a follower that was cut off or paused for longer than the election timeout
//! starts an election as soon as it can: it raises its term, and when it comes back the
//! leader sees the higher term and steps down. One flaky link, or a VM paused for a moment,
//! then costs a whole cluster an election. So openraft's own election timer is off
//! (`Config::enable_elect = false`), and this node's timer first asks every voter whether it
//! would vote for it. Only a majority of yes (in every configuration of a joint membership)
//! lets it campaign, through `raft.trigger().elect()`.
//!
//! A voter says yes exactly when the real vote could succeed: it has not heard from a leader
//! for longer than openraft's leader lease (`ElectionTimeout::vote_refusal`, the lower bound
//! of the election timeout, during which openraft refuses real votes anyway), the proposed
//! term is above its own, and the candidate's log is at least as up to date as its own.
//! Nothing is written; a pre-vote changes no state.
//!
//! A refused pre-vote is tried again after a shorter random wait than the election timeout:
//! the voters may have heard from the leader a moment after this node did, and a pre-vote is
//! cheap (no term changes). So after a leader dies, one of the followers campaigns between
//! the lower and the upper bound after the last heartbeat.

use super::Cluster;
use crate::raft::{LogId, NodeId};
use futures_util::StreamExt;
use kes_cluster_proto::{PreVoteReply, PreVoteRequest};
use openraft::{CommittedLeaderId, ServerState};
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Cluster {
    /// This node's election timer; runs until the Raft node shuts down. `enabled` false: never
    /// campaign (a debug-build failpoint).
    pub async fn campaign(self: Arc<Self>, enabled: bool) {
        if !enabled {
            return;
        }
        let timeout = self.settings.election_timeout;
        let tick = timeout.min / 10;
        let random_wait = || {
            let (min, max) = (
                timeout.min.as_millis() as u64,
                timeout.max.as_millis() as u64,
            );
            Duration::from_millis(rand::rng().random_range(min..max.max(min + 1)))
        };
        let random_retry = || {
            let quarter = (timeout.min / 4).as_millis() as u64;
            Duration::from_millis(rand::rng().random_range(quarter..2 * quarter + 1))
        };
        let mut wait = random_wait();
        let mut last_try = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            let (state, voter) = self.with_metrics(|m| {
                let voters: BTreeSet<NodeId> =
                    m.membership_config.membership().voter_ids().collect();
                (m.state, voters.contains(&self.node_id))
            });
            match state {
                ServerState::Shutdown => return,
                ServerState::Leader | ServerState::Learner => continue,
                _ if !voter => continue,
                _ => {}
            }
            let Ok(heard) = self
                .raft
                .with_raft_state(|st| st.vote_last_modified())
                .await
            else {
                return;
            };
            let quiet_since = heard.map_or(last_try, |h| h.max(last_try));
            if quiet_since.elapsed() < wait {
                continue;
            }
            last_try = Instant::now();
            let Ok(term) = self
                .raft
                .with_raft_state(|st| st.vote_ref().leader_id().term)
                .await
            else {
                return;
            };
            match self.pre_vote().await {
                Ok(()) if self.voted_or_heard_since(last_try, term).await => {
                    // Another node won an election while the pre-vote ran (this node voted for
                    // it, or already hears from it): campaigning now would depose it.
                    wait = random_wait();
                    tracing::debug!("pre-vote granted, but a leader was elected meanwhile");
                }
                Ok(()) => {
                    wait = random_wait();
                    tracing::info!("pre-vote granted by a majority: starting an election");
                    if self.raft.trigger().elect().await.is_err() {
                        return;
                    }
                }
                Err(why) => {
                    wait = random_retry();
                    tracing::debug!("pre-vote not granted: {why}");
                }
            }
        }
    }

    /// Whether this node's term moved past `term`, or it heard from a leader, after `since`.
    async fn voted_or_heard_since(&self, since: Instant, term: u64) -> bool {
        self.raft
            .with_raft_state(move |st| {
                st.vote_ref().leader_id().term != term
                    || st.vote_last_modified().is_some_and(|t| t > since)
            })
            .await
            .unwrap_or(true)
    }

    /// The last entry of this node's log.
    fn last_log_id(&self) -> Result<Option<LogId>, String> {
        let state = self.log.log_state_now().map_err(|e| e.to_string())?;
        Ok(state.last_log_id)
    }

    /// Asks every voter; `Ok` when a majority of every configuration (this node included)
    /// would vote for it in the next term.
    async fn pre_vote(&self) -> Result<(), String> {
        let last = self.last_log_id()?;
        let (term, configs, members) = self.with_metrics(|m| {
            let membership = m.membership_config.membership();
            let members: Vec<_> = membership
                .nodes()
                .map(|(id, info)| (*id, info.clone()))
                .collect();
            (
                m.current_term + 1,
                membership.get_joint_config().clone(),
                members,
            )
        });
        let req = PreVoteRequest {
            cluster_id: self.cluster_id(),
            term,
            has_log: last.is_some(),
            last_log_term: last.map_or(0, |l| l.leader_id.term),
            last_log_node: last.map_or(0, |l| l.leader_id.node_id),
            last_log_index: last.map_or(0, |l| l.index),
        };
        let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
        let asks = members
            .into_iter()
            .filter(|(id, _)| *id != self.node_id && voters.contains(id))
            .map(|(id, info)| {
                let req = req.clone();
                let wait = self.settings.election_timeout.min / 2;
                let client = self.channels.member_client(&info);
                async move {
                    let mut client = client.ok()?;
                    let mut req = tonic::Request::new(req);
                    req.set_timeout(wait);
                    let reply = client.pre_vote(req).await.ok()?.into_inner();
                    reply.granted.then_some(id)
                }
            });
        // Counted as the answers come: waiting for every voter would wait out the timeout of
        // one that is down (the very case an election is for), and the longer a pre-vote
        // takes, the likelier another node has won an election meanwhile.
        let mut asks: futures_util::stream::FuturesUnordered<_> = asks.collect();
        let mut granted = BTreeSet::from([self.node_id]);
        let yes = |granted: &BTreeSet<NodeId>, config: &BTreeSet<NodeId>| {
            config.iter().filter(|id| granted.contains(id)).count()
        };
        let majority = |granted: &BTreeSet<NodeId>| {
            configs
                .iter()
                .all(|config| yes(granted, config) > config.len() / 2)
        };
        while !majority(&granted) {
            match asks.next().await {
                Some(Some(id)) => {
                    granted.insert(id);
                }
                Some(None) => {}
                None => break,
            }
        }
        for config in &configs {
            let yes = yes(&granted, config);
            if yes <= config.len() / 2 {
                return Err(format!(
                    "{yes} of {} voters would vote for this node in term {term}",
                    config.len()
                ));
            }
        }
        Ok(())
    }

    /// A peer asks whether this node would vote for it.
    pub(super) async fn answer_pre_vote(&self, req: &PreVoteRequest) -> PreVoteReply {
        let refuse = |reason: &str| PreVoteReply {
            granted: false,
            reason: reason.to_owned(),
        };
        if self.is_leader() {
            return refuse("this node is the leader");
        }
        let lease = self.settings.election_timeout.vote_refusal();
        let Ok((term, leader_heard)) = self
            .raft
            .with_raft_state(move |st| {
                let vote = st.vote_ref();
                let recent = st
                    .vote_last_modified()
                    .is_some_and(|t| t.elapsed() <= lease);
                (vote.leader_id().term, vote.is_committed() && recent)
            })
            .await
        else {
            return refuse("this node is shutting down");
        };
        if leader_heard {
            return refuse("this node hears from a leader");
        }
        if req.term <= term {
            return refuse("the proposed term is not above this node's");
        }
        let theirs = req.has_log.then(|| {
            LogId::new(
                CommittedLeaderId::new(req.last_log_term, req.last_log_node),
                req.last_log_index,
            )
        });
        match self.last_log_id() {
            Ok(mine) if theirs >= mine => PreVoteReply {
                granted: true,
                reason: String::new(),
            },
            Ok(_) => refuse("the candidate's log is behind this node's"),
            Err(e) => refuse(&format!("this node cannot read its log: {e}")),
        }
    }
}
