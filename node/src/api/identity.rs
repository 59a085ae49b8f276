//! The identity API: describe, list, self-describe, assign and delete.

use super::commit::commit;
use super::error::{empty, json};
use super::sys::rfc3339_nanos;
use super::{ApiError, Req, list, names};
use crate::server::Node;
use crate::state::Op;
use axum::body::Body;
use axum::http::Response;
use std::sync::Arc;

type Answer = Result<Response<Body>, ApiError>;

fn cluster_created(node: &Node) -> Result<String, ApiError> {
    Ok(rfc3339_nanos(
        node.state
            .cluster_meta()?
            .map(|m| m.created_at)
            .unwrap_or(0),
    ))
}

/// `GET /v1/identity/describe/<identity>`
pub(super) async fn describe(node: Arc<Node>, req: Req) -> Answer {
    names::identity(&req.resource)?;
    if node.state.is_admin(&req.resource)? {
        return Ok(json(&serde_json::json!({
            "admin": true,
            "created_at": cluster_created(&node)?,
        })));
    }
    let i = node
        .state
        .identity(&req.enclave, &req.resource)?
        .ok_or_else(|| ApiError::not_found("identity does not exist"))?;
    Ok(json(&serde_json::json!({
        "policy": i.policy,
        "created_at": rfc3339_nanos(i.created_at),
        "created_by": i.created_by,
    })))
}

/// `GET /v1/identity/list/<prefix>`: the assigned identities and the admin.
pub(super) async fn list(node: Arc<Node>, req: Req) -> Answer {
    let a = list::args(&req)?;
    let mut page =
        node.state
            .list_identities(&req.enclave, &a.prefix, a.start.as_deref(), a.limit)?;
    if let Some(admin) = node.state.admin()? {
        let in_range =
            admin.starts_with(&a.prefix) && a.start.as_deref().is_none_or(|s| admin.as_str() >= s);
        let before_cut = page
            .continue_at
            .as_deref()
            .is_none_or(|c| admin.as_str() < c);
        if in_range && before_cut && !page.names.contains(&admin) {
            page.names.push(admin);
            page.names.sort();
        }
    }
    Ok(list::render(&req, page, "identities", "identity", true))
}

/// `GET /v1/identity/self/describe`: 200 for every authenticated caller, with its policy
/// when it has one (upstream answers 404 to every non-admin: fixed here).
pub(super) async fn self_describe(node: Arc<Node>, req: Req) -> Answer {
    let me = req.caller()?.to_string();
    if node.state.is_admin(&me)? {
        return Ok(json(&serde_json::json!({
            "identity": me,
            "admin": true,
            "created_at": cluster_created(&node)?,
        })));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("identity".into(), me.clone().into());
    match node.state.identity(&req.enclave, &me)? {
        Some(i) => {
            obj.insert("created_at".into(), rfc3339_nanos(i.created_at).into());
            obj.insert("created_by".into(), i.created_by.into());
            let policy = node.state.policy(&req.enclave, &i.policy)?;
            if let Some(p) = policy {
                obj.insert("policy".into(), super::policy::policy_json(&i.policy, &p));
            }
        }
        None => {
            obj.insert("created_at".into(), rfc3339_nanos(0).into());
            obj.insert("created_by".into(), "".into());
        }
    }
    Ok(json(&obj))
}

/// `POST /v1/identity/assign/<policy>/<identity>`, the older spelling of policy assign.
pub(super) async fn assign(node: Arc<Node>, req: Req) -> Answer {
    let (policy, identity) = req
        .resource
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request("use /v1/identity/assign/<policy>/<identity>"))?;
    names::policy_name(policy)?;
    let (policy, identity) = (policy.to_owned(), identity.to_owned());
    super::policy::assign_to(&node, &req, policy, identity).await
}

/// `DELETE /v1/identity/delete/<identity>` (and `/forget/`).
pub(super) async fn delete(node: Arc<Node>, req: Req) -> Answer {
    names::identity(&req.resource)?;
    let op = Op::DeleteIdentity {
        identity: req.resource.clone(),
    };
    commit(&node, &req, op, empty()).await
}
