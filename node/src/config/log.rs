//! `log:` — whether error and audit events are written to the console.

use super::ConfigError;
use super::reader::Field;

/// The `log:` section. The API streams (`/v1/log/error`, `/v1/log/audit`) work either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.error`: error events to stderr. Default on.
    pub error: bool,
    /// `log.audit`: one audit event per request to stdout. Default off, as the KES
    /// documentation says (KES's code defaults it on; the contract §10 picks the documented
    /// behaviour, since a flood of audit lines is a surprise nobody asked for).
    pub audit: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            error: true,
            audit: false,
        }
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<LogConfig, ConfigError> {
    let mut sec = field.section()?;
    let error = sec.take("error");
    let audit = sec.take("audit");
    sec.finish()?;
    let default = LogConfig::default();
    Ok(LogConfig {
        error: match error {
            Some(f) => switch(&f)?.unwrap_or(default.error),
            None => default.error,
        },
        audit: match audit {
            Some(f) => switch(&f)?.unwrap_or(default.audit),
            None => default.audit,
        },
    })
}

/// `on`/`off`, or KES's level syntax (`DEBUG`, `INFO`, `WARN`, `ERROR`, each optionally `+N` or
/// `-N`, or a bare integer), where any level means on: this node has one console level per
/// stream, not slog's numeric scale. Empty means the default.
fn switch(field: &Field<'_>) -> Result<Option<bool>, ConfigError> {
    if let serde_yaml::Value::Bool(b) = field.value() {
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
