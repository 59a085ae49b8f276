//! The one error type of this crate.
//!
//! Every variant renders as a sentence a user can act on: an API error is the
//! server's own message (so `key already exists` reaches the terminal as KES
//! wrote it), and local failures name the file, server or setting involved.

use std::time::Duration;

/// Everything that can go wrong talking to a KES server or handling identities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success status.
    ///
    /// `message` is taken from the JSON body (`{"message":…}` or
    /// `{"error":…}`), or is the raw body text when the server did not answer
    /// JSON (e.g. `404 page not found`).
    #[error("{message}")]
    Api {
        /// HTTP status code, e.g. 400.
        status: u16,
        /// The server's message, e.g. `key already exists`.
        message: String,
    },

    /// A setting is unusable: a malformed server address, a certificate
    /// without a key, a PEM file without certificates, and the like.
    #[error("{0}")]
    Config(String),

    /// No TCP connection could be made to the server.
    #[error("cannot reach KES server {server}: {reason}")]
    Connect {
        /// The server as configured, e.g. `https://127.0.0.1:7373`.
        server: String,
        /// Why, e.g. `connection refused`.
        reason: String,
    },

    /// The TLS handshake or session failed (untrusted server certificate,
    /// client certificate refused, ...).
    #[error("TLS with KES server {server} failed: {reason}")]
    Tls {
        /// The server as configured.
        server: String,
        /// What went wrong and what to do about it.
        reason: String,
    },

    /// Reading or writing failed: a local file, or an established
    /// connection that broke mid-request.
    #[error("{context}: {reason}")]
    Io {
        /// What was being done, e.g. `cannot read /etc/kes/admin.crt`.
        context: String,
        /// The underlying error.
        reason: String,
    },

    /// The server did not answer within the client's time limit.
    #[error("KES server {server} did not answer within {}s", after.as_secs_f64())]
    Timeout {
        /// The server as configured.
        server: String,
        /// The limit that ran out.
        after: Duration,
    },

    /// The server answered 2xx, but the body is not what the KES API promises.
    #[error("unexpected answer from KES server: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether a write that failed with this may have been applied all the same: the server
    /// answered 504 (its write did not commit in time, and may yet), its route's time limit
    /// ran out (503 `request timeout exceeded`, as KES answers it: the write may have been in
    /// flight), or it did not answer in time.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Api { status: 504, .. } => true,
            Error::Api {
                status: 503,
                message,
            } => message == "request timeout exceeded",
            _ => false,
        }
    }

    /// The HTTP status when this is an API error, else `None`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// An [`Error::Io`] for a local file operation: `cannot <action> <path>: <err>`.
    pub fn file(action: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        Error::Io {
            context: format!("cannot {action} {}", path.display()),
            reason: err.to_string(),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_504_or_no_answer_leaves_a_write_maybe_applied() {
        let api = |status| Error::Api {
            status,
            message: String::new(),
        };
        assert!(api(504).outcome_unknown());
        let timeout = Error::Timeout {
            server: "https://n1:7373".into(),
            after: Duration::from_secs(15),
        };
        assert!(timeout.outcome_unknown());
        let route_limit = Error::Api {
            status: 503,
            message: "request timeout exceeded".into(),
        };
        assert!(route_limit.outcome_unknown());
        // Any other 503 answers "nothing was written"; a 4xx refused the write.
        for refused in [503, 409, 400, 403] {
            assert!(!api(refused).outcome_unknown(), "{refused}");
        }
    }
}
