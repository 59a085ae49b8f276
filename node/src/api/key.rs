//! The key API: create, import, describe, list, delete, and the crypto operations.

use super::commit::{commit, commit_sealed, new_id};
use super::error::{empty, json};
use super::request::{b64, to_b64};
use super::{ApiError, Req, list, names};
use crate::crypto::{Cipher, DecryptError, KeyVersions, SecretKey, StoredKey, default_cipher};
use crate::seal::{RecordAad, seal_record};
use crate::server::{LoadedKey, Node};
use crate::state::{Op, unix_nanos_now};
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

type Answer = Result<Response<Body>, ApiError>;

pub(super) const BAD_BODY: &str = "invalid request body";

/// The create body: none, as KES clients send, or our `{"rotate_every": "720h"}`.
#[derive(Deserialize, Default)]
struct CreateBody {
    rotate_every: Option<String>,
}

/// `PUT /v1/key/create/<name>`
pub(super) async fn create(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    let body: CreateBody = req.json_or_default(
        "invalid create request body: expected none, or {\"rotate_every\": \"720h\"}",
    )?;
    let every = match body.rotate_every.as_deref() {
        None => 0,
        Some(text) => rotation_period(text)?,
    };
    if every > 0 {
        may_rotate(&node, &req)?;
    }
    store_new_key(&node, &req, SecretKey::generate(default_cipher()), every).await
}

/// Refuses a caller who may not rotate the key the request names. The leader rotates a key
/// with a period as the admin: whoever gives a key one must be allowed to rotate it.
pub(super) fn may_rotate(node: &Node, req: &Req) -> Result<(), ApiError> {
    let rotate = format!("/v1/key/rotate/{}", req.resource);
    if node
        .state
        .is_allowed(req.caller()?.as_str(), &req.enclave, &[rotate])?
    {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// A rotation period, as `rotate_every` gives it ("720h", "30d"): whole seconds, at least 1.
pub(super) fn rotation_period(text: &str) -> Result<u64, ApiError> {
    humantime::parse_duration(text)
        .ok()
        .map(|d| d.as_secs())
        .filter(|s| *s >= 1)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid rotate_every '{text}': give a duration of at least 1s, such as 720h"
            ))
        })
}

/// The import body carries the key itself, in base64: wiped when dropped, and no `Debug`.
#[derive(Deserialize, Default, Zeroize, ZeroizeOnDrop)]
struct ImportBody {
    #[serde(alias = "Key", alias = "bytes", alias = "Bytes")]
    key: Option<String>,
    #[serde(alias = "Cipher", alias = "algorithm", alias = "Algorithm")]
    cipher: Option<String>,
}

/// `PUT /v1/key/import/<name>`: `{"key","cipher"}`, or the older `{"bytes"[,"algorithm"]}`.
pub(super) async fn import(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    let key = import_body(&req)?;
    store_new_key(&node, &req, key, 0).await
}

/// The key an import body names. Pure (no node), so the fuzz targets run exactly this.
pub(super) fn import_body(req: &Req) -> Result<SecretKey, ApiError> {
    const BAD: &str = "invalid import key request body";
    let body: ImportBody = req.json(BAD)?;
    let material =
        b64(body.key.as_deref().unwrap_or("")).ok_or_else(|| ApiError::bad_request(BAD))?;
    // A missing cipher means AES256, so the seed's curl import (no cipher) works.
    let name = body
        .cipher
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "AES256".into());
    let cipher = Cipher::parse_import(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("algorithm '{name}' is not supported"),
        )
    })?;
    SecretKey::import(cipher, &material).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("invalid key size for '{name}'"),
        )
    })
}

/// Seals the key record here, in the handler, so the command (and every log entry and
/// snapshot made from it) only ever carries sealed bytes.
async fn store_new_key(node: &Node, req: &Req, key: SecretKey, rotate_every: u64) -> Answer {
    let keys = node.current_keys().await?;
    let name = req.resource.clone();
    if node.state.key(&req.enclave, &name)?.is_some() {
        return Err(ApiError::bad_request("key already exists"));
    }
    let stored = StoredKey {
        key,
        created_at: Some(time::OffsetDateTime::now_utc()),
        created_by: req.caller()?.to_string(),
    };
    let creation_id = new_id();
    let aad = RecordAad {
        enclave: &req.enclave,
        name: &name,
        creation_id,
    };
    let sealed = seal_record(&keys, aad, &KeyVersions::first(stored).encode());
    let op = Op::CreateKey {
        name,
        creation_id,
        sealed,
        rotate_every,
    };
    commit_sealed(node, req, &keys, unix_nanos_now(), op, empty()).await
}

