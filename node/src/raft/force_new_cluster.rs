//! Recovering from lost quorum: `kes-node recover --force-new-cluster`, run offline on the data
//! dir of one surviving member. It makes that member a cluster of one, as etcd's
//! `--force-new-cluster` does, keeping everything its log holds.
//!
//! Why every entry is kept and committed: a follower's commit index lags the leader's, so
//! entries past it may well have been committed, and acknowledged, by the lost majority.
//! Dropping them could drop acknowledged writes; keeping them can only keep writes that a
//! client saw fail or time out, which KES clients retry (and requests are deduplicated).
//!
//! What it writes, all in a new term `T` above any the node has seen, as if it had won an
//! election in `T`:
//! 1. a tombstone of each lost member's certificate (the `Op::Tombstone` that
//!    `kes-cluster remove` commits), so that a lost member that comes back is refused rather
//!    than rejoining with a diverged log;
//! 2. a membership entry naming this node alone;
//! 3. the commit index, at the last of these entries, and a vote for itself in `T` (written
//!    first, and not committed: at start the node elects itself in the next term, the only
//!    voter).
//!
//! openraft applies every committed entry at start, so the node comes up holding all of them,
//! with the cluster id it had. The other nodes join it afresh, with new data dirs and new node
//! certificates (their old ones are tombstoned).

use super::{LogId, LogStore, NodeId, NodeInfo, TypeConfig};
use crate::state::{Command, Op, State};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, Vote};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What recovery found in the data dir, and would do.
#[derive(Debug)]
pub struct Plan {
    /// This node.
    pub me: NodeId,
    /// Whether it was only a learner: it may be far behind the lost voters.
    pub learner: bool,
    /// The members recovery drops, with their address and certificate.
    pub lost: Vec<(NodeId, NodeInfo)>,
    /// The last entry of this node's log: index and term.
    pub last: Option<(u64, u64)>,
    /// The commit index this node knew of.
    pub committed: Option<u64>,
    /// One line per entry past it, which recovery commits.
    pub past_commit: Vec<String>,
    /// The term recovery writes in.
    pub term: u64,
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "this node: {}", self.me)?;
        if self.learner {
            writeln!(
                f,
                "WARNING: this node was a learner, not a voter: its log may lag far behind \
                 what the cluster acknowledged; recover a voter if one survives"
            )?;
        }
        match self.last {
            Some((index, term)) => writeln!(f, "last entry of its log: {index} (term {term})")?,
            None => writeln!(f, "last entry of its log: none")?,
        }
        writeln!(
            f,
            "members dropped, their certificates tombstoned: {}",
            if self.lost.is_empty() {
                "none".to_owned()
            } else {
                self.lost
                    .iter()
                    .map(|(id, info)| format!("{id} ({})", info.http))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )?;
        let known = self.committed.map_or("none".into(), |c| c.to_string());
        writeln!(
            f,
            "entries past the commit index this node knew ({known}), which recovery commits: {}",
            self.past_commit.len()
        )?;
        for line in &self.past_commit {
            writeln!(f, "  {line}")?;
        }
        write!(f, "new term: {}", self.term)
    }
}

/// A line about `entry` for the operator: what it does, never what it carries (no sealed
/// record, no wrapped key).
fn describe(entry: &Entry<TypeConfig>) -> String {
    let what = match &entry.payload {
        EntryPayload::Blank => "blank (a new leader's first entry)".to_owned(),
        EntryPayload::Membership(m) => {
            format!("membership: voters {:?}", m.voter_ids().collect::<Vec<_>>())
        }
        EntryPayload::Normal(cmd) => describe_command(cmd),
    };
    format!(
        "{} (term {}): {what}",
        entry.log_id.index, entry.log_id.leader_id.term
    )
}

fn describe_command(cmd: &Command) -> String {
    match &cmd.op {
        Op::Batch { commands } => format!(
            "{} writes: {}",
            commands.len(),
            commands
                .iter()
                .map(describe_command)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => format!("{} by {}", cmd.path, cmd.identity),
    }
}

/// The node id kept in `data_dir`.
fn node_id(data_dir: &Path) -> Result<NodeId, String> {
    crate::cluster::read_node_id(data_dir)?.ok_or_else(|| {
        format!(
            "{} holds no node id: this is not the data dir of a node that ran",
            data_dir.display()
        )
    })
}

/// The log and state of the node in `data_dir`, opened offline. Fails while the node runs
/// (sled's lock). A snapshot install that a crash interrupted, or a snapshot file ahead of the
/// state, is finished first, as a start would: the state is then the node's latest.
async fn open(data_dir: &Path) -> Result<(State, LogStore), String> {
    let state_dir = data_dir.join("state");
    if !state_dir.exists() {
        return Err(format!("{} holds no state", data_dir.display()));
    }
    let state = State::open(&state_dir).map_err(|e| {
        format!(
            "cannot open {} ({e}): is the node still running? Stop it first",
            state_dir.display()
        )
    })?;
    super::recover_snapshot_install(&state, &data_dir.join("snapshot.bin"))
        .await
        .map_err(|e| format!("cannot finish the snapshot install a crash interrupted: {e}"))?;
    let log = LogStore::open(&state).await.map_err(|e| e.to_string())?;
    Ok((state, log))
}

/// The membership in effect: the last one in the log past the applied state, or else the
/// applied one.
fn membership(
    applied: Option<LogId>,
    applied_membership: &Membership<NodeId, NodeInfo>,
    entries: &[Entry<TypeConfig>],
) -> Membership<NodeId, NodeInfo> {
    entries
        .iter()
        .rev()
        .filter(|e| Some(e.log_id) > applied)
        .find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| applied_membership.clone())
}

