//! The policy API: describe, read, list, and the management routes of the older API
//! (write, assign, delete), which a replicated cluster makes meaningful.

use super::commit::{commit, commit_sealed};
use super::error::{empty, json};
use super::sys::rfc3339_nanos;
use super::{ApiError, Req, list, names};
use crate::auth::{Policy, validate};
use crate::server::Node;
use crate::state::{IdentityEntry, Op, PolicyEntry, scoped_key, unix_nanos_now};
use axum::body::Body;
use axum::http::Response;
use serde::Deserialize;
use std::sync::Arc;

type Answer = Result<Response<Body>, ApiError>;

async fn load(node: &Node, req: &Req) -> Result<PolicyEntry, ApiError> {
    names::policy_name(&req.resource)?;
    // The dispatcher's read barrier has run: a policy missing here is missing everywhere.
    node.state
        .policy(&req.enclave, &req.resource)?
        .ok_or_else(|| ApiError::not_found("policy does not exist"))
}

/// `GET /v1/policy/describe/<name>`
pub(super) async fn describe(node: Arc<Node>, req: Req) -> Answer {
    let p = load(&node, &req).await?;
    Ok(json(&serde_json::json!({
        "name": req.resource,
        "created_at": rfc3339_nanos(p.created_at),
        "created_by": p.created_by,
    })))
}

/// Patterns as KES's current API sends them: an object of pattern → `{}`.
fn pattern_object(patterns: &[String]) -> serde_json::Value {
    patterns
        .iter()
        .map(|p| (p.clone(), serde_json::json!({})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The current JSON shape of a policy, omitting empty allow/deny.
pub(super) fn policy_json(name: &str, p: &PolicyEntry) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), name.into());
    if !p.policy.allow.is_empty() {
        obj.insert("allow".into(), pattern_object(&p.policy.allow));
    }
    if !p.policy.deny.is_empty() {
        obj.insert("deny".into(), pattern_object(&p.policy.deny));
    }
    obj.insert("created_at".into(), rfc3339_nanos(p.created_at).into());
    obj.insert("created_by".into(), p.created_by.clone().into());
    obj.into()
}

/// `GET /v1/policy/read/<name>`
pub(super) async fn read(node: Arc<Node>, req: Req) -> Answer {
    let p = load(&node, &req).await?;
    Ok(json(&policy_json(&req.resource, &p)))
}

/// `GET /v1/policy/list/<prefix>`
pub(super) async fn list(node: Arc<Node>, req: Req) -> Answer {
    let a = list::args(&req)?;
    let page = node
        .state
        .list_policies(&req.enclave, &a.prefix, a.start.as_deref(), a.limit)?;
    Ok(list::render(&req, page, "names", "name", true))
}

/// Allow/deny as either arrays (older API) or objects of pattern → `{}` (current shape).
#[derive(Deserialize)]
#[serde(untagged)]
enum Patterns {
    List(Vec<String>),
    Map(serde_json::Map<String, serde_json::Value>),
}

impl Patterns {
    fn into_vec(self) -> Vec<String> {
        match self {
            Patterns::List(v) => v,
            Patterns::Map(m) => m.into_iter().map(|(k, _)| k).collect(),
        }
    }
}

#[derive(Deserialize)]
struct WriteBody {
    #[serde(default, alias = "Allow")]
    allow: Option<Patterns>,
    #[serde(default, alias = "Deny")]
    deny: Option<Patterns>,
}

/// Refuses a change to the policy that governs the caller itself, unless the caller
/// administers the enclave: a tenant must not widen its own rights. `apply` checks the same.
fn ensure_not_own_policy(node: &Node, req: &Req, policy: &str) -> Result<(), ApiError> {
    if node
        .state
        .may_manage_policy(req.caller()?.as_str(), &req.enclave, policy)?
    {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// `PUT|POST /v1/policy/write/<name>`: creates or overwrites; assignments are kept.
pub(super) async fn write(node: Arc<Node>, req: Req) -> Answer {
    names::policy_name(&req.resource)?;
    ensure_not_own_policy(&node, &req, &req.resource)?;
    let policy = write_body(&req)?;
    let keys = node.current_keys().await?;
    let time = unix_nanos_now();
    let entry = PolicyEntry::new(policy.clone(), time, req.caller()?.as_str(), false);
    let key = scoped_key(&req.enclave, &req.resource);
    let sig = crate::seal::sign(&keys, "policies", &key, &entry);
    let op = Op::WritePolicy {
        name: req.resource.clone(),
        policy,
        sig,
    };
    commit_sealed(&node, &req, &keys, time, op, empty()).await
}

/// The validated policy of a write body. Pure (no node), so the fuzz targets run exactly this.
pub(super) fn write_body(req: &Req) -> Result<Policy, ApiError> {
    let body: WriteBody = req.json("invalid policy request body")?;
    let policy = Policy {
        allow: body.allow.map(Patterns::into_vec).unwrap_or_default(),
        deny: body.deny.map(Patterns::into_vec).unwrap_or_default(),
    };
    for p in policy.allow.iter().chain(&policy.deny) {
        validate(p).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(policy)
}

#[derive(Deserialize)]
struct AssignBody {
    #[serde(alias = "Identity")]
    identity: String,
}

/// `POST /v1/policy/assign/<policy>` with `{"identity": ...}`.
pub(super) async fn assign(node: Arc<Node>, req: Req) -> Answer {
    names::policy_name(&req.resource)?;
    let identity = assign_body(&req)?;
    assign_to(&node, &req, req.resource.clone(), identity).await
}

/// The identity an assign body names, not yet checked ([`assign_to`] does). Pure, for the fuzz
/// targets too.
pub(super) fn assign_body(req: &Req) -> Result<String, ApiError> {
    let body: AssignBody = req.json("invalid policy assign request body")?;
    Ok(body.identity)
}

/// Assigns `identity` to `policy` through the log.
pub(super) async fn assign_to(node: &Node, req: &Req, policy: String, identity: String) -> Answer {
    names::identity(&identity)?;
    ensure_not_own_policy(node, req, &policy)?;
    let keys = node.current_keys().await?;
    let time = unix_nanos_now();
    let entry = IdentityEntry::new(&policy, time, req.caller()?.as_str(), false);
    let sig = crate::seal::sign(
        &keys,
        "identities",
        &scoped_key(&req.enclave, &identity),
        &entry,
    );
    let op = Op::AssignPolicy {
        policy,
        identity,
        sig,
    };
    commit_sealed(node, req, &keys, time, op, empty()).await
}

/// `DELETE /v1/policy/delete/<name>`: also removes its assignments.
pub(super) async fn delete(node: Arc<Node>, req: Req) -> Answer {
    names::policy_name(&req.resource)?;
    ensure_not_own_policy(&node, &req, &req.resource)?;
    let op = Op::DeletePolicy {
        name: req.resource.clone(),
    };
    commit(&node, &req, op, empty()).await
}
