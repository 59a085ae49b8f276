//! A complete HTTP response, and how KES error bodies become [`Error::Api`].

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A server response with its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value, when present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let mut shown = self.text();
            shown.truncate(200);
            Error::Protocol(format!("invalid JSON ({e}): {shown:?}"))
        })
    }

    /// This response unchanged when it is 2xx, else its [`Error::Api`].
    pub fn error_for_status(self) -> Result<Response> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.api_error())
        }
    }

    /// The API error this response stands for, read the way the KES SDK reads
    /// it: `{"message":…}` or `{"error":…}` when the content type is JSON,
    /// otherwise the body text; an empty body gives the status' reason.
    pub fn api_error(&self) -> Error {
        let is_json = self.content_type().is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
        let from_json = is_json
            .then(|| serde_json::from_slice::<serde_json::Value>(&self.body).ok())
            .flatten()
            .and_then(|v| {
                ["message", "error"]
                    .iter()
                    .find_map(|field| v.get(field).and_then(|m| m.as_str()).map(str::to_owned))
            });
        let message = match from_json {
            Some(message) => message,
            None => {
                let text = self.text().trim().to_string();
                if text.is_empty() {
                    let reason = hyper::StatusCode::from_u16(self.status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("no reason given");
                    format!("{} {reason}", self.status)
                } else {
                    text
                }
            }
        };
        Error::Api {
            status: self.status,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: Option<&str>, body: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, ct.parse().unwrap());
        }
        Response {
            status,
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn message(r: Response) -> (u16, String) {
        match r.api_error() {
            Error::Api { status, message } => (status, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kes_error_shapes() {
        let r = response(
            400,
            Some("application/json"),
            "{\"message\":\"key already exists\"\n}",
        );
        assert_eq!(message(r), (400, "key already exists".into()));
        let r = response(
            403,
            Some("application/json; charset=utf-8"),
            r#"{"error":"prohibited by policy"}"#,
        );
        assert_eq!(message(r), (403, "prohibited by policy".into()));
        let r = response(
            404,
            Some("text/plain; charset=utf-8"),
            "404 page not found\n",
        );
        assert_eq!(message(r), (404, "404 page not found".into()));
        let r = response(503, None, "");
        assert_eq!(message(r), (503, "503 Service Unavailable".into()));
        // JSON content type but not JSON: the text is the message.
        let r = response(502, Some("application/json"), "bad gateway");
        assert_eq!(message(r), (502, "bad gateway".into()));
    }

    #[test]
    fn success_passes_through() {
        assert!(response(200, None, "").error_for_status().is_ok());
        assert!(response(301, None, "").error_for_status().is_err());
    }
}
