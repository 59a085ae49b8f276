//! The handler type, and the table-friendly wrappers around each async handler.

use super::{ApiError, Req};
use crate::server::Node;
use axum::body::Body;
use axum::http::Response;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future a handler returns.
pub(super) type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;

/// A handler, as a plain function pointer so the route table can be `const` data.
pub(super) type Handler = fn(Arc<Node>, Req) -> HandlerFuture;

macro_rules! handlers {
    ($($name:ident => $target:path),* $(,)?) => {
        $(
            pub(super) fn $name(node: Arc<Node>, req: Req) -> HandlerFuture {
                Box::pin($target(node, req))
            }
        )*
    };
}

handlers! {
    version => super::sys::version,
    ready => super::sys::ready,
    status => super::sys::status,
    metrics => super::sys::metrics,
    api => super::sys::api,
    key_create => super::key::create,
    key_import => super::key::import,
    key_describe => super::key::describe,
    key_list => super::key::list,
    key_delete => super::key::delete,
    key_encrypt => super::key::encrypt,
    key_generate => super::key::generate,
    key_decrypt => super::key::decrypt,
    key_hmac => super::key::hmac,
    key_bulk_decrypt => super::key::bulk_decrypt,
    key_rotate => super::key_versions::rotate,
    key_rewrap => super::key_versions::rewrap,
    key_min_version => super::key_versions::min_version,
    key_retire => super::key_versions::retire,
    key_rotation => super::key_versions::rotation,
    policy_describe => super::policy::describe,
    policy_read => super::policy::read,
    policy_list => super::policy::list,
    policy_write => super::policy::write,
    policy_assign => super::policy::assign,
    policy_delete => super::policy::delete,
    identity_describe => super::identity::describe,
    identity_list => super::identity::list,
    identity_self => super::identity::self_describe,
    identity_assign => super::identity::assign,
    identity_delete => super::identity::delete,
    enclave_create => super::enclave::create,
    enclave_describe => super::enclave::describe,
    enclave_list => super::enclave::list,
    enclave_delete => super::enclave::delete,
    cluster_status => super::cluster::status,
    cluster_join => super::cluster::join,
    cluster_join_request => super::cluster::join_request,
    cluster_founded => super::founded::founded,
    cluster_remove => super::cluster::remove,
    cluster_snapshot => super::cluster::snapshot,
    seal_status => super::seal::status,
    seal_add => super::seal::add,
    seal_remove => super::seal::remove,
    seal_rekey => super::seal::rekey,
    cluster_restore => super::cluster::restore,
    log_error => super::log::error,
    log_audit => super::log::audit,
}
