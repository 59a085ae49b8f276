//! `api:` — per-route overrides of authentication and timeout, keyed by KES route key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::reader::{Field, opt};

/// One entry of `api:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiRouteConfig {
    /// `skip_auth`: serve the route without a client certificate or policy check. Only allowed
    /// for [`SKIP_AUTH_ROUTES`].
    pub skip_auth: bool,
    /// `timeout`: replaces the route's default timeout; `None` keeps the default.
    pub timeout: Option<Duration>,
}

/// The routes whose authentication may be skipped, as the KES configuration page lists them.
/// Anything else would hand key operations or policy data to anyone who can reach the port.
pub const SKIP_AUTH_ROUTES: [&str; 4] = ["/v1/ready", "/v1/status", "/v1/metrics", "/v1/api"];

/// The route keys `api:` accepts, spelt as KES spells them: a route that takes an argument ends
/// in `/` (`/v1/key/create/`), one that does not has no trailing slash (`/v1/status`). The older
/// API's routes are included because this node serves them too. Keys under `/v1/cluster/` are
/// accepted as well; those routes are ours and still growing.
pub const API_ROUTES: [&str; 35] = [
    "/version",
    "/v1/ready",
    "/v1/status",
    "/v1/metrics",
    "/v1/api",
    "/v1/key/create/",
    "/v1/key/import/",
    "/v1/key/describe/",
    "/v1/key/list/",
    "/v1/key/delete/",
    "/v1/key/encrypt/",
    "/v1/key/generate/",
    "/v1/key/decrypt/",
    "/v1/key/hmac/",
    "/v1/key/bulk/decrypt/",
    "/v1/policy/describe/",
    "/v1/policy/read/",
    "/v1/policy/list/",
    "/v1/policy/write/",
    "/v1/policy/assign/",
    "/v1/policy/delete/",
    "/v1/identity/describe/",
    "/v1/identity/list/",
    "/v1/identity/self/describe",
    "/v1/identity/assign/",
    "/v1/identity/delete/",
    "/v1/identity/forget/",
    "/v1/enclave/create/",
    "/v1/enclave/describe/",
    "/v1/enclave/list/",
    "/v1/enclave/delete/",
    "/v1/log/error",
    "/v1/log/audit",
    "/v1/log/error/trace",
    "/v1/log/audit/trace",
];

const CLUSTER_ROUTE_PREFIX: &str = "/v1/cluster/";

pub(crate) fn parse(field: &Field<'_>) -> Result<BTreeMap<String, ApiRouteConfig>, ConfigError> {
    let mut sec = field.section()?;
    let mut routes = BTreeMap::new();
    for (route, entry) in sec.take_all() {
        check_route_key(&route, &entry)?;
        let mut e = entry.section()?;
        let skip_auth = e.take("skip_auth");
        let timeout = e.take("timeout");
        e.finish()?;
        let skip_auth = opt(&skip_auth, Field::bool)?;
        let timeout = opt(&timeout, Field::duration)?;
        if skip_auth == Some(true) && !SKIP_AUTH_ROUTES.contains(&route.as_str()) {
            return Err(ConfigError::SkipAuthNotAllowed { route });
        }
        if timeout == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                format!("{}.timeout", entry.path()),
                "a timeout must be greater than zero; remove it to keep the route's default",
            ));
        }
        routes.insert(
            route,
            ApiRouteConfig {
                skip_auth: skip_auth.unwrap_or(false),
                timeout,
            },
        );
    }
    Ok(routes)
}

fn check_route_key(route: &str, entry: &Field<'_>) -> Result<(), ConfigError> {
    if API_ROUTES.contains(&route)
        || (route.starts_with(CLUSTER_ROUTE_PREFIX) && route.len() > CLUSTER_ROUTE_PREFIX.len())
    {
        return Ok(());
    }
    // The usual slip is the slash: `/v1/key/create` for `/v1/key/create/` or the reverse.
    let other = match route.strip_suffix('/') {
        Some(bare) => bare.to_owned(),
        None => format!("{route}/"),
    };
    let reason = if API_ROUTES.contains(&other.as_str()) {
        format!("no KES route is called '{route}'; write `{other}:` instead")
    } else {
        format!(
            "no KES route is called '{route}'; use one of the route keys: {}",
            API_ROUTES.join(", ")
        )
    };
    Err(ConfigError::invalid(entry.path(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::parse_section;

    fn api(yaml: &str) -> Result<BTreeMap<String, ApiRouteConfig>, ConfigError> {
        parse_section(yaml, "api", parse)
    }

    #[test]
    fn the_documented_probe_setup_loads() {
        let routes = api(
            "api:\n  /v1/ready:\n    skip_auth: true\n    timeout: 15s\n  /v1/status:\n    skip_auth: false\n    timeout: 15s\n",
        )
        .expect("valid");
        assert_eq!(
            routes["/v1/ready"],
            ApiRouteConfig {
                skip_auth: true,
                timeout: Some(Duration::from_secs(15))
            }
        );
        assert!(!routes["/v1/status"].skip_auth);
    }

    #[test]
    fn skip_auth_only_on_the_four_routes() {
        for route in SKIP_AUTH_ROUTES {
            assert!(api(&format!("api: {{{route}: {{skip_auth: true}}}}")).is_ok());
        }
        let err = api("api: {/v1/key/create/: {skip_auth: true}}").expect_err("refused");
        assert!(
            matches!(err, ConfigError::SkipAuthNotAllowed { ref route } if route == "/v1/key/create/")
        );
        assert!(api("api: {/v1/key/create/: {skip_auth: false, timeout: 5s}}").is_ok());
    }

    #[test]
    fn route_keys_are_checked() {
        let err = api("api: {/v1/key/create: {timeout: 5s}}").expect_err("refused");
        assert!(
            err.to_string().contains("write `/v1/key/create/:`"),
            "{err}"
        );
        assert!(api("api: {/v1/redy: {timeout: 5s}}").is_err());
        assert!(api("api: {/v1/cluster/status: {timeout: 5s}}").is_ok());
        let err = api("api: {/v1/ready: {skipauth: true}}").expect_err("refused");
        assert!(
            matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "api./v1/ready.skipauth")
        );
        assert!(api("api: {/v1/ready: {timeout: 0s}}").is_err());
    }
}
