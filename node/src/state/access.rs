//! Who may do what, read from the replicated state. The API asks before it proposes a write
//! and `apply` asks again, so both decide with the same rules:
//!
//! - the system admin may do anything, in every enclave;
//! - an enclave's own admin (named when the enclave was made) may act on keys, policies and
//!   identities inside that enclave, and nothing else;
//! - anyone else needs a policy assigned in that very enclave whose rules allow the path;
//! - nobody but an admin may write, delete or hand out the policy that governs itself, so a
//!   tenant cannot widen its own rights.

use super::DEFAULT_ENCLAVE;
use super::command::Op;
use super::store::{State, StateError};

/// The route families an enclave admin administers in its own enclave.
const ENCLAVE_ADMIN_SCOPE: [&str; 3] = ["/v1/key/", "/v1/policy/", "/v1/identity/"];

impl State {
    /// Whether `identity` is the system admin.
    pub fn is_admin(&self, identity: &str) -> Result<bool, StateError> {
        Ok(self.admin()?.as_deref() == Some(identity))
    }

    /// Whether `identity` is the admin named at the creation of `enclave`. The default enclave
    /// has no admin but the system admin.
    pub fn is_enclave_admin(&self, identity: &str, enclave: &str) -> Result<bool, StateError> {
        if enclave == DEFAULT_ENCLAVE || identity.is_empty() {
            return Ok(false);
        }
        Ok(self
            .enclave(enclave)?
            .is_some_and(|e| !e.admin.is_empty() && e.admin == identity))
    }

    /// Whether `identity` administers `enclave`: the system admin, or that enclave's admin.
    pub fn administers(&self, identity: &str, enclave: &str) -> Result<bool, StateError> {
        Ok(self.is_admin(identity)? || self.is_enclave_admin(identity, enclave)?)
    }

    /// Whether `identity` may call a route in `enclave`. `paths` are the spellings of one
    /// request, canonical first (see [`crate::auth::Policy::allows_any`]).
    pub fn is_allowed<S: AsRef<str>>(
        &self,
        identity: &str,
        enclave: &str,
        paths: &[S],
    ) -> Result<bool, StateError> {
        if self.is_admin(identity)? {
            return Ok(true);
        }
        // The caller's own policy first: that is the common case, and it needs no read of the
        // enclave record.
        let by_policy = match self.identity(enclave, identity)? {
            Some(assignment) => self
                .policy(enclave, &assignment.policy)?
                .is_some_and(|p| p.policy.allows_any(paths)),
            None => false,
        };
        if by_policy {
            return Ok(true);
        }
        let in_scope = !paths.is_empty()
            && paths.iter().all(|p| {
                ENCLAVE_ADMIN_SCOPE
                    .iter()
                    .any(|s| p.as_ref().starts_with(s))
            });
        Ok(in_scope && self.is_enclave_admin(identity, enclave)?)
    }

    /// Whether `identity` may write, delete or assign the policy `name` of `enclave`, beyond
    /// what its policy allows: refused when `name` is the policy assigned to the caller itself,
    /// unless the caller administers the enclave.
    pub fn may_manage_policy(
        &self,
        identity: &str,
        enclave: &str,
        name: &str,
    ) -> Result<bool, StateError> {
        if self.administers(identity, enclave)? {
            return Ok(true);
        }
        Ok(self
            .identity(enclave, identity)?
            .is_none_or(|own| own.policy != name))
    }
}

impl Op {
    /// The API paths that may propose this operation, canonical first, or `None` for the
    /// operations only the system admin may propose. `apply` authorises a command against
    /// these, never against the path the proposer claims, so a command cannot borrow the
    /// rights of another route.
    pub fn policy_paths(&self) -> Option<Vec<String>> {
        let paths = match self {
            Op::CreateKey { name, .. } => {
                vec![
                    format!("/v1/key/create/{name}"),
                    format!("/v1/key/import/{name}"),
                ]
            }
            Op::DeleteKey { name } => vec![format!("/v1/key/delete/{name}")],
            Op::RotateKey { name, .. } => vec![format!("/v1/key/rotate/{name}")],
            Op::RetireKeyVersions { name, .. } => vec![format!("/v1/key/retire/{name}")],
            Op::SetKeyMinVersion { name, .. } | Op::SealKeyMinVersion { name, .. } => {
                vec![format!("/v1/key/min-version/{name}")]
            }
            Op::SetKeyRotation { name, .. } => vec![format!("/v1/key/rotation/{name}")],
            Op::WritePolicy { name, .. } => vec![format!("/v1/policy/write/{name}")],
            Op::AssignPolicy {
                policy, identity, ..
            } => vec![
                format!("/v1/policy/assign/{policy}"),
                format!("/v1/identity/assign/{policy}/{identity}"),
            ],
            Op::DeletePolicy { name } => vec![format!("/v1/policy/delete/{name}")],
            Op::DeleteIdentity { identity } => vec![
                format!("/v1/identity/delete/{identity}"),
                format!("/v1/identity/forget/{identity}"),
            ],
            _ => return None,
        };
        Some(paths)
    }