/// `GET /v1/key/describe/<name>`
pub(super) async fn describe(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    if node.seal.is_sealed() {
        return Err(ApiError::sealed());
    }
    let (entry, _, versions) = node.open_current(&req.enclave, &req.resource).await?;
    // The key's creation is its oldest retained version's; the algorithm is the newest's.
    let oldest = &versions.versions()[0].stored;
    let newest = versions.newest();
    let retained: Vec<_> = versions
        .versions()
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.number,
                "created_at": super::sys::rfc3339(v.stored.created_at),
            })
        })
        .collect();
    let mut out = serde_json::json!({
        "name": req.resource,
        "algorithm": newest.stored.key.cipher().as_str(),
        "created_at": super::sys::rfc3339(oldest.created_at),
        "created_by": oldest.created_by,
        "version": newest.number,
        "versions": retained,
    });
    if entry.min_decrypt > 1 {
        out["min_decrypt_version"] = entry.min_decrypt.into();
    }
    if let Some(due) = entry.rotation_due() {
        let every = std::time::Duration::from_secs(entry.rotate_every);
        out["rotate_every"] = humantime::format_duration(every).to_string().into();
        out["next_rotation"] = super::sys::rfc3339_nanos(due).into();
    }
    Ok(json(&out))
}

/// `GET /v1/key/list/<prefix>`
pub(super) async fn list(node: Arc<Node>, req: Req) -> Answer {
    let a = list::args(&req)?;
    let page = node
        .state
        .list_keys(&req.enclave, &a.prefix, a.start.as_deref(), a.limit)?;
    Ok(list::render(&req, page, "names", "name", false))
}

/// `DELETE /v1/key/delete/<name>`
pub(super) async fn delete(node: Arc<Node>, req: Req) -> Answer {
    names::key_name(&req.resource)?;
    // Every node's apply evicts the key from its cache (`KeyCache::hold_for`).
    let name = req.resource.clone();
    commit(&node, &req, Op::DeleteKey { name }, empty()).await
}

/// Plaintexts and messages in base64: wiped when dropped, and no `Debug`.
#[derive(Deserialize, Default, Zeroize, ZeroizeOnDrop)]
pub(super) struct CryptoBody {
    #[serde(default, alias = "Plaintext")]
    pub(super) plaintext: Option<String>,
    #[serde(default, alias = "Ciphertext")]
    pub(super) ciphertext: Option<String>,
    #[serde(default, alias = "Context")]
    pub(super) context: Option<String>,
    #[serde(default, alias = "Message")]
    pub(super) message: Option<String>,
}

/// A base64 body field; absent or `null` is empty, as Go decodes `[]byte`.
pub(super) fn field(v: &Option<String>) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    match v {
        None => Ok(Zeroizing::default()),
        Some(s) => b64(s).ok_or_else(|| ApiError::bad_request(BAD_BODY)),
    }
}

pub(super) async fn load(node: &Node, req: &Req) -> Result<Arc<LoadedKey>, ApiError> {
    names::key_name(&req.resource)?;
    node.load_key(&req.enclave, &req.resource).await
}

/// `PUT /v1/key/encrypt/<name>`
pub(super) async fn encrypt(node: Arc<Node>, req: Req) -> Answer {
    let body: CryptoBody = req.json(BAD_BODY)?;
    let (plaintext, context) = (field(&body.plaintext)?, field(&body.context)?);
    let key = load(&node, &req).await?;
    let ciphertext = key.versions.encrypt(&plaintext, &context);
    Ok(json(&serde_json::json!({
        "ciphertext": *to_b64(&ciphertext),
        "version": key.versions.newest().number,
    })))
}

/// `PUT /v1/key/generate/<name>`: a fresh 32-byte data key and its ciphertext.
pub(super) async fn generate(node: Arc<Node>, req: Req) -> Answer {
    let body: CryptoBody = req.json_or_default(BAD_BODY)?;
    let context = field(&body.context)?;
    let key = load(&node, &req).await?;
    let dek = key.versions.generate_data_key(&context);
    let plaintext = to_b64(dek.plaintext.as_ref());
    let ciphertext = to_b64(&dek.ciphertext);
    Ok(secret_json(&DataKeyOut {
        plaintext: &plaintext,
        ciphertext: &ciphertext,
        version: key.versions.newest().number,
    }))
}

fn not_authentic(_: DecryptError) -> ApiError {
    ApiError::bad_request("decryption failed: ciphertext is not authentic")
}

/// Decrypts with whichever version of `key` made `ciphertext`, among those retained and not
/// below the key's minimum; a retired or refused version answers as a wrong key does.
pub(super) fn open_any_version(
    key: &LoadedKey,
    ciphertext: &[u8],
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    key.versions
        .decrypt(ciphertext, context, key.min_decrypt)
        .map(|(plaintext, _)| plaintext)
        .map_err(not_authentic)
}

