//! `limits:` — how much one client, or many, may take from a node before it says no.
//!
//! KES's config has no such section; these are the bounds a node needs so that idle sockets,
//! slow senders and stream subscribers cannot exhaust its memory or file descriptors. Every
//! setting has a default that is safe for a production node, so the section is optional.

use std::time::Duration;

use super::ConfigError;
use super::reader::{Field, opt};

/// The `limits:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `max_connections`: open connections on the KES port, from everyone. At the cap the
    /// oldest connection with no request in flight makes room; when all are busy, the new one
    /// is closed at once. Default 4096 (keep it below the process's open-file limit).
    pub max_connections: usize,
    /// `max_connections_per_ip`: open connections on the KES port from one client address, so
    /// one host cannot take every slot (at the cap, likewise). Default 1024.
    pub max_connections_per_ip: usize,
    /// `handshake_timeout`: a TLS handshake not finished by then is dropped. Default 10s.
    pub handshake_timeout: Duration,
    /// `header_timeout`: HTTP/1 request heads must arrive within this (KES's
    /// `ReadHeaderTimeout`). Default 5s.
    pub header_timeout: Duration,
    /// `body_timeout`: the whole request body must arrive within this, counted from the
    /// request head; separate from the route's handler timeout. Default 30s.
    pub body_timeout: Duration,
    /// `send_timeout`: an answer of known size the client has not taken within this (an h2
    /// client that grants no window, a client that stops reading) no longer keeps its
    /// connection busy, so the connection is closed as idle. Log streams are exempt; their
    /// number is capped instead. Default 60s.
    pub send_timeout: Duration,
    /// `idle_timeout`: a connection (HTTP/1 keep-alive or h2) with no request in flight for
    /// this long is closed. Default 120s: longer than the 90 s idle timeout of Go's default
    /// HTTP transport, so such a client closes first and does not send a request into a
    /// connection the node is just closing.
    pub idle_timeout: Duration,
    /// `http2_keep_alive_interval`: an h2 connection is pinged this often. Default 30s.
    pub http2_keep_alive_interval: Duration,
    /// `http2_keep_alive_timeout`: an h2 ping not answered within this closes the
    /// connection. Default 20s.
    pub http2_keep_alive_timeout: Duration,
    /// `max_log_streams`: `/v1/log/audit` and `/v1/log/error` subscribers at once, together.
    /// Default 32.
    pub max_log_streams: usize,
    /// `max_versions`: the most versions a key retains; a rotation beyond it is refused
    /// (retire old versions first). Decrypting an old ciphertext may try every retained
    /// version, so this bounds its cost. Default 32.
    pub max_versions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 4096,
            max_connections_per_ip: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            max_log_streams: 32,
            max_versions: crate::api::DEFAULT_MAX_VERSIONS,
        }
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<LimitsConfig, ConfigError> {
    let mut sec = field.section()?;
    let counts = [
        "max_connections",
        "max_connections_per_ip",
        "max_log_streams",
        "max_versions",
    ]
    .map(|k| sec.take(k));
    let durations = [
        "handshake_timeout",
        "header_timeout",
        "body_timeout",
        "send_timeout",
        "idle_timeout",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
    ]
    .map(|k| sec.take(k));
    sec.finish()?;

    let mut l = LimitsConfig::default();
    let [max_connections, per_ip, log_streams, max_versions] = counts;
    for (slot, field) in [
        (&mut l.max_connections, max_connections),
        (&mut l.max_connections_per_ip, per_ip),
        (&mut l.max_log_streams, log_streams),
        (&mut l.max_versions, max_versions),
    ] {
        if let Some(n) = opt(&field, positive_count)? {
            *slot = n;
        }
    }
    if l.max_versions < 2 {
        return Err(ConfigError::invalid(
            "limits.max_versions".to_owned(),
            "a key must be able to hold 2 versions, or it could never be rotated",
        ));
    }
    let [handshake, header, body, send, idle, ka_interval, ka_timeout] = durations;
    for (slot, field) in [
        (&mut l.handshake_timeout, handshake),
        (&mut l.header_timeout, header),
        (&mut l.body_timeout, body),
        (&mut l.send_timeout, send),
        (&mut l.idle_timeout, idle),
        (&mut l.http2_keep_alive_interval, ka_interval),
        (&mut l.http2_keep_alive_timeout, ka_timeout),
    ] {
        if let Some(d) = opt(&field, positive_duration)? {
            *slot = d;
        }
    }
    Ok(l)
}

/// A count of at least 1: zero would close the port or the streams to everyone, which is
/// never what an operator means; removing the key keeps the default.
fn positive_count(field: &Field<'_>) -> Result<Option<usize>, ConfigError> {
    match field.u64()? {
        Some(0) => Err(ConfigError::invalid(
            field.path(),
            "must be at least 1; remove it to keep the default",
        )),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        None => Ok(None),
    }
}

/// A duration above zero: a zero timeout would drop every connection at once.
fn positive_duration(field: &Field<'_>) -> Result<Option<Duration>, ConfigError> {
    match field.duration()? {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(
            field.path(),
            "must be greater than zero; remove it to keep the default",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::parse_section;

    fn limits(yaml: &str) -> Result<LimitsConfig, ConfigError> {
        parse_section(yaml, "limits", parse)
    }

    #[test]
    fn an_empty_section_keeps_every_default() {
        assert_eq!(limits("limits:").unwrap(), LimitsConfig::default());
    }

    #[test]
    fn each_setting_is_read() {
        let l = limits(
            "limits:\n  max_connections: 10\n  max_connections_per_ip: 3\n  max_log_streams: 2\n  max_versions: 5\n  handshake_timeout: 1s\n  header_timeout: 2s\n  body_timeout: 3s\n  send_timeout: 7s\n  idle_timeout: 4s\n  http2_keep_alive_interval: 5s\n  http2_keep_alive_timeout: 6s\n",
        )
        .unwrap();
        let s = Duration::from_secs;
        assert_eq!(
            l,
            LimitsConfig {
                max_connections: 10,
                max_connections_per_ip: 3,
                handshake_timeout: s(1),
                header_timeout: s(2),
                body_timeout: s(3),
                send_timeout: s(7),
                idle_timeout: s(4),
                http2_keep_alive_interval: s(5),
                http2_keep_alive_timeout: s(6),
                max_log_streams: 2,
                max_versions: 5,
            }
        );
    }

    #[test]
    fn zero_and_typos_are_refused_with_the_key() {
        let err = limits("limits: {max_connections: 0}").unwrap_err();
        assert!(err.to_string().contains("limits.max_connections"), "{err}");
        let err = limits("limits: {body_timeout: 0s}").unwrap_err();
        assert!(err.to_string().contains("limits.body_timeout"), "{err}");
        let err = limits("limits: {max_conections: 5}").unwrap_err();
        assert!(
            matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "limits.max_conections"),
            "{err}"
        );
        assert!(limits("limits: {idle_timeout: 5}").is_err());
    }
}
