//! The request pipeline, in KES's order: route, method, authentication and authorisation,
//! body limit, handler under the route's time limit; then metrics and the audit event.

use super::request::{Req, parse_query, percent_decode};
use super::route::{Auth, Scope, find};
use super::{ApiError, names};
use crate::obs::{AuditEvent, AuditRequest, AuditResponse};
use crate::server::Node;
use crate::state::DEFAULT_ENCLAVE;
use crate::tls::{Identity, IdentityError};
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the TLS layer learnt about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client identity, or why there is none.
    pub identity: Result<Identity, IdentityError>,
    /// The client address.
    pub remote: SocketAddr,
    /// The presented certificate chain, for the join route (a joining node presents its node
    /// certificate, which must verify against the node CA). Shared, not copied, into every
    /// request on the connection.
    pub chain: Arc<[rustls_pki_types::CertificateDer<'static>]>,
}

/// Answers one request.
pub async fn dispatch<B>(node: Arc<Node>, conn: Arc<ConnInfo>, req: Request<B>) -> Response<Body>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let raw_path = req.uri().path();
    let path = percent_decode(if raw_path.starts_with('/') {
        raw_path
    } else {
        "/"
    });
    let Some((route, resource)) = find(&node.routes, &path) else {
        return super::error::page_not_found();
    };
    let route = route.clone();
    if route.counted {
        node.metrics.active.inc();
    }
    let resp = match run(&node, &conn, &route, path.clone(), resource, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if route.counted {
        node.metrics.active.dec();
        node.metrics
            .observe(resp.status().as_u16(), started.elapsed().as_secs_f64());
    }
    // Audited: every route with a time limit, i.e. all but the log streams.
    let mut resp = resp;
    if route.timeout.is_some()
        && !audit(&node, &conn, &path, resp.status(), started)
        && node.audit.closed()
        && !monitoring(&route)
    {
        // The request may have taken effect (as in Vault, whose response log can fail after
        // the fact); the client is told it cannot rely on it being on record.
        resp = audit_unavailable().into_response();
    }
    // Refusals and server failures go to the error log (and so to /v1/log/error).
    let status = resp.status();
    // A not-ready answer is what probes expect while a node starts or fails over: not an error.
    let probe = path == "/v1/ready";
    if !probe && (status == StatusCode::FORBIDDEN || status.is_server_error()) {
        let who = conn
            .identity
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        tracing::warn!(
            "{path}: {} for identity '{who}' from {}",
            status.as_u16(),
            conn.remote.ip()
        );
    }
    resp
}

async fn run<B>(
    node: &Arc<Node>,
    conn: &ConnInfo,
    route: &super::Route,
    path: String,
    resource: String,
    req: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if route.timeout.is_some() && node.audit.refusing() && !monitoring(route) {
        return Err(audit_unavailable());
    }
    if !route.accepts(req.method()) {
        let mut resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "received method '{}' expected '{}'",
                req.method(),
                route.method
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(route.method.as_str()) {
            resp.headers_mut().insert(header::ACCEPT, v);
        }
        return Ok(resp);
    }
    let query = parse_query(req.uri().query());
    let enclave = match route.scope {
        // A whole-cluster route is authorised in the default enclave, whatever the request
        // names: a tenant's policy in its own enclave never reaches cluster state.
        Scope::Cluster => DEFAULT_ENCLAVE.to_owned(),
        Scope::Enclave => select_enclave(&req, &query)?,
    };
    if route.needs_keys && node.seal.is_sealed() {
        return Err(ApiError::sealed());
    }
    let stateful = ["/v1/key/", "/v1/policy/", "/v1/identity/", "/v1/enclave/"];
    let is_stateful = stateful.iter().any(|p| path.starts_with(p));
    // Linearizable: the answer, and the policy check itself, must see every write
    // acknowledged before this request, or a deleted key or a revoked identity would still
    // work here, and a just-assigned policy would still be refused. The barrier comes before
    // authorisation for that reason; it is one shared round, so a caller that is refused
    // afterwards has cost at most a share of one.
    if needs_read_barrier(node, conn, route, is_stateful)? {
        node.cluster.read_barrier().await.map_err(|why| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node is not serving: {why}"),
            )
        })?;
    }
    let policy_paths = route.policy_paths(&resource);
    // Authenticated and authorised before the client's own index wait, so an unauthorised
    // caller can never hold a request (or a waiter slot) open for long.
    let identity = authenticate(node, conn, route, &enclave, &policy_paths)?;
    if let (Some(limiter), Some(id)) = (&node.rate_limiter, &identity)
        && let Err(wait) = rate_limit(node, limiter, id.as_str(), &enclave)?
    {
        node.metrics.http_rate_limited.inc();
        let mut resp =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests").into_response();
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.header_seconds()),
        );
        return Ok(resp);
    }
    if is_stateful {
        wait_for_index(node, req.headers()).await?;
    }
    let scoped = ["/v1/key/", "/v1/policy/", "/v1/identity/"];
    if scoped.iter().any(|p| path.starts_with(p)) && !node.state.enclave_exists(&enclave)? {
        return Err(ApiError::not_found("enclave does not exist"));
    }
    let (parts, body) = req.into_parts();
    let (body, body_too_large) = if route.max_body == 0 {
        (bytes::Bytes::new(), false)
    } else {
        // Over the limit, or a broken body: either way the handler answers "invalid body".
        match Limited::new(body, route.max_body).collect().await {
            Ok(b) => (b.to_bytes(), false),
            Err(_) => (bytes::Bytes::new(), true),
        }
    };
    let request = Req {
        identity,
        enclave,
        resource,
        path: policy_paths.into_iter().next().unwrap_or(path),
        query,
        headers: parts.headers,
        body,
        body_too_large,
        chain: conn.chain.clone(),
    };
    let fut = (route.handler)(node.clone(), request);
    match route.timeout {
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request timeout exceeded",
            ))
        }),
        None => fut.await,
    }
}