/// Reads the data dir and says what recovery would do; changes nothing.
pub async fn plan(data_dir: &Path) -> Result<Plan, String> {
    let me = node_id(data_dir)?;
    let (state, log) = open(data_dir).await?;
    plan_for(me, &state, log).await.map(|(plan, _)| plan)
}

async fn plan_for(
    me: NodeId,
    state: &State,
    mut log: LogStore,
) -> Result<(Plan, Recovery), String> {
    let entries = log
        .try_get_log_entries(0..)
        .await
        .map_err(|e| e.to_string())?;
    let (applied, applied_membership) =
        super::state_machine::applied_in(state).map_err(|e| e.to_string())?;
    let membership = membership(applied, applied_membership.membership(), &entries);
    let learner = !membership.voter_ids().any(|v| v == me);
    let my_info = membership.get_node(&me).cloned().ok_or_else(|| {
        format!(
            "node {me} is not a member of the cluster its data dir records: recover on a member"
        )
    })?;
    let lost: Vec<(NodeId, NodeInfo)> = membership
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, info)| (*id, info.clone()))
        .collect();
    let committed = log.read_committed().await.map_err(|e| e.to_string())?;
    let vote = log.read_vote().await.map_err(|e| e.to_string())?;
    // The state may be ahead of the log (a snapshot installed past it): the new entries go
    // after both, in a term above every term either holds.
    let log_last = log.log_state_now().map_err(|e| e.to_string())?.last_log_id;
    let last = log_last.max(applied);
    let term = vote
        .map_or(0, |v| v.leader_id().term)
        .max(last.map_or(0, |l| l.leader_id.term))
        + 1;
    let past_commit = entries
        .iter()
        .filter(|e| Some(e.log_id.index) > committed.map(|c| c.index))
        .map(describe)
        .collect();
    let admin = state
        .admin()
        .map_err(|e| e.to_string())?
        .ok_or("the state holds no cluster (no admin identity): nothing to recover")?;
    let plan = Plan {
        me,
        learner,
        lost,
        last: last.map(|l| (l.index, l.leader_id.term)),
        committed: committed.map(|c| c.index),
        past_commit,
        term,
    };
    let recovery = Recovery {
        log,
        state: state.clone(),
        admin,
        my_info,
        next_index: last.map_or(0, |l| l.index + 1),
        // The log must go on from the applied state, without a hole.
        purge_to: applied.filter(|a| log_last < Some(*a)),
    };
    Ok((plan, recovery))
}

/// What carrying out a plan needs.
struct Recovery {
    log: LogStore,
    state: State,
    admin: String,
    my_info: NodeInfo,
    next_index: u64,
    purge_to: Option<LogId>,
}

/// Carries out the plan for the node in `data_dir`; answers the plan it carried out.
pub async fn force_new_cluster(data_dir: &Path) -> Result<Plan, String> {
    let me = node_id(data_dir)?;
    let (state, log) = open(data_dir).await?;
    let (plan, mut r) = plan_for(me, &state, log).await?;
    let leader = CommittedLeaderId::new(plan.term, me);
    let mut payloads = Vec::new();
    for (node_id, info) in &plan.lost {
        for spki in [&info.spki, &info.next_spki] {
            if !spki.is_empty() && !r.state.is_tombstoned(spki) {
                let op = Op::Tombstone {
                    node_id: *node_id,
                    spki: spki.clone(),
                };
                let path = format!("/v1/cluster/remove/{node_id}");
                let cmd = crate::cluster::system_command(&r.admin, &path, op);
                payloads.push(EntryPayload::Normal(cmd));
            }
        }
    }
    let alone = Membership::new(
        vec![BTreeSet::from([me])],
        BTreeMap::from([(me, r.my_info.clone())]),
    );
    payloads.push(EntryPayload::Membership(alone));
    let entries: Vec<Entry<TypeConfig>> = payloads
        .into_iter()
        .enumerate()
        .map(|(n, payload)| Entry {
            log_id: LogId::new(leader, r.next_index + n as u64),
            payload,
        })
        .collect();
    let last = entries.last().expect("the membership entry").log_id;
    // The vote first: entries in a term above the vote, should a crash come between the two,
    // would let a node that was leader come back leading its old term after them.
    r.log
        .save_vote(&Vote::new(plan.term, me))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(applied) = r.purge_to {
        r.log.purge(applied).await.map_err(|e| e.to_string())?;
    }
    r.log.append_now(&entries).map_err(|e| e.to_string())?;
    r.log
        .save_committed(Some(last))
        .await
        .map_err(|e| e.to_string())?;
    r.state.make_durable().await.map_err(|e| e.to_string())?;
    Ok(plan)
}

#[cfg(test)]
#[path = "force_new_cluster_tests.rs"]
mod tests;
