//! `log:` — whether error and audit events are written to the console, and where else audit
//! events go: a file with size-based rotation, and what happens when they cannot be written.

use super::ConfigError;
use super::reader::{Field, opt};
use std::path::PathBuf;

/// `log.audit_file`: audit events appended to a file, rotated by size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFileConfig {
    /// `path`: the file; made (owner-only) if missing.
    pub path: PathBuf,
    /// `max_size`: bytes past which the file is rotated to `<path>.1`. Default 100 MiB.
    pub max_size: u64,
    /// `keep`: rotated files kept (`<path>.1` newest to `<path>.<keep>`). Default 5.
    pub keep: u32,
}

/// `log.audit_failure`: what a request gets when its audit event cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFailure {
    /// Served as usual; the failure is counted and raised as an error event. KES's behaviour,
    /// and the default.
    #[default]
    Open,
    /// Refused with 503, as Vault does when no audit device can record.
    Closed,
}

/// The `log:` section. The API streams (`/v1/log/error`, `/v1/log/audit`) work either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.error`: error events to stderr. Default on.
    pub error: bool,
    /// `log.audit`: one audit event per request to stdout. Default off, as the KES
    /// documentation says (KES's code defaults it on; the contract §10 picks the documented
    /// behaviour, since a flood of audit lines is a surprise nobody asked for).
    pub audit: bool,
    /// `log.audit_file`: also to this file.
    pub audit_file: Option<AuditFileConfig>,
    /// `log.audit_failure`: `open` (default) or `closed`.
    pub audit_failure: AuditFailure,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            error: true,
            audit: false,
            audit_file: None,
            audit_failure: AuditFailure::Open,
        }
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<LogConfig, ConfigError> {
    let mut sec = field.section()?;
    let error = sec.take("error");
    let audit = sec.take("audit");
    let audit_file = sec.take("audit_file");
    let audit_failure = sec.take("audit_failure");
    sec.finish()?;
    let default = LogConfig::default();
    let config = LogConfig {
        audit_file: audit_file.map(|f| audit_file_config(&f)).transpose()?,
        audit_failure: match opt(&audit_failure, |f| f.optional_string())? {
            None => AuditFailure::Open,
            Some(v) if v == "open" => AuditFailure::Open,
            Some(v) if v == "closed" => AuditFailure::Closed,
            Some(v) => {
                return Err(ConfigError::invalid(
                    "log.audit_failure",
                    format!("'{v}' is neither open nor closed"),
                ));
            }
        },
        error: match error {
            Some(f) => switch(&f)?.unwrap_or(default.error),
            None => default.error,
        },
        audit: match audit {
            Some(f) => switch(&f)?.unwrap_or(default.audit),
            None => default.audit,
        },
    };
    if config.audit_failure == AuditFailure::Closed && !config.audit && config.audit_file.is_none()
    {
        return Err(ConfigError::invalid(
            "log.audit_failure",
            "closed refuses requests when an audit sink fails, and none is set: turn on log.audit or set log.audit_file",
        ));
    }
    Ok(config)
}

fn audit_file_config(field: &Field<'_>) -> Result<AuditFileConfig, ConfigError> {
    let mut sec = field.section()?;
    let path = sec.take("path");
    let max_size = sec.take("max_size");
    let keep = sec.take("keep");
    sec.finish()?;
    let path = match path {
        Some(f) => f.required_string("the file to append audit events to")?,
        None => {
            return Err(ConfigError::invalid(
                field.path(),
                "needs `path`, the file to append audit events to",
            ));
        }
    };
    let max_size = match opt(&max_size, |f| f.u64())? {
        Some(n) if n < 4096 => {
            return Err(ConfigError::invalid(
                "log.audit_file.max_size",
                "must be at least 4096 bytes",
            ));
        }
        Some(n) => n,
        None => 100 << 20,
    };
    let keep = match opt(&keep, |f| f.u64())? {
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| ConfigError::invalid("log.audit_file.keep", "must be at most 1000"))?,
        None => 5,
    };
    Ok(AuditFileConfig {
        path: PathBuf::from(path),
        max_size,
        keep,
    })
}

/// `on`/`off`, or KES's level syntax (`DEBUG`, `INFO`, `WARN`, `ERROR`, each optionally `+N` or
/// `-N`, or a bare integer), where any level means on: this node has one console level per
/// stream, not slog's numeric scale. Empty means the default.
fn switch(field: &Field<'_>) -> Result<Option<bool>, ConfigError> {
    if let serde_yaml_ng::Value::Bool(b) = field.value() {
        return Ok(Some(*b));
    }
    let Some(text) = field.optional_string()? else {
        return Ok(None);
    };
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "on" => return Ok(Some(true)),
        "off" => return Ok(Some(false)),
        _ => {}
    }
    if is_level(&lower) {
        return Ok(Some(true));
    }
    Err(ConfigError::invalid(
        field.path(),
        format!("'{text}' is not a valid setting; write on or off (or a level such as INFO)"),
    ))
}

fn is_level(lower: &str) -> bool {
    let is_int = |s: &str| {
        let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if is_int(lower) {
        return true;
    }
    let name_end = lower.find(['+', '-']).unwrap_or(lower.len());
    let (name, offset) = lower.split_at(name_end);
    matches!(name, "debug" | "info" | "warn" | "error") && (offset.is_empty() || is_int(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_syntax() {
        for good in [
            "info", "debug", "warn", "error", "error+1", "info-4", "0", "-4", "8",
        ] {
            assert!(is_level(good), "{good}");
        }
        for bad in ["", "verbose", "info+", "info+x", "+", "error 1"] {
            assert!(!is_level(bad), "{bad}");
        }
    }
}
