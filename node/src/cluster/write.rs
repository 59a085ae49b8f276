//! The write path: propose on the leader, or forward to it; never apply twice.

use super::Cluster;
use crate::raft::{MAX_ENTRY_BYTES, NodeInfo, decode, encode};
use crate::state::{Command, Outcome};
use kes_cluster_proto::ForwardRequest;
use kes_cluster_proto::cluster_client::ClusterClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// A command the node itself writes (not a client request), in the admin's name: `path`
/// names what it does, as a request's path would.
pub fn system_command(admin: &str, path: &str, op: crate::state::Op) -> Command {
    Command {
        request_id: crate::api::new_request_id(),
        identity: admin.to_owned(),
        path: path.to_owned(),
        enclave: crate::state::DEFAULT_ENCLAVE.to_owned(),
        time: crate::state::unix_nanos_now(),
        op,
        restores_seen: None,
    }
}

/// A command that was committed and applied here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The log index; sent back as `Kes-Cluster-Index`.
    pub index: u64,
    /// What `apply` decided.
    pub outcome: Outcome,
}

/// Why a write did not succeed. The two unavailability cases stay distinct for the client.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No leader could take the write in time; it was not applied (503).
    #[error("no leader is reachable: {0}")]
    NoLeader(String),
    /// The write may or may not have been committed (504).
    #[error("the outcome of the write is unknown: {0}")]
    Unknown(String),
    /// The command is too large to replicate.
    #[error("the request is too large to replicate ({0} bytes; the limit is {MAX_ENTRY_BYTES})")]
    TooLarge(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Attempt {
    Done(Committed),
    /// Not delivered to a leader: safe to retry, nothing was applied.
    Retry(String),
    /// Possibly appended: retrying is still safe (request ids deduplicate), but if time runs
    /// out the answer is "unknown".
    Maybe(String),
}

impl Attempt {
    /// A write committed at `index`, with what `apply` decided.
    pub(super) fn committed(index: u64, outcome: Outcome) -> Attempt {
        Attempt::Done(Committed { index, outcome })
    }
}

impl Cluster {
    /// Commits `cmd` through Raft within `write_wait`, and returns once this node has applied
    /// it, so the caller reads its own write here.
    pub async fn write(&self, cmd: Command) -> Result<Committed, WriteError> {
        let size = encode(&cmd).len();
        if size > MAX_ENTRY_BYTES {
            return Err(WriteError::TooLarge(size));
        }
        let deadline = Instant::now() + self.settings.write_wait;
        let mut maybe: Option<String> = None;
        let mut last = "no leader elected yet".to_owned();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(match maybe {
                    Some(m) => WriteError::Unknown(m),
                    None => WriteError::NoLeader(last),
                });
            }
            let remaining = deadline - now;
            let attempt = match self.leader() {
                None => Attempt::Retry("no leader elected yet".into()),
                Some((id, _)) if id == self.node_id => self.propose(&cmd, remaining).await,
                Some((_, info)) => self.forward(&info, &cmd, remaining).await,
            };
            match attempt {
                Attempt::Done(c) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if self.wait_applied(c.index, left).await {
                        return Ok(c);
                    }
                    return Err(WriteError::Unknown(format!(
                        "committed at index {} but not yet applied on this node",
                        c.index
                    )));
                }
                Attempt::Retry(why) => last = why,
                Attempt::Maybe(why) => maybe = Some(why),
            }
            tokio::time::sleep(
                Duration::from_millis(25).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    /// On the leader: append through openraft and wait for the commit.
    pub(super) async fn propose_for_peer(
        &self,
        cmd: Command,
        within: Duration,
    ) -> Result<Committed, String> {
        match self.propose(&cmd, within).await {
            Attempt::Done(c) => Ok(c),
            Attempt::Retry(why) => Err(format!("not-leader:{why}")),
            Attempt::Maybe(why) => Err(format!("unknown:{why}")),
        }
    }

    async fn propose(&self, cmd: &Command, within: Duration) -> Attempt {
        if crate::planted::active(crate::planted::Bug::AckBeforeCommit) {
            let raft = self.raft.clone();
            let cmd = cmd.clone();
            tokio::spawn(async move { raft.client_write(cmd).await });
            return Attempt::Done(Committed {
                index: 0,
                outcome: crate::state::Outcome::Done,
            });
        }
        self.proposals
            .propose(&self.raft, cmd.clone(), within, self.settings.write_wait)
            .await
    }

    async fn forward(&self, leader: &NodeInfo, cmd: &Command, within: Duration) -> Attempt {
        let client = match self.channels.member_client(leader) {
            Ok(c) => c,
            Err(e) => return Attempt::Retry(e),
        };
        let req = ForwardRequest {
            cluster_id: self.cluster_id(),
            command: encode(cmd),
        };
        forward_to(client, req, within).await
    }
}

/// Sends a forwarded write to the leader through `client`, and says what its answer, or its
/// failure, means for the write.
async fn forward_to(
    mut client: ClusterClient<Channel>,
    req: ForwardRequest,
    within: Duration,
) -> Attempt {
    let mut req = tonic::Request::new(req);
    req.set_timeout(within);
    match client.forward(req).await {
        Ok(reply) => {
            let r = reply.into_inner();
            if !r.not_leader.is_empty() {
                return Attempt::Retry(r.not_leader);
            }
            if !r.unknown.is_empty() {
                return Attempt::Maybe(r.unknown);
            }
            match decode::<Outcome>(&r.outcome) {
                Ok(outcome) => Attempt::Done(Committed {
                    index: r.index,
                    outcome,
                }),
                Err(e) => Attempt::Maybe(format!("leader answered {e}")),
            }
        }
        // Never reached the leader: nothing was appended.
        Err(s) if failed_to_connect(&s) => {
            Attempt::Retry(format!("leader unreachable: {}", s.message()))
        }
        Err(s) => Attempt::Maybe(format!("forward to the leader failed: {}", s.message())),
    }
}

/// Whether the call failed while connecting, so the request never left this node. tonic
/// answers Unavailable for that, but also for a connection that broke after the request was
/// sent (a keep-alive ping that timed out while the leader was paused): the code cannot tell
/// them apart, the connect error tonic keeps in the source chain can.
fn failed_to_connect(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
