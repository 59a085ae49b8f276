//! The enclave API. Only the admin creates and deletes enclaves.

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

fn require_admin(node: &Node, req: &Req) -> Result<(), ApiError> {
    if node.state.admin()?.as_deref() == Some(req.caller()?.as_str()) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// `PUT|POST /v1/enclave/create/<name>`
pub(super) async fn create(node: Arc<Node>, req: Req) -> Answer {
    names::enclave_name(&req.resource)?;
    require_admin(&node, &req)?;
    let keys = node.seal.keys().ok_or_else(ApiError::sealed)?;
    let time = crate::state::unix_nanos_now();
    let entry = crate::state::EnclaveEntry::new(time, req.caller()?.as_str());
    let sig = crate::seal::sign(&keys, "enclaves", req.resource.as_bytes(), &entry);
    let op = Op::CreateEnclave {
        name: req.resource.clone(),
        sig,
    };
    super::commit::commit_at(&node, &req, time, op, empty()).await
}

/// `GET /v1/enclave/describe/<name>`
pub(super) async fn describe(node: Arc<Node>, req: Req) -> Answer {
    names::enclave_name(&req.resource)?;
    let e = node
        .state
        .enclave(&req.resource)?
        .ok_or_else(|| ApiError::not_found("enclave does not exist"))?;
    Ok(json(&serde_json::json!({
        "name": req.resource,
        "created_at": rfc3339_nanos(e.created_at),
        "created_by": e.created_by,
    })))
}

/// `GET /v1/enclave/list/<prefix>`
pub(super) async fn list(node: Arc<Node>, req: Req) -> Answer {
    let a = list::args(&req)?;
    let page = node
        .state
        .list_enclaves(&a.prefix, a.start.as_deref(), a.limit)?;
    Ok(list::render(&req, page, "names", "name", false))
}

/// `DELETE|POST /v1/enclave/delete/<name>[?force=true]`
pub(super) async fn delete(node: Arc<Node>, req: Req) -> Answer {
    names::enclave_name(&req.resource)?;
    require_admin(&node, &req)?;
    let force = matches!(req.query("force"), Some("true") | Some("1") | Some(""));
    let name = req.resource.clone();
    let resp = commit(
        &node,
        &req,
        Op::DeleteEnclave {
            name: name.clone(),
            force,
        },
        empty(),
    )
    .await;
    if resp.is_ok() {
        node.cache.remove_enclave(&name);
    }
    resp
}
