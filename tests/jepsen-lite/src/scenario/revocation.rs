//! The revocation load: the admin grants and revokes, over and over, the right of a few
//! identities to generate with one key, while each identity keeps asking; checked per identity
//! with the [`Revocation`](crate::model::Revocation) model. A request allowed after its revoke
//! was acknowledged is a stale authorisation.
//!
//! - grant: `POST /v1/policy/assign/gen-<n>` of the identity (the policy allows only
//!   `/v1/key/generate/revoked-key`);
//! - revoke: `DELETE /v1/identity/delete/<identity>` (404 when already gone: still done);
//! - request: the identity's `PUT /v1/key/generate/revoked-key`, 200 allowed, 403 denied.
//!
//! Every request goes to a random node, without `Kes-Cluster-Index`.

use crate::Cluster;
use crate::history::{PendingOp, Recorder};
use crate::model::{AuthInput, AuthOutput};
use kes_cluster::{Client, Method};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Identities whose rights the admin toggles.
pub const IDENTITIES: usize = 3;
/// The key the identities generate with.
const KEY: &str = "revoked-key";
/// The one grant each identity has or has not.
const GRANT: &str = "generate";

/// The run's revocation state.
pub struct Revocations {
    /// Every grant, revoke and request; the partition is the identity.
    pub recorder: Recorder<AuthInput, AuthOutput>,
    /// Set when the clients are to stop.
    pub stop: AtomicBool,
    /// Per identity: its id, and its client of every node.
    identities: Vec<(String, Vec<Client>)>,
    /// The admin's client of every node.
    admin: Vec<Client>,
}

impl Revocations {
    /// Creates the key, one policy per identity and the identities' certificates, with nothing
    /// granted yet.
    pub async fn set_up(
        c: &Cluster,
        recorder: Recorder<AuthInput, AuthOutput>,
        timeout: Duration,
    ) -> Result<Arc<Revocations>, String> {
        let admin: Vec<Client> = (0..c.nodes.len())
            .map(|i| c.admin(i).with_timeout(timeout))
            .collect();
        let ok = |what: &str, r: Result<kes_cluster::Response, kes_cluster::Error>| match r {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{what}: {} {}", r.status, r.text())),
            Err(e) => Err(format!("{what}: {e}")),
        };
        let create = admin[0]
            .request(
                Method::PUT,
                &format!("/v1/key/create/{KEY}"),
                &[],
                String::new(),
            )
            .await;
        ok("create the key", create)?;
        let mut identities = Vec::new();
        for n in 0..IDENTITIES {
            let policy = serde_json::json!({ "allow": [format!("/v1/key/generate/{KEY}")] });
            let path = format!("/v1/policy/write/gen-{n}");
            let write = admin[0]
                .request(Method::PUT, &path, &[], policy.to_string())
                .await;
            ok("write a policy", write)?;
            let name = format!("revoked-{n}");
            let mut clients = Vec::new();
            let mut id = String::new();
            for i in 0..c.nodes.len() {
                let (client, identity) = c.client_identity(&name, i);
                clients.push(client.with_timeout(timeout));
                id = identity;
            }
            identities.push((id, clients));
        }
        Ok(Arc::new(Revocations {
            recorder,
            stop: AtomicBool::new(false),
            identities,
            admin,
        }))
    }

    /// The admin: grants and revokes at random until stopped.
    pub async fn admin(self: Arc<Self>, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xad);
        while !self.stop.load(Ordering::Relaxed) {
            let n = rng.random_range(0..self.identities.len());
            let id = self.identities[n].0.clone();
            let node = rng.random_range(0..self.admin.len());
            let client = &self.admin[node];
            let (input, method, path, body) = if rng.random_bool(0.5) {
                let body = serde_json::json!({ "identity": id }).to_string();
                let path = format!("/v1/policy/assign/gen-{n}");
                (AuthInput::Grant(GRANT.into()), Method::POST, path, body)
            } else {
                let path = format!("/v1/identity/delete/{id}");
                (
                    AuthInput::Revoke(GRANT.into()),
                    Method::DELETE,
                    path,
                    String::new(),
                )
            };
            let op = self.recorder.invoke(0, id.clone(), input);
            op.sent_to(node);
            let answer = client.request(method, &path, &[], body).await;
            if !record_admin(op, answer) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
        }
    }

    /// Identity `n`: asks until stopped.
    pub async fn identity(self: Arc<Self>, n: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ (n as u64 + 1));
        let (id, clients) = &self.identities[n];
        while !self.stop.load(Ordering::Relaxed) {
            let node = rng.random_range(0..clients.len());
            let op =
                self.recorder
                    .invoke(1 + n as u64, id.clone(), AuthInput::Request(GRANT.into()));
            op.sent_to(node);
            let path = format!("/v1/key/generate/{KEY}");
            let answer = clients[node]
                .request(Method::PUT, &path, &[], "{}".to_owned())
                .await;
            let done = match answer {
                Ok(r) if r.status == 200 => {
                    op.ok(AuthOutput::Allowed);
                    true
                }
                Ok(r) if r.status == 403 => {
                    op.ok(AuthOutput::Denied);
                    true
                }
                // A request has no effect: when its answer says nothing, leave it out.
                Ok(r) => {
                    op.fail(format!("{} {}", r.status, r.text().trim()));
                    false
                }
                Err(e) => {
                    op.fail(e.to_string());
                    false
                }
            };
            if !done {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Records an admin grant or revoke from its answer; whether it was acknowledged.
fn record_admin(
    op: PendingOp<AuthInput, AuthOutput>,
    answer: Result<kes_cluster::Response, kes_cluster::Error>,
) -> bool {
    match answer {
        Ok(r) if r.status == 200 => op.ok(AuthOutput::Done),
        // Deleting an identity that is not there leaves it without the grant: done.
        Ok(r) if r.status == 404 && r.text().contains("identity does not exist") => {
            op.ok(AuthOutput::Done)
        }
        Ok(r) if r.status == 503 => {
            op.fail(format!("503 {}", r.text().trim()));
            return false;
        }
        Ok(r) => {
            op.info(format!("{} {}", r.status, r.text().trim()));
            return false;
        }
        Err(e @ (kes_cluster::Error::Connect { .. } | kes_cluster::Error::Tls { .. })) => {
            op.fail(e.to_string());
            return false;
        }
        Err(e) => {
            op.info(e.to_string());
            return false;
        }
    }
    true
}
