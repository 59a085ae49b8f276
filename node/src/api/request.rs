//! What a handler gets: the caller, the selected enclave, the resource and the body.

use super::ApiError;
use crate::tls::Identity;
use axum::http::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

/// A request after routing, authentication and body reading.
///
/// The body may carry key material or plaintext (imports, encrypt), so `Debug` shows only its
/// length and the header names, and the body is wiped when the request is dropped.
pub struct Req {
    /// The caller, when a certificate was presented.
    pub identity: Option<Identity>,
    /// The enclave the request selects.
    pub enclave: String,
    /// Everything after the route prefix.
    pub resource: String,
    /// The request path.
    pub path: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body, at most the route's limit.
    pub body: Bytes,
    /// The body was longer than the route's limit.
    pub body_too_large: bool,
    /// The client's certificate chain (the join route checks it against the node CA).
    pub chain: std::sync::Arc<[rustls_pki_types::CertificateDer<'static>]>,
}

impl Req {
    /// A request the node makes itself, as `identity` (the admin), on `route` + `resource`
    /// in `enclave`, with no body: it is authorised and committed like a client's.
    pub fn system(identity: &str, enclave: &str, route: &str, resource: &str) -> Req {
        Req {
            identity: Some(Identity::new(identity)),
            enclave: enclave.to_owned(),
            resource: resource.to_owned(),
            path: format!("{route}{resource}"),
            query: Vec::new(),
            headers: Default::default(),
            body: Default::default(),
            body_too_large: false,
            chain: Default::default(),
        }
    }
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req")
            .field("identity", &self.identity)
            .field("enclave", &self.enclave)
            .field("resource", &self.resource)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("body_too_large", &self.body_too_large)
            .field(
                "chain",
                &format_args!("<{} certificates>", self.chain.len()),
            )
            .finish()
    }
}

impl Drop for Req {
    fn drop(&mut self) {
        // Only a buffer nobody else shares can be wiped; a body that is still a view into the
        // connection's read buffer is overwritten there by the next read.
        if let Ok(mut body) = std::mem::take(&mut self.body).try_into_mut() {
            body.as_mut().zeroize();
        }
    }
}

impl Req {
    /// A query parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked for newline-delimited JSON lists.
    pub fn wants_ndjson(&self) -> bool {
        self.headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/x-ndjson"))
    }

    /// The caller's identity; routes that reach a handler without one answer 400.
    pub fn caller(&self) -> Result<&Identity, ApiError> {
        self.identity
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("tls: client certificate is required"))
    }

    /// Decodes the body as Go's `encoding/json` would: the first JSON value only, unknown
    /// fields ignored. Any failure, or a body over the limit, is `bad` (a 400).
    pub fn json<T: DeserializeOwned>(&self, bad: &str) -> Result<T, ApiError> {
        if self.body_too_large {
            return Err(ApiError::bad_request(bad));
        }
        let mut it = serde_json::Deserializer::from_slice(&self.body).into_iter::<T>();
        match it.next() {
            Some(Ok(v)) => Ok(v),
            _ => Err(ApiError::bad_request(bad)),
        }
    }

    /// Like [`Req::json`], but an empty body is the default value.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self, bad: &str) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) && !self.body_too_large {
            return Ok(T::default());
        }
        self.json(bad)
    }
}

/// Decodes standard padded base64 as Go does for `[]byte` fields, tolerating line breaks.
/// The fields carry plaintexts and key material, so every buffer is wiped when dropped.
pub(super) fn b64(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let line_break = |b: &u8| *b == b'\r' || *b == b'\n';
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 4 * 3 + 3));
    let engine = base64::engine::general_purpose::STANDARD;
    if s.as_bytes().iter().any(line_break) {
        // Both are ASCII, so dropping their bytes keeps the rest intact.
        let cleaned: Zeroizing<Vec<u8>> =
            Zeroizing::new(s.bytes().filter(|b| !line_break(b)).collect());
        engine.decode_vec(cleaned.as_slice(), &mut out).ok()?;
    } else {
        engine.decode_vec(s.as_bytes(), &mut out).ok()?;
    }
    Some(out)
}

/// Encodes bytes as standard padded base64, wiped when dropped (it may be a plaintext).
pub(super) fn to_b64(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Decodes `%XX` escapes of a URL path or query part; invalid escapes stay as they are.
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits and decodes a query string.
pub(super) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-secret-header", "header-value".parse().unwrap());
        let req = Req {
            identity: None,
            enclave: "default".into(),
            resource: "k".into(),
            path: "/v1/key/import/k".into(),
            query: Vec::new(),
            headers,
            body: Bytes::from_static(br#"{"key":"c2VjcmV0LWtleS1tYXRlcmlhbA=="}"#),
            body_too_large: false,
            chain: Default::default(),
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("header-value"), "{shown}");
        assert!(
            shown.contains("/v1/key/import/k") && shown.contains("<38 bytes>"),
            "{shown}"
        );
    }

    #[test]
    fn decoding_helpers() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(
            b64("QUJD\r\nREVG").as_deref().map(|v| &v[..]),
            Some(&b"ABCDEF"[..])
        );
        assert!(b64("QUJ").is_none());
        let q = parse_query(Some("limit=5&continue_at=a%2Db&force"));
        assert_eq!(q[0], ("limit".into(), "5".into()));
        assert_eq!(q[1], ("continue_at".into(), "a-b".into()));
        assert_eq!(q[2], ("force".into(), "".into()));
    }
}
