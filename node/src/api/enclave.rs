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

#[derive(serde::Deserialize, Default)]
struct CreateBody {
    /// The identity that administers the new enclave (KES v0.22's `admin`).
    #[serde(default, alias = "Admin")]
    admin: String,
}

/// The enclave admin a create body names (empty: none), checked to be an identity. Pure, so
/// the fuzz targets run exactly this.
pub(super) fn create_body(req: &Req) -> Result<String, ApiError> {
    let body: CreateBody = req.json_or_default("invalid enclave create request body")?;
    if !body.admin.is_empty() {
        names::identity(&body.admin)?;
    }
    Ok(body.admin)
}

/// `PUT|POST /v1/enclave/create/<name>` with an optional `{"admin": "<identity>"}`.
pub(super) async fn create(node: Arc<Node>, req: Req) -> Answer {
    names::enclave_name(&req.resource)?;
    super::dispatch::require_admin(&node, &req)?;
    let enclave_admin = create_body(&req)?;
    if !enclave_admin.is_empty() && node.state.is_admin(&enclave_admin)? {
        return Err(ApiError::bad_request(
            "the system admin administers every enclave already; name another identity",
        ));
    }
    let keys = node.current_keys().await?;
    let time = crate::state::unix_nanos_now();
    let entry = crate::state::EnclaveEntry::new(time, req.caller()?.as_str())
        .administered_by(&enclave_admin);
    let sig = crate::seal::sign(&keys, "enclaves", req.resource.as_bytes(), &entry);
    let op = Op::CreateEnclave {
        name: req.resource.clone(),
        admin: enclave_admin,
        sig,
    };
    super::commit::commit_sealed(&node, &req, &keys, time, op, empty()).await
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
        "admin": e.admin,
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
    super::dispatch::require_admin(&node, &req)?;
    let force = matches!(req.query("force"), Some("true") | Some("1") | Some(""));
    // Every node's apply evicts the enclave's keys from its cache (`KeyCache::hold_for`).
    let name = req.resource.clone();
    commit(&node, &req, Op::DeleteEnclave { name, force }, empty()).await
}