/// Whether the request must pass the read barrier: every route that answers from the
/// replicated state, and every route whose policy check reads it. The admin's monitoring
/// routes (status, metrics, logs) skip it: the admin is fixed when the cluster is founded, so
/// a partitioned node still answers them, which is when they matter most.
fn needs_read_barrier(
    node: &Node,
    conn: &ConnInfo,
    route: &super::Route,
    is_stateful: bool,
) -> Result<bool, ApiError> {
    if is_stateful {
        return Ok(true);
    }
    if !matches!(route.auth, Auth::Verify) || route.skip_auth {
        return Ok(false);
    }
    let admin = match &conn.identity {
        Ok(id) => node.is_admin(id.as_str())?,
        Err(_) => false,
    };
    Ok(!admin)
}

/// Takes one request from the identity's rate limit, if it has one (`rate_limits:`). Counted
/// after authentication, so requests refused anyway spend nobody's budget.
fn rate_limit(
    node: &Node,
    limiter: &crate::server::RateLimiter,
    identity: &str,
    enclave: &str,
) -> Result<Result<(), crate::server::RetryAfter>, ApiError> {
    let assigned = || Ok(node.state.identity(enclave, identity)?.map(|e| e.policy));
    let Some(limit) = limiter.limit_of::<ApiError>(node.is_admin(identity)?, assigned)? else {
        return Ok(Ok(()));
    };
    let bucket = format!("{enclave}\0{identity}");
    Ok(limiter.admit(&bucket, limit, Instant::now()))
}

/// A client that sends back the `Kes-Cluster-Index` of its last write reads it here: the
/// request waits (bounded) until this node has applied that index.
async fn wait_for_index(node: &Node, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(v) = headers.get(super::commit::INDEX_HEADER) else {
        return Ok(());
    };
    let index: u64 = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("Kes-Cluster-Index must be a log index (a number)"))?;
    if node
        .cluster
        .wait_applied(index, node.cluster.settings.read_index_wait)
        .await
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node has not applied index {index} yet; try another node or retry"),
        ))
    }
}

/// The enclave is chosen by the `Kes-Enclave` header or the `?enclave=` query.
fn select_enclave<B>(req: &Request<B>, query: &[(String, String)]) -> Result<String, ApiError> {
    let from_header = req
        .headers()
        .get("kes-enclave")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let from_query = query
        .iter()
        .find(|(k, _)| k == "enclave")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    match from_header.or(from_query) {
        None => Ok(DEFAULT_ENCLAVE.to_owned()),
        Some(e) => {
            names::enclave_name(e)?;
            Ok(e.to_owned())
        }
    }
}

fn authenticate(
    node: &Node,
    conn: &ConnInfo,
    route: &super::Route,
    enclave: &str,
    policy_paths: &[String],
) -> Result<Option<Identity>, ApiError> {
    let presented = conn.identity.clone();
    let checked = match route.auth {
        Auth::None => false,
        // `skip_auth` is refused by the config for every admin route.
        Auth::Identity | Auth::Verify => !route.skip_auth,
        Auth::Admin => true,
    };
    if !checked {
        return Ok(presented.ok());
    }
    let id = presented.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let allowed = match route.auth {
        Auth::None | Auth::Identity => true,
        Auth::Verify => node.state.is_allowed(id.as_str(), enclave, policy_paths)?,
        Auth::Admin => node.is_admin(id.as_str())?,
    };
    if !allowed {
        return Err(ApiError::forbidden());
    }
    Ok(Some(id))
}

/// Refuses anyone but the system admin. The route table already does this for every
/// `Auth::Admin` route; handlers that change membership or enclaves check again before their
/// first step, because openraft's membership changes never reach `apply`.
pub(super) fn require_admin(node: &Node, req: &super::Req) -> Result<(), ApiError> {
    let caller = req.caller()?;
    if node.is_admin(caller.as_str())? {
        Ok(())
    } else {
        tracing::warn!("refused {} from {caller}: admin only", req.path);
        Err(ApiError::forbidden())
    }
}

/// Publishes the request's audit event to the stream and writes it to the sinks. Returns
/// whether the sinks took it (true when there are none).
fn audit(node: &Node, conn: &ConnInfo, path: &str, status: StatusCode, started: Instant) -> bool {
    if !node.audit.any() && !node.events.has_audit_subscribers() {
        return true;
    }
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let event = AuditEvent {
        time,
        request: AuditRequest {
            ip: conn.remote.ip().to_string(),
            path: path.to_owned(),
            identity: conn
                .identity
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_default(),
        },
        response: AuditResponse {
            code: status.as_u16(),
            time: started.elapsed().as_millis() as u64,
        },
    };
    // One encoding for the stream and the sinks alike.
    let Ok(line) = serde_json::to_string(&event) else {
        return false;
    };
    node.events.audit(&line);
    !node.audit.any() || node.audit.write(&line)
}

/// `/v1/metrics` answers even while a closed audit log refuses everything else, so that the
/// failure (`kes_audit_write_failures_total`) can be seen and alerted on.
fn monitoring(route: &super::Route) -> bool {
    route.path == "/v1/metrics"
}

/// 503 while audit events cannot be written and `log.audit_failure` is `closed`.
fn audit_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit log unavailable: requests are refused until audit events can be written",
    )
}
