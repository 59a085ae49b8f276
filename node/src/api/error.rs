//! API errors and the response shapes KES clients expect.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// An error answer: a status and KES's exact message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message, byte for byte what KES sends (MinIO matches on it).
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 403 `not authorized: insufficient permissions`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "not authorized: insufficient permissions",
        )
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 503 while the node is sealed: clients retry and fail over on 503.
    pub fn sealed() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "node is sealed")
    }
    /// 500 for a storage failure; the details go to the error log, not to the client.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The response: `{"message":<json string>\n}` with an explicit length, as KES writes it.
    pub fn into_response(self) -> Response<Body> {
        let msg = serde_json::to_string(&self.message).unwrap_or_else(|_| "\"\"".into());
        let body = format!("{{\"message\":{msg}\n}}");
        let mut resp = Response::new(Body::from(body.clone()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        resp
    }
}

impl From<crate::state::StateError> for ApiError {
    fn from(e: crate::state::StateError) -> Self {
        tracing::error!("state store: {e}");
        ApiError::internal("failed to access the key store")
    }
}

/// A JSON success answer: compact JSON and a trailing newline, like Go's `json.Encoder`.
pub(super) fn json<T: Serialize>(value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A success answer without a body.
pub(super) fn empty() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// The answer to an unknown path: Go's ServeMux text, not the JSON error shape.
pub(super) fn page_not_found() -> Response<Body> {
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
