//! Node certificate rotation without remove and rejoin.
//!
//! Peers accept a caller only if its SPKI is in the signed membership, and a client pins the
//! SPKI the membership gives the member it dials. A node that simply started presenting a new
//! certificate would be refused by everyone. So the new SPKI goes through the log first, in
//! two steps, and the node switches in between:
//!
//! 1. **Stage.** On SIGHUP or every [`RELOAD_EVERY`] the node re-reads `cluster.tls.cert/key`.
//!    A new certificate that loads and is issued by the node CA is sent to the leader
//!    ([`AdminOp::StageNodeCertificate`]) over a connection authenticated by the node's
//!    *current* certificate. The leader checks it again (node CA, not a CA certificate, not
//!    tombstoned, no other member's) and sets the node's `NodeInfo::next_spki` with
//!    `ChangeMembers::SetNodes`; the membership signer then signs it (`SignedMembership::next`).
//!    From then on peers accept either SPKI for that node, on both sides of a connection.
//!    The leader answers once the signed record holds the new SPKI and every member's log has
//!    caught up with it (bounded wait).
//! 2. **Present.** The node presents the new certificate as server and as client, and drops
//!    its cached channels so its next calls use it.
//! 3. **Adopt.** Over a connection with the new certificate, the node asks the leader
//!    ([`AdminOp::AdoptNodeCertificate`]) to make the new SPKI *the* SPKI and clear
//!    `next_spki`. Once that is committed, the old SPKI is refused everywhere.
//!
//! Why this never strands the node: it presents the new certificate only after a committed,
//! signed membership accepts it, and until step 3 commits the old one stays accepted too. Every
//! step is idempotent and goes to whoever leads now ([`Cluster::admin`] follows the leader), so
//! a leader change at any point only means a retry: a failed stage leaves the node on its old
//! certificate (warned, tried again at the next SIGHUP or period); a failed adopt is retried
//! every few seconds, and at start a node whose presented SPKI is its membership entry's
//! `next_spki` (it restarted between the steps, with the new files) adopts it. A new stage is
//! only ever sent with no rotation unfinished, and only from the current SPKI, so `next_spki`
//! never moves away from a certificate the node already presents.
//!
//! Not covered: replacing the files *and restarting* without a SIGHUP in between presents an
//! SPKI the membership has never seen; rotate with SIGHUP (or wait a period) before a restart.

use super::{AdminOp, Cluster};
use crate::cluster::transport::Candidate;
use crate::raft::{NodeId, NodeInfo};
use crate::tls::RELOAD_EVERY;
use openraft::ChangeMembers;
use rustls_pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an unfinished rotation (step 3) is retried.
const RETRY_ADOPT: Duration = Duration::from_secs(3);
/// How long the leader waits for the signed membership and the members' logs.
const WAIT_FOR_PEERS: Duration = Duration::from_secs(15);

