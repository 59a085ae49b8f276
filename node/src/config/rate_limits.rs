//! `rate_limits:` — how many requests per second one identity may make of a node.
//!
//! ```yaml
//! rate_limits:
//!   default: {rate: 1000, burst: 2000}   # every identity without a limit of its own
//!   policies:
//!     minio: {rate: 20000}               # identities assigned to policy `minio`
//!   admin: {rate: 50}                    # the admin is exempt unless this is set
//! ```
//!
//! Without the section nothing is limited: the KES SDK does not retry a 4xx, so a limit that
//! nobody chose would fail MinIO's requests. Each node counts on its own (README, "Rate
//! limits").

use std::collections::BTreeMap;

use super::ConfigError;
use super::names::is_valid_name;
use super::reader::Field;

/// One limit: a token bucket that refills at `rate` requests per second and holds `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// `rate`: requests per second, sustained.
    pub rate: u32,
    /// `burst`: requests that may come at once after a quiet spell. Default: `rate`.
    pub burst: u32,
}

/// The `rate_limits:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitsConfig {
    /// `default`: the limit of an identity that no other entry names; `None`: unlimited.
    pub default: Option<RateLimit>,
    /// `policies.<name>`: the limit of the identities assigned to policy `<name>` in the
    /// enclave of the request.
    pub policies: BTreeMap<String, RateLimit>,
    /// `admin`: the system admin's limit; `None`: the admin is never limited.
    pub admin: Option<RateLimit>,
}

impl RateLimitsConfig {
    /// Whether anything is limited at all; if not, requests skip the limiter.
    pub fn limits_anything(&self) -> bool {
        self.default.is_some() || self.admin.is_some() || !self.policies.is_empty()
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<RateLimitsConfig, ConfigError> {
    let mut sec = field.section()?;
    let default = sec.take("default");
    let policies = sec.take("policies");
    let admin = sec.take("admin");
    sec.finish()?;
    let mut config = RateLimitsConfig {
        default: default.map(|f| limit(&f)).transpose()?,
        admin: admin.map(|f| limit(&f)).transpose()?,
        policies: BTreeMap::new(),
    };
    if let Some(policies) = policies {
        for (name, entry) in policies.section()?.take_all() {
            if !is_valid_name(&name) {
                return Err(ConfigError::invalid(
                    entry.path(),
                    "is not a valid policy name",
                ));
            }
            config.policies.insert(name, limit(&entry)?);
        }
    }
    Ok(config)
}

fn limit(field: &Field<'_>) -> Result<RateLimit, ConfigError> {
    let mut sec = field.section()?;
    let rate = sec.take("rate");
    let burst = sec.take("burst");
    sec.finish()?;
    let Some(rate_field) = rate else {
        return Err(ConfigError::invalid(
            field.path(),
            "needs `rate`, in requests per second",
        ));
    };
    let rate = per_second(&rate_field)?;
    let burst = match burst {
        Some(f) => per_second(&f)?,
        None => rate,
    };
    Ok(RateLimit { rate, burst })
}

/// A count from 1 up: a rate of 0 would refuse the identity everything, which a policy that
/// denies does more plainly.
fn per_second(field: &Field<'_>) -> Result<u32, ConfigError> {
    match field.u64()? {
        Some(n @ 1..=1_000_000_000) => Ok(n as u32),
        Some(0) => Err(ConfigError::invalid(
            field.path(),
            "must be at least 1; to refuse an identity everything, deny it in its policy",
        )),
        Some(_) => Err(ConfigError::invalid(
            field.path(),
            "must be at most 1000000000",
        )),
        None => Err(ConfigError::invalid(field.path(), "needs a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::parse_section;

    fn rate_limits(yaml: &str) -> Result<RateLimitsConfig, ConfigError> {
        parse_section(yaml, "rate_limits", parse)
    }

    #[test]
    fn limits_read_with_burst_defaulting_to_rate() {
        let c = rate_limits(
            "rate_limits:\n  default: {rate: 1000, burst: 2000}\n  policies:\n    minio: {rate: 20000}\n  admin: {rate: 5}\n",
        )
        .unwrap();
        assert_eq!(
            c.default,
            Some(RateLimit {
                rate: 1000,
                burst: 2000
            })
        );
        assert_eq!(
            c.policies["minio"],
            RateLimit {
                rate: 20000,
                burst: 20000
            }
        );
        assert_eq!(c.admin, Some(RateLimit { rate: 5, burst: 5 }));
        assert!(c.limits_anything());
        assert!(!rate_limits("rate_limits: {}").unwrap().limits_anything());
    }

    #[test]
    fn bad_limits_name_their_key() {
        for (yaml, key) in [
            (
                "rate_limits: {default: {rate: 0}}",
                "rate_limits.default.rate",
            ),
            ("rate_limits: {default: {burst: 5}}", "rate_limits.default"),
            (
                "rate_limits: {default: {rate: -1}}",
                "rate_limits.default.rate",
            ),
            (
                "rate_limits: {default: {rate: 5, burst: 0}}",
                "rate_limits.default.burst",
            ),
            (
                "rate_limits: {policies: {minio: {rate: 5, brust: 9}}}",
                "rate_limits.policies.minio.brust",
            ),
            (
                "rate_limits: {policies: {'a b': {rate: 5}}}",
                "rate_limits.policies.a b",
            ),
            ("rate_limits: {defualt: {rate: 5}}", "rate_limits.defualt"),
        ] {
            let err = rate_limits(yaml).expect_err(yaml).to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }
}