    /// The right to rotate a key that this operation hands on: giving a key a rotation period
    /// has the leader rotate it as the admin from then on, so the proposer must hold that
    /// right itself, besides the operation's own path.
    pub fn rotation_right(&self) -> Option<String> {
        match self {
            Op::CreateKey {
                name, rotate_every, ..
            }
            | Op::SetKeyRotation { name, rotate_every }
                if *rotate_every > 0 =>
            {
                Some(format!("/v1/key/rotate/{name}"))
            }
            _ => None,
        }
    }

    /// The policy this operation writes, deletes or hands out, if any.
    pub fn managed_policy(&self) -> Option<&str> {
        match self {
            Op::WritePolicy { name, .. } | Op::DeletePolicy { name } => Some(name),
            Op::AssignPolicy { policy, .. } => Some(policy),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::Policy;
    use crate::state::{Command, Op, Outcome, State};

    const ADMIN: &str = "admin";
    const TENANT_ADMIN: &str = "tenant-admin";
    const TENANT: &str = "tenant";

    struct Cluster {
        state: State,
        index: u64,
        _dir: tempfile::TempDir,
    }

    impl Cluster {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Cluster {
                state: State::open(dir.path()).unwrap(),
                index: 0,
                _dir: dir,
            };
            let init = Op::Init {
                cluster_id: "c".into(),
                admin: ADMIN.into(),
                wrapped: vec![],
                default_enclave_sig: crate::state::Signature::under_first_key(),
            };
            assert_eq!(c.run(ADMIN, "default", init), Outcome::Done);
            let enclave = Op::CreateEnclave {
                name: "t".into(),
                admin: TENANT_ADMIN.into(),
                sig: crate::state::Signature::under_first_key(),
            };
            assert_eq!(c.run(ADMIN, "default", enclave), Outcome::Done);
            c
        }

        fn run(&mut self, who: &str, enclave: &str, op: Op) -> Outcome {
            self.index += 1;
            let cmd = Command {
                request_id: rand::random(),
                identity: who.into(),
                // A forged path: apply must authorise against the operation, not this.
                path: "/v1/key/generate/anything".into(),
                enclave: enclave.into(),
                time: 1,
                op,
                restores_seen: None,
            };
            self.state.apply(self.index, &cmd, &[]).unwrap()
        }
    }

    fn write(name: &str, allow: &[&str]) -> Op {
        Op::WritePolicy {
            name: name.into(),
            policy: Policy {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: vec![],
            },
            sig: crate::state::Signature::under_first_key(),
        }
    }

    fn assign(policy: &str, identity: &str) -> Op {
        Op::AssignPolicy {
            policy: policy.into(),
            identity: identity.into(),
            sig: crate::state::Signature::under_first_key(),
        }
    }

    #[test]
    fn an_enclave_admin_administers_its_enclave_and_nothing_else() {
        let mut c = Cluster::new();
        let wide = ["/v1/policy/*/*", "/v1/key/*/*"];
        assert_eq!(c.run(TENANT_ADMIN, "t", write("p", &wide)), Outcome::Done);
        assert_eq!(c.run(TENANT_ADMIN, "t", assign("p", TENANT)), Outcome::Done);
        let key = Op::CreateKey {
            rotate_every: 0,
            name: "k".into(),
            creation_id: 1,
            sealed: crate::seal::record_shaped_under(1),
        };
        assert_eq!(c.run(TENANT_ADMIN, "t", key.clone()), Outcome::Done);
        // Not in the default enclave, not the enclave routes, not admin-only operations.
        assert_eq!(c.run(TENANT_ADMIN, "default", key), Outcome::NotAuthorized);
        let gone = Op::DeleteEnclave {
            name: "t".into(),
            force: true,
        };
        assert_eq!(c.run(TENANT_ADMIN, "t", gone), Outcome::NotAuthorized);
        let tomb = Op::Tombstone {
            node_id: 1,
            spki: "x".into(),
        };
        assert_eq!(c.run(TENANT_ADMIN, "t", tomb), Outcome::NotAuthorized);
        assert!(
            !c.state
                .is_allowed(TENANT_ADMIN, "t", &["/v1/enclave/list/"])
                .unwrap()
        );
        assert!(
            !c.state
                .is_allowed(TENANT_ADMIN, "t", &["/v1/metrics"])
                .unwrap()
        );
        // An enclave admin is never also assigned a policy in its own enclave.
        assert_eq!(
            c.run(ADMIN, "t", assign("p", TENANT_ADMIN)),
            Outcome::AssignToAdmin
        );
    }

    /// Giving a key a rotation period hands the leader the right to rotate it as the admin:
    /// apply, not only the handler, asks that the proposer hold it.
    #[test]
    fn a_rotation_period_takes_the_right_to_rotate_the_key() {
        let mut c = Cluster::new();
        let periods = ["/v1/key/create/*", "/v1/key/rotation/*"];
        assert_eq!(
            c.run(ADMIN, "default", write("periods", &periods)),
            Outcome::Done
        );
        assert_eq!(
            c.run(ADMIN, "default", assign("periods", TENANT)),
            Outcome::Done
        );
        let create = |name: &str, rotate_every| Op::CreateKey {
            rotate_every,
            name: name.into(),
            creation_id: 1,
            sealed: crate::seal::record_shaped_under(1),
        };
        let period = |rotate_every| Op::SetKeyRotation {
            name: "plain".into(),
            rotate_every,
        };
        let mut run = |op| c.run(TENANT, "default", op);
        assert_eq!(run(create("rotating", 3600)), Outcome::NotAuthorized);
        assert_eq!(run(create("plain", 0)), Outcome::Done);
        assert_eq!(run(period(3600)), Outcome::NotAuthorized);
        assert_eq!(run(period(0)), Outcome::Done, "stopping one takes no right");
        assert_eq!(c.run(ADMIN, "default", period(3600)), Outcome::Done);
    }

    #[test]
    fn a_tenant_cannot_widen_write_delete_or_hand_out_its_own_policy() {
        let mut c = Cluster::new();
        let own = ["/v1/policy/*/*", "/v1/key/*/*"];
        assert_eq!(c.run(TENANT_ADMIN, "t", write("own", &own)), Outcome::Done);
        assert_eq!(
            c.run(TENANT_ADMIN, "t", assign("own", TENANT)),
            Outcome::Done
        );
        let wider = ["/v1/policy/*/*", "/v1/key/*/*", "/v1/cluster/*/*"];
        assert_eq!(
            c.run(TENANT, "t", write("own", &wider)),
            Outcome::NotAuthorized
        );
        let delete = Op::DeletePolicy { name: "own".into() };
        assert_eq!(c.run(TENANT, "t", delete), Outcome::NotAuthorized);
        assert_eq!(
            c.run(TENANT, "t", assign("own", "someone")),
            Outcome::NotAuthorized
        );
        // Another policy in its enclave is within its rights.
        assert_eq!(
            c.run(TENANT, "t", write("other", &["/v1/key/list/*"])),
            Outcome::Done
        );
        assert_eq!(
            c.run(TENANT, "t", assign("other", "someone")),
            Outcome::Done
        );
        // The policy is unchanged.
        let p = c.state.policy("t", "own").unwrap().unwrap();
        assert_eq!(p.policy.allow, own);
    }

    #[test]
    fn apply_authorises_the_operation_not_the_claimed_path() {
        let mut c = Cluster::new();
        assert_eq!(
            c.run(ADMIN, "t", write("gen", &["/v1/key/generate/*"])),
            Outcome::Done
        );
        assert_eq!(c.run(ADMIN, "t", assign("gen", TENANT)), Outcome::Done);
        // The command claims a generate path, which the policy allows; the delete is refused.
        let delete = Op::DeleteKey { name: "k".into() };
        assert_eq!(c.run(TENANT, "t", delete), Outcome::NotAuthorized);
        // A deny that names the canonical path refuses the alias too.
        let deny = Op::WritePolicy {
            name: "ids".into(),
            policy: Policy {
                allow: vec!["/v1/identity/*/*".into()],
                deny: vec!["/v1/identity/delete/*".into()],
            },
            sig: crate::state::Signature::under_first_key(),
        };
        assert_eq!(c.run(ADMIN, "t", deny), Outcome::Done);
        assert_eq!(c.run(ADMIN, "t", assign("ids", "ops")), Outcome::Done);
        assert!(
            !c.state
                .is_allowed(
                    "ops",
                    "t",
                    &["/v1/identity/delete/x", "/v1/identity/forget/x"]
                )
                .unwrap()
        );
    }
}