impl Cluster {
    /// Re-reads the node certificate on SIGHUP and every [`RELOAD_EVERY`], and rotates to a new
    /// one; finishes a rotation left unfinished. Runs until the process ends.
    pub async fn keep_node_certificate(self: Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        if self.tls.is_none() {
            return;
        }
        let mut hup = signal(SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.tick().await; // immediate; the files were just loaded
        loop {
            let unfinished = self.unfinished_rotation();
            if let Some(spki) = &unfinished {
                match self.adopt(spki).await {
                    Ok(()) => {
                        // Give the committed change a heartbeat to reach this node's log.
                        tokio::time::sleep(self.settings.heartbeat).await;
                        continue;
                    }
                    Err(e) => tracing::warn!("node certificate rotation not finished yet: {e}"),
                }
            }
            let retry = async {
                match unfinished {
                    Some(_) => tokio::time::sleep(RETRY_ADOPT).await,
                    None => std::future::pending().await,
                }
            };
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let why = tokio::select! {
                _ = hangup => "SIGHUP",
                _ = tick.tick() => "periodic check",
                _ = retry => continue,
            };
            if self.unfinished_rotation().is_some() {
                continue;
            }
            self.reload_node_certificate(why).await;
        }
    }

    /// Reads the files and, if they hold a new valid certificate, rotates to it.
    async fn reload_node_certificate(&self, why: &str) {
        let Some(tls) = &self.tls else { return };
        match tls.cert.read_files() {
            Err(e) => tracing::warn!("{why}: keeping the current node certificate: {e}"),
            Ok(None) => tracing::debug!("{why}: the node certificate is unchanged"),
            Ok(Some(next)) => {
                tracing::info!("{why}: rotating the node certificate to SPKI {}", next.spki);
                if let Err(e) = self.rotate_to(next).await {
                    tracing::warn!("{why}: keeping the current node certificate: {e}");
                }
            }
        }
    }

    /// Steps 1 to 3 of the module doc. An error means the old certificate is still presented;
    /// once the new one is, a failed step 3 is only retried later.
    async fn rotate_to(&self, next: Candidate) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Err("this node has no cluster.tls".into());
        };
        let stage = AdminOp::StageNodeCertificate {
            node_id: self.node_id,
            cert: next.cert_der(),
        };
        self.admin(stage).await?;
        let spki = next.spki.clone();
        tls.cert.present(next);
        self.channels.forget_all();
        tracing::info!("presenting the new node certificate (SPKI {spki})");
        if let Err(e) = self.adopt(&spki).await {
            tracing::warn!("node certificate rotation not finished yet, retrying: {e}");
        }
        Ok(())
    }

    async fn adopt(&self, spki: &str) -> Result<(), String> {
        let op = AdminOp::AdoptNodeCertificate {
            node_id: self.node_id,
            spki: spki.to_owned(),
        };
        self.admin(op).await?;
        tracing::info!("the membership now names this node by SPKI {spki} only");
        Ok(())
    }

    /// The SPKI this node presents, if the membership still has it as `next_spki` only.
    fn unfinished_rotation(&self) -> Option<String> {
        let presented = self.tls.as_ref()?.cert.spki();
        let me = self.member_info(self.node_id)?;
        (me.next_spki == presented && me.spki != presented).then_some(presented)
    }

    fn member_info(&self, id: NodeId) -> Option<NodeInfo> {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Whether `caller` may send `op` to the leader. A node stages a certificate only for
    /// itself and from its current SPKI. It adopts one only over a connection made with that
    /// very certificate, which proves it holds the new key.
    pub(super) fn admin_caller_allowed(&self, op: &AdminOp, caller: &str) -> Result<(), String> {
        let (node_id, ok) = match op {
            AdminOp::Remove { .. } => return Ok(()),
            AdminOp::StageNodeCertificate { node_id, .. } => {
                let info = self.member_info(*node_id);
                (*node_id, info.is_some_and(|i| i.spki == caller))
            }
            AdminOp::AdoptNodeCertificate { node_id, spki } => {
                let info = self.member_info(*node_id);
                (
                    *node_id,
                    spki == caller && info.is_some_and(|i| i.accepts(caller)),
                )
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "only node {node_id} itself, with the certificate in question, may rotate its certificate"
            ))
        }
    }

    /// On the leader: step 1 for `node_id`.
    pub(super) async fn stage_node_certificate(
        &self,
        node_id: NodeId,
        cert: Vec<u8>,
    ) -> Result<(), String> {
        let tls = self.tls.as_ref().ok_or("this node has no cluster.tls")?;
        let der = CertificateDer::from(cert);
        if !tls.is_node_certificate(std::slice::from_ref(&der)) {
            return Err("the new certificate is not issued by the node CA".into());
        }
        let spki = crate::tls::identity_of_certificate(der.as_ref())
            .ok_or("the new certificate is a CA certificate")?
            .to_string();
        if self.state.is_tombstoned(&spki) {
            return Err("the new certificate's SPKI is tombstoned".into());
        }
        let members = self.metrics().membership_config.membership().clone();
        if members
            .nodes()
            .any(|(id, n)| *id != node_id && n.accepts(&spki))
        {
            return Err("the new certificate's SPKI belongs to another member".into());
        }
        let mut info = self.member_to_rotate(node_id)?;
        if info.spki == spki {
            return Ok(());
        }
        if info.next_spki != spki {
            info.next_spki = spki.clone();
            self.change_membership_when_free(ChangeMembers::SetNodes(BTreeMap::from([(
                node_id, info,
            )])))
            .await?;
        }
        self.wait_signed(|m| m.next.get(&node_id) == Some(&spki))
            .await?;
        self.wait_replicated(self.applied_index()).await;
        Ok(())
    }

    /// On the leader: step 3 for `node_id`.
    pub(super) async fn adopt_node_certificate(
        &self,
        node_id: NodeId,
        spki: String,
    ) -> Result<(), String> {
        let mut info = self.member_to_rotate(node_id)?;
        if info.spki != spki {
            if info.next_spki != spki || spki.is_empty() {
                return Err("that certificate was not staged first".into());
            }
            let old = info.grpc.clone();
            info.spki = spki.clone();
            info.next_spki.clear();
            self.change_membership_when_free(ChangeMembers::SetNodes(BTreeMap::from([(
                node_id, info,
            )])))
            .await?;
            self.channels.forget(&old);
        }
        self.wait_signed(|m| m.nodes.get(&node_id).is_some_and(|n| n.2 == spki))
            .await
    }

    /// `node_id`'s membership entry, unless it is being removed: a tombstoned member must not
    /// get an SPKI that is not tombstoned.
    fn member_to_rotate(&self, node_id: NodeId) -> Result<NodeInfo, String> {
        let info = self
            .member_info(node_id)
            .ok_or_else(|| format!("node {node_id} is not a member"))?;
        if info
            .accepted_spkis()
            .iter()
            .any(|s| self.state.is_tombstoned(s))
        {
            return Err(format!("node {node_id} is being removed"));
        }
        Ok(info)
    }

    /// Waits until the leader's membership signer has signed a record that satisfies `done`.
    async fn wait_signed(
        &self,
        done: impl Fn(&crate::state::SignedMembership) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_FOR_PEERS;
        while Instant::now() < deadline {
            if let Ok(Some(m)) = self.state.signed_membership() {
                if done(&m) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the membership was changed but not signed in time; try again".into())
    }

    /// Waits (bounded) until every member's log holds `index`: a member that lags behind the
    /// staged SPKI would refuse the new certificate until it caught up.
    async fn wait_replicated(&self, index: u64) {
        let deadline = Instant::now() + WAIT_FOR_PEERS;
        while Instant::now() < deadline {
            let m = self.metrics();
            let behind = m
                .replication
                .as_ref()
                .is_some_and(|r| r.values().any(|l| l.map(|l| l.index).unwrap_or(0) < index));
            if !behind {
                // One more heartbeat, so followers learn the commit and apply it.
                tokio::time::sleep(self.settings.heartbeat * 2).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("a member's log is behind the staged certificate; it catches up later");
    }
}
