//! `/version`, `/v1/ready`, `/v1/status`, `/v1/metrics` and `/v1/api`.

use super::error::{empty, json};
use super::{ApiError, Req};
use crate::server::Node;
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

type Answer = Result<Response<Body>, ApiError>;

/// RFC 3339 with nanoseconds, as Go's `time.Time` JSON; the zero time when unknown.
pub(super) fn rfc3339(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned())
}

/// Like [`rfc3339`], from Unix nanoseconds (0 meaning unknown).
pub(super) fn rfc3339_nanos(nanos: i64) -> String {
    if nanos == 0 {
        return rfc3339(None);
    }
    rfc3339(OffsetDateTime::from_unix_timestamp_nanos(nanos.into()).ok())
}

/// Process facts for `/v1/status` and the `kes_system_*` metrics, read from `/proc`.
#[derive(Debug, Clone, Default)]
pub struct SystemFacts {
    /// Logical CPUs.
    pub num_cpu: usize,
    /// CPUs this process may run on.
    pub num_cpu_used: usize,
    /// OS threads of this process.
    pub threads: u64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Mapped memory regions.
    pub mapped_regions: u64,
    /// Main-thread stack, bytes.
    pub stack_bytes: u64,
}

/// Reads [`SystemFacts`]. Fields that cannot be read stay 0.
pub fn system_facts() -> SystemFacts {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    SystemFacts {
        num_cpu: cpus,
        num_cpu_used: cpus,
        threads: field("Threads:"),
        resident_bytes: field("VmRSS:") * 1024,
        mapped_regions: std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().count() as u64)
            .unwrap_or(0),
        stack_bytes: field("VmStk:") * 1024,
    }
}

/// `GET /version`
pub(super) async fn version(_: Arc<Node>, _: Req) -> Answer {
    Ok(json(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("KES_CLUSTER_COMMIT").unwrap_or("<unknown>"),
    })))
}

/// `GET /v1/ready[?write=true]`: 200 when the node is unsealed, a member with a known leader,
/// inside its serving lease and caught up. The lease of every role is rooted in the leader's
/// recent quorum acknowledgement, so it also means a write can commit now. Answered from
/// memory: probes time out at 1 s.
///
/// Why a node is not ready (a seal provider's error, a peer address) is told only to a caller
/// the policy admits; with `skip_auth` anyone can ask, and learns only "not ready".
pub(super) async fn ready(node: Arc<Node>, req: Req) -> Answer {
    let reason = not_ready_reason(&node).await;
    match reason {
        None => Ok(empty()),
        Some(_) if !may_see_details(&node, &req) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is not ready",
        )),
        Some(why) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why)),
    }
}

/// How long a node a few entries behind its leader gets to apply them before a probe calls it
/// not ready: applying one takes well under a millisecond, and a probe times out at 1 s.
const READY_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(200);

async fn not_ready_reason(node: &Node) -> Option<String> {
    if node.seal.is_sealed() {
        return Some(format!("node is sealed: {}", node.seal.reason()));
    }
    if let Err(why) = node.cluster.serving_within(READY_CATCH_UP).await {
        return Some(why);
    }
    if !node
        .config_synced
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Some("bringing the config's policies and keys into the cluster".into());
    }
    None
}

/// Whether the caller would pass the route's policy check. Routes with `skip_auth` reach the
/// handler without that check, and with `tls.auth: off` any certificate names an identity, so
/// a certificate alone proves nothing.
fn may_see_details(node: &Node, req: &Req) -> bool {
    req.identity.as_ref().is_some_and(|id| {
        node.state
            .is_allowed(
                id.as_str(),
                crate::state::DEFAULT_ENCLAVE,
                std::slice::from_ref(&req.path),
            )
            .unwrap_or(false)
    })
}

/// `GET /v1/status`
pub(super) async fn status(node: Arc<Node>, req: Req) -> Answer {
    let sys = system_facts();
    let sealed = node.seal.is_sealed();
    node.metrics.sealed.set(if sealed { 1.0 } else { 0.0 });
    Ok(json(&serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "uptime": node.metrics.uptime() as u64,
        "num_cpu": sys.num_cpu,
        "num_cpu_used": sys.num_cpu_used,
        "mem_heap_used": sys.resident_bytes,
        "mem_stack_used": sys.stack_bytes,
        "sealed": sealed,
        // The provider's error text is for callers the policy admits (see `ready`).
        "seal_reason": if may_see_details(&node, &req) { node.seal.reason() } else { String::new() },
        "cluster": crate::cluster::node_status(&node.cluster),
    })))
}

/// `GET /v1/metrics`
pub(super) async fn metrics(node: Arc<Node>, _: Req) -> Answer {
    node.metrics
        .sealed
        .set(if node.seal.is_sealed() { 1.0 } else { 0.0 });
    let (content_type, body) = node.metrics.render();
    let mut resp = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// `GET /v1/api`: every route with its method, body limit and timeout.
pub(super) async fn api(node: Arc<Node>, _: Req) -> Answer {
    let routes: Vec<_> = node
        .routes
        .iter()
        .map(|r| {
            serde_json::json!({
                "method": r.method.as_str(),
                "path": r.path,
                "max_body": r.max_body,
                "timeout": r.timeout.map(|t| t.as_secs()).unwrap_or(0),
            })
        })
        .collect();
    Ok(json(&routes))
}
