//! Turning a request into a committed [`Command`], and its outcome into KES's answer.

use super::request_id::new_request_id;
use super::{ApiError, Req};
use crate::cluster::WriteError;
use crate::server::{CurrentKeys, Node};
use crate::state::{Command, Op, Outcome, unix_nanos_now};
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use rand::RngCore;

/// The header that carries the log index of a write, so a client can read its own write on
/// another node.
pub(super) const INDEX_HEADER: &str = "kes-cluster-index";

/// Commits `op` on behalf of the caller and maps a refusing outcome to its KES error. On
/// success the answer is `ok`, with the `Kes-Cluster-Index` header added.
pub(super) async fn commit(
    node: &Node,
    req: &Req,
    op: Op,
    ok: Response<Body>,
) -> Result<Response<Body>, ApiError> {
    let index = commit_op(node, req, op).await?;
    Ok(with_index(ok, index))
}

/// Like [`commit`], for `op` whose record the caller sealed or signed with `keys` (a record
/// that carries `time` as well): `apply` refuses it if a restore replaced the cluster key
/// meanwhile (`Command::restores_seen`).
pub(super) async fn commit_sealed(
    node: &Node,
    req: &Req,
    keys: &CurrentKeys,
    time: i64,
    op: Op,
    ok: Response<Body>,
) -> Result<Response<Body>, ApiError> {
    let index = commit_command(node, req, time, Some(keys.restores), op).await?;
    Ok(with_index(ok, index))
}

/// Commits `op` and returns its log index.
pub(super) async fn commit_op(node: &Node, req: &Req, op: Op) -> Result<u64, ApiError> {
    commit_command(node, req, unix_nanos_now(), None, op).await
}

fn with_index(mut resp: Response<Body>, index: u64) -> Response<Body> {
    resp.headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(index));
    resp
}

/// Commits `op` stamped with `time` (and, for a sealed or signed record, the restores its
/// keys had seen), and returns its log index.
async fn commit_command(
    node: &Node,
    req: &Req,
    time: i64,
    restores_seen: Option<u64>,
    op: Op,
) -> Result<u64, ApiError> {
    let cmd = Command {
        request_id: new_request_id(),
        identity: req.caller()?.to_string(),
        path: req.path.clone(),
        enclave: req.enclave.clone(),
        time,
        op,
        restores_seen,
    };
    let started = std::time::Instant::now();
    let committed = node.cluster.write(cmd).await;
    node.metrics
        .cluster_write_seconds
        .observe(started.elapsed().as_secs_f64());
    let committed = committed.map_err(|e| {
        tracing::warn!("write failed: {e}");
        let status = match e {
            WriteError::NoLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            WriteError::Unknown(_) => StatusCode::GATEWAY_TIMEOUT,
            WriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError::new(status, e.to_string())
    })?;
    outcome_to_result(committed.outcome).map(|()| committed.index)
}

/// A random 128-bit id (key creation ids, cluster ids).
pub fn new_id() -> u128 {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    u128::from_be_bytes(b)
}

fn outcome_to_result(outcome: Outcome) -> Result<(), ApiError> {
    let bad = ApiError::bad_request;
    Err(match outcome {
        Outcome::Done => return Ok(()),
        Outcome::NotAuthorized => ApiError::forbidden(),
        Outcome::KeyExists => bad("key already exists"),
        Outcome::KeyNotFound => ApiError::not_found("key does not exist"),
        Outcome::PolicyNotFound => ApiError::not_found("policy does not exist"),
        Outcome::IdentityNotFound => ApiError::not_found("identity does not exist"),
        Outcome::EnclaveExists => bad("enclave already exists"),
        Outcome::EnclaveNotFound => ApiError::not_found("enclave does not exist"),
        Outcome::EnclaveNotEmpty => {
            bad("enclave still holds keys: delete them first, or add ?force=true")
        }
        Outcome::ReadOnly(msg) => ApiError::new(StatusCode::FORBIDDEN, msg),
        Outcome::AssignToAdmin => bad("cannot assign policy to system admin"),
        Outcome::AssignToSelf => ApiError::new(
            StatusCode::FORBIDDEN,
            "identity cannot assign policy to itself",
        ),
        Outcome::AlreadyInitialized => bad("cluster is already initialized"),
        Outcome::ConfigClash(msg) => ApiError::bad_request(msg),
        Outcome::KeyChanged => ApiError::new(
            StatusCode::CONFLICT,
            "the key was rotated or retired concurrently; nothing was written, retry",
        ),
        Outcome::BadKeyVersion(msg) => ApiError::bad_request(msg),
        Outcome::MetadataChanged => ApiError::new(
            StatusCode::CONFLICT,
            "a policy, identity or enclave changed while the restore re-signed them; write nothing while a restore runs, and run it again",
        ),
        Outcome::RekeyRunning => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a rekey is running; nothing was written, retry once it finishes",
        ),
        Outcome::StaleClusterKey => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster key was rekeyed while this request was in flight; nothing was written, retry",
        ),
    })
}