/// `PUT /v1/key/decrypt/<name>`
pub(super) async fn decrypt(node: Arc<Node>, req: Req) -> Answer {
    let body: CryptoBody = req.json(BAD_BODY)?;
    let (ciphertext, context) = (field(&body.ciphertext)?, field(&body.context)?);
    let key = load(&node, &req).await?;
    let plaintext = open_any_version(&key, &ciphertext, &context)?;
    Ok(secret_json(&PlaintextOut {
        plaintext: &to_b64(&plaintext),
    }))
}

/// `PUT /v1/key/hmac/<name>`
pub(super) async fn hmac(node: Arc<Node>, req: Req) -> Answer {
    let body: CryptoBody = req.json(BAD_BODY)?;
    let message = field(&body.message)?;
    let key = load(&node, &req).await?;
    let mac = key
        .versions
        .hmac(&message)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(json(&serde_json::json!({ "hmac": *to_b64(&mac) })))
}

/// The most ciphertexts one bulk request may carry (KES v0.22).
const BULK_MAX: usize = 1000;

/// `POST /v1/key/bulk/decrypt/<name>`: a JSON array in, plaintexts out in the same order;
/// the first failure fails the whole call. The items are counted before any is decoded, so
/// a body of a million tiny items costs a scan, not a million decoded structs.
pub(super) async fn bulk_decrypt(node: Arc<Node>, req: Req) -> Answer {
    let items = bulk_items(&req)?;
    let key = load(&node, &req).await?;
    let mut plaintexts = Vec::with_capacity(items.len());
    for item in &items {
        let (ct, ctx) = (field(&item.ciphertext)?, field(&item.context)?);
        let pt = open_any_version(&key, &ct, &ctx)?;
        plaintexts.push(to_b64(&pt));
    }
    let out: Vec<_> = plaintexts
        .iter()
        .map(|p| PlaintextOut { plaintext: p })
        .collect();
    Ok(secret_json(&out))
}

#[derive(Serialize)]
struct PlaintextOut<'a> {
    plaintext: &'a str,
}

#[derive(Serialize)]
struct DataKeyOut<'a> {
    plaintext: &'a str,
    ciphertext: &'a str,
    /// The key version that made the ciphertext (KES clients ignore it).
    version: u32,
}

/// A JSON answer that carries plaintext: serialised into a buffer sized up front (so no
/// regrowth leaves a copy behind) that is wiped when the server has sent it.
pub(super) fn secret_json<T: Serialize>(value: &T) -> Response<Body> {
    // Sized by a first pass that writes nowhere; the second pass fills the real buffer.
    let mut counter = ByteCount(0);
    let _ = serde_json::to_writer(&mut counter, value);
    let mut body = Zeroizing::new(Vec::with_capacity(counter.0 + 1));
    if serde_json::to_writer(&mut *body, value).is_err() {
        return ApiError::internal("cannot encode the answer").into_response();
    }
    body.push(b'\n');
    let mut resp = Response::new(Body::from(bytes::Bytes::from_owner(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An `io::Write` that only counts.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The items of a bulk decrypt body, at most [`BULK_MAX`]. Pure (no node), so the fuzz
/// targets run exactly this.
pub(super) fn bulk_items(req: &Req) -> Result<Vec<CryptoBody>, ApiError> {
    if req.body_too_large {
        return Err(ApiError::bad_request(BAD_BODY));
    }
    // Counted before anything is decoded, so a body of a million tiny items costs a scan.
    match super::bulk_count::count_array(&req.body, BULK_MAX) {
        super::bulk_count::Count::Within(_) => {}
        super::bulk_count::Count::TooMany => {
            return Err(ApiError::bad_request("too many ciphertexts"));
        }
        super::bulk_count::Count::Invalid => return Err(ApiError::bad_request(BAD_BODY)),
    }
    req.json(BAD_BODY)
}

/// Creates a key on behalf of `identity` (the admin, for the `keys:` list of the config),
/// through the same path as `PUT /v1/key/create/<name>`.
pub async fn create_key_as(
    node: Arc<Node>,
    name: &str,
    identity: &str,
    rotate_every: u64,
) -> Result<(), ApiError> {
    let req = Req::system(
        identity,
        crate::state::DEFAULT_ENCLAVE,
        "/v1/key/create/",
        name,
    );
    names::key_name(&req.resource)?;
    let key = SecretKey::generate(default_cipher());
    store_new_key(&node, &req, key, rotate_every)
        .await
        .map(|_| ())
}
