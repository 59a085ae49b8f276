//! The key-version API: rotate, rewrap, min-version and retire (README "Key versions").
//!
//! A rotation, retirement or minimum version re-seals the key's whole record here, in the
//! handler, from the record this node holds, and commits it with the record it was made from
//! (the minimum is sealed with the versions, so that it cannot be lowered on disk). `apply`
//! takes it only if the key is still at that record (`state/apply/key_versions.rs`);
//! otherwise another change landed first, and the handler makes its record again from the
//! newer one. Changes
//! of one key through one node wait for each other (`server/key_change_locks.rs`), so only
//! changes through different nodes at once make each other start over.

use super::commit::{commit, commit_sealed};
use super::error::json;
use super::key::{BAD_BODY, CryptoBody, field, load, open_any_version};
use super::{ApiError, Req, names};
use crate::crypto::{KeyVersions, VersionError};
use crate::seal::{RecordAad, seal_record};
use crate::server::Node;
use crate::state::{Op, ResealedFrom, unix_nanos_now};
use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

type Answer = Result<Response<Body>, ApiError>;

/// How many times a rotation or retirement is made again after another change landed first.
const ATTEMPTS: usize = 5;

/// The most versions a key retains unless the config says otherwise: each decrypt of an old
/// ciphertext may try every one of them.
pub const DEFAULT_MAX_VERSIONS: usize = 32;

/// A change of a key's versions.
#[derive(Clone, Copy)]
enum Change {
    /// Add a version; with `Some(n)`, only to make `n` the newest (`{"version": n}`).
    Rotate(Option<u32>),
    /// Delete the versions below this one.
    RetireBelow(u32),
    /// Make the versions below this one refuse to decrypt (0 or 1: none refuses).
    MinDecrypt(u32),
}

fn bad_version(e: VersionError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Makes the change on the key the request names, again from the newer record if another
/// change landed first (up to `attempts` in all); answers what `answer` makes of the new
/// versions, and the newest.
async fn change_versions(
    node: &Node,
    req: &Req,
    change: Change,
    attempts: usize,
    answer: impl Fn(&KeyVersions) -> serde_json::Value,
) -> Result<(Response<Body>, u32), ApiError> {
    names::key_name(&req.resource)?;
    let (enclave, name) = (&req.enclave, &req.resource);
    let by = req.caller()?.to_string();
    let _one_change_at_a_time = node.key_changes.lock(enclave, name).await;
    for attempt in 1..=attempts {
        // The current keys open the record, and seal the new one.
        let (entry, keys, versions) = node.open_current(enclave, name).await?;
        let changed = match change {
            Change::Rotate(to) => {
                if let Some(done) = rotated_already(&versions, to)? {
                    return Ok((json(&answer(&versions)), done));
                }
                let max = node.limits.max_versions;
                if versions.versions().len() >= max {
                    return Err(ApiError::bad_request(format!(
                        "the key retains {max} versions, the most max_versions allows: retire old versions first"
                    )));
                }
                versions
                    .rotated(time::OffsetDateTime::now_utc(), &by)
                    .map_err(bad_version)?
            }
            Change::RetireBelow(below) => versions.retired_below(below).map_err(bad_version)?,
            Change::MinDecrypt(min) => versions.with_min_decrypt(min).map_err(bad_version)?,
        };
        let aad = RecordAad {
            enclave,
            name,
            creation_id: entry.creation_id,
        };
        let sealed = seal_record(&keys, aad, &changed.encode());
        let op = match change {
            Change::Rotate(_) => Op::RotateKey {
                name: name.clone(),
                creation_id: entry.creation_id,
                from_version: entry.version,
                revision: entry.revision,
                sealed,
            },
            Change::RetireBelow(below) => Op::RetireKeyVersions {
                name: name.clone(),
                creation_id: entry.creation_id,
                version: entry.version,
                revision: entry.revision,
                below,
                sealed,
            },
            Change::MinDecrypt(min_decrypt) => Op::SealKeyMinVersion {
                name: name.clone(),
                min_decrypt,
                from: ResealedFrom {
                    creation_id: entry.creation_id,
                    version: entry.version,
                    revision: entry.revision,
                    sealed,
                },
            },
        };
        let ok = json(&answer(&changed));
        match commit_sealed(node, req, &keys, unix_nanos_now(), op, ok).await {
            // Another change landed first; this node has applied it by now (the refusal was
            // applied after it), so the next attempt starts from it.
            Err(e) if e.status == StatusCode::CONFLICT && attempt < attempts => continue,
            done => return done.map(|r| (r, changed.newest().number)),
        }
    }
    unreachable!("the last attempt returns")
}

/// For a rotation made only to make version `to` the newest: `Some(to)` if it is already
/// (a retry of a rotation whose answer was lost, say), an error if the newest is not the one
/// before it, `None` to rotate.
fn rotated_already(versions: &KeyVersions, to: Option<u32>) -> Result<Option<u32>, ApiError> {
    let Some(to) = to else {
        return Ok(None);
    };
    let newest = versions.newest().number;
    if newest == to {
        Ok(Some(to))
    } else if newest.checked_add(1) == Some(to) {
        Ok(None)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the key's newest version is {newest}: it cannot be rotated to version {to}"),
        ))
    }
}

