//! Taking Raft RPCs from a member this node has never heard of, once a quorum of the members
//! it does know confirms it.
//!
//! A member that was cut off while another node joined does not have that node in its
//! membership. If the newcomer becomes leader, every AppendEntries it sends would be refused,
//! and the cut-off member could never catch up. So, for the Raft RPCs only, an unknown caller
//! is asked about: this node asks every member it knows, over pinned gRPC channels, whether
//! the caller's SPKI is one of theirs.
//!
//! Why this lets no removed node back in, nor any other holder of a node certificate:
//! - a tombstoned SPKI is refused before anything is asked, and a member answers "yes" only
//!   for an SPKI in its own membership, signed by a leader, and not tombstoned in its state;
//! - the answers come from the members this node knows, authenticated by the SPKIs of its own
//!   membership, not from anything the caller sent: a membership record signed with the
//!   metadata MAC key would prove nothing, since every member, a removed one included, can
//!   derive that key;
//! - "yes" must come from a majority of every voter set of this node's membership, not
//!   counting itself. Members only take entries from leaders they accept, and joiners enter
//!   only through a leader's join challenge, so a majority naming the caller means the cluster
//!   admitted it;
//! - a removal commits the removed node's tombstone before it changes the membership, and a
//!   member that has applied the tombstone answers "no": a removed node would need a majority
//!   of this node's members that all still lag behind its removal.
//!
//! The limit: a node whose known members have mostly left the cluster cannot confirm anyone;
//! it must be removed and rejoined (the runbook in `server::startup`).
//!
//! Verdicts are kept briefly (a "no" for less time than a "yes"), and one round of questions
//! runs at a time, so a caller cannot make this node flood the members with questions.

use super::super::Cluster;
use crate::raft::NodeId;
use kes_cluster_proto::ConfirmMemberRequest;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a confirmed caller is taken without asking again.
const CONFIRMED_FOR: Duration = Duration::from_secs(10);
/// How long a caller that was not confirmed is refused without asking again.
const REFUSED_FOR: Duration = Duration::from_secs(2);
/// How long one member has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The verdicts on unknown callers, by SPKI.
#[derive(Default)]
pub(super) struct UnknownCallers {
    verdicts: Mutex<HashMap<String, (bool, Instant)>>,
    one_round_at_a_time: tokio::sync::Mutex<()>,
}

impl UnknownCallers {
    fn cached(&self, spki: &str) -> Option<bool> {
        let verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        verdicts
            .get(spki)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(member, _)| *member)
    }

    fn remember(&self, spki: &str, member: bool) {
        let now = Instant::now();
        let until = now + if member { CONFIRMED_FOR } else { REFUSED_FOR };
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        verdicts.retain(|_, (_, t)| now < *t);
        verdicts.insert(spki.to_owned(), (member, until));
    }

    /// Whether a majority of the members `cluster` knows confirm that `spki` is a member.
    /// The caller has already checked that `spki` is not tombstoned here.
    pub(super) async fn confirmed(&self, cluster: &Cluster, spki: &str) -> bool {
        if let Some(member) = self.cached(spki) {
            return member;
        }
        let _round = self.one_round_at_a_time.lock().await;
        if let Some(member) = self.cached(spki) {
            return member;
        }
        let member = ask_a_quorum(cluster, spki).await;
        if member {
            tracing::info!(
                "took SPKI {spki} as a member: a majority of the members this node knows confirmed it"
            );
        }
        self.remember(spki, member);
        member
    }
}

/// Asks every other member this node knows about `spki`; true when every voter set of its
/// membership has a majority of "yes".
async fn ask_a_quorum(cluster: &Cluster, spki: &str) -> bool {
    let m = cluster.metrics();
    let membership = m.membership_config.membership().clone();
    let voter_sets: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
    if voter_sets.iter().all(|set| set.is_empty()) {
        return false;
    }
    let asks = membership
        .nodes()
        .filter(|(id, _)| **id != cluster.node_id)
        .filter(|(id, _)| voter_sets.iter().any(|set| set.contains(id)))
        .map(|(id, info)| async move {
            let Ok(mut client) = cluster.channels.member_client(info) else {
                return (*id, false);
            };
            let mut req = tonic::Request::new(ConfirmMemberRequest {
                cluster_id: cluster.cluster_id(),
                spki: spki.to_owned(),
            });
            req.set_timeout(ASK_TIMEOUT);
            let yes = client
                .confirm_member(req)
                .await
                .is_ok_and(|r| r.into_inner().member);
            (*id, yes)
        });
    let yes: BTreeSet<NodeId> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|(_, yes)| *yes)
        .map(|(id, _)| id)
        .collect();
    voter_sets
        .iter()
        .all(|set| set.intersection(&yes).count() > set.len() / 2)
}