#[derive(Deserialize, Default)]
struct RotateBody {
    /// Rotate only to make this version the newest; a key already there is left as it is.
    version: Option<u32>,
}

/// `PUT /v1/key/rotate/<name>`: adds a version, which encrypt and generate use from now on;
/// answers `{"version": N}`. With `{"version": N}`, it makes N the newest version: it rotates
/// a key at N-1, leaves one at N as it is, and refuses any other (409). That makes a retry safe
/// when the answer was lost: without it, a retried rotation adds a second version.
pub(super) async fn rotate(node: Arc<Node>, req: Req) -> Answer {
    let body: RotateBody =
        req.json_or_default("invalid rotate request body: expected nothing, or {\"version\": N}")?;
    let change = Change::Rotate(body.version);
    change_versions(&node, &req, change, ATTEMPTS, new_version)
        .await
        .map(|(answer, _)| answer)
}

fn new_version(v: &KeyVersions) -> serde_json::Value {
    serde_json::json!({ "version": v.newest().number })
}

/// Rotates key `name` of `enclave` on behalf of `identity` (the admin, for `rotate_every`),
/// through the same path as `PUT /v1/key/rotate/<name>`; answers the new version. Made once:
/// a key that changed meanwhile (409) was rotated by someone else, and its next due time
/// decides whether it needs another rotation.
pub async fn rotate_as(
    node: Arc<Node>,
    enclave: &str,
    name: &str,
    identity: &str,
) -> Result<u32, ApiError> {
    let req = Req::system(identity, enclave, "/v1/key/rotate/", name);
    change_versions(&node, &req, Change::Rotate(None), 1, new_version)
        .await
        .map(|(_, version)| version)
}

#[derive(Deserialize)]
struct RetireBody {
    below: u32,
}

/// `PUT /v1/key/retire/<name>` with `{"below": N}`: deletes every version below N for good;
/// answers the versions kept.
pub(super) async fn retire(node: Arc<Node>, req: Req) -> Answer {
    let body: RetireBody = req.json("invalid retire request body: expected {\"below\": N}")?;
    change_versions(
        &node,
        &req,
        Change::RetireBelow(body.below),
        ATTEMPTS,
        |v| {
            let kept: Vec<u32> = v.versions().iter().map(|v| v.number).collect();
            serde_json::json!({ "versions": kept })
        },
    )
    .await
    .map(|(answer, _)| answer)
}

#[derive(Deserialize)]
struct MinVersionBody {
    decrypt: u32,
}

/// `PUT /v1/key/min-version/<name>` with `{"decrypt": N}`: versions below N refuse to decrypt
/// until a lower minimum is set (0 or 1: every retained version decrypts).
pub(super) async fn min_version(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    let body: MinVersionBody =
        req.json("invalid min-version request body: expected {\"decrypt\": N}")?;
    let min = body.decrypt;
    change_versions(
        &node,
        &req,
        Change::MinDecrypt(min),
        ATTEMPTS,
        |_| serde_json::json!({ "decrypt": min }),
    )
    .await
    .map(|(answer, _)| answer)
}

#[derive(Deserialize)]
struct RotationBody {
    rotate_every: String,
}

/// `PUT /v1/key/rotation/<name>` with `{"rotate_every": "720h"}`: the leader rotates the key
/// this often from now on (the period counts from now, so setting one never rotates at once);
/// `"off"` stops it. Giving a key a period takes the right to rotate it, as on create.
pub(super) async fn rotation(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    let body: RotationBody = req.json(
        "invalid rotation request body: expected {\"rotate_every\": \"720h\"}, or \"off\" to stop",
    )?;
    let every = match body.rotate_every.trim() {
        "off" | "0" => 0,
        text => super::key::rotation_period(text)?,
    };
    if every > 0 {
        super::key::may_rotate(&node, &req)?;
    }
    let op = Op::SetKeyRotation {
        name: req.resource.clone(),
        rotate_every: every,
    };
    let shown = match every {
        0 => "off".to_owned(),
        s => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
    };
    commit(
        &node,
        &req,
        op,
        json(&serde_json::json!({ "rotate_every": shown })),
    )
    .await
}

/// `PUT /v1/key/rewrap/<name>` with `{"ciphertext", "context"}`: the same plaintext under the
/// newest version, which never leaves the node.
pub(super) async fn rewrap(node: Arc<Node>, req: Req) -> Answer {
    let body: CryptoBody = req.json(BAD_BODY)?;
    let (ciphertext, context) = (field(&body.ciphertext)?, field(&body.context)?);
    let key = load(&node, &req).await?;
    let plaintext = open_any_version(&key, &ciphertext, &context)?;
    let rewrapped = key.versions.encrypt(&plaintext, &context);
    Ok(json(&serde_json::json!({
        "ciphertext": *super::request::to_b64(&rewrapped),
        "version": key.versions.newest().number,
    })))
}
