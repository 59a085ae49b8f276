//! The route table: every path the node serves, with its method, body limit, timeout and
//! authentication rule.
//!
//! Like Go's ServeMux in KES, a parameterised route is a prefix ending in `/` and its resource
//! is everything after it. The table is data, so `/v1/api` can describe it and `api:` in the
//! config can change timeouts and `skip_auth`.

use super::handlers::{self, Handler};
use axum::http::Method;
use std::time::Duration;

/// 1 MB, as KES counts it (10^6 bytes).
pub(super) const MB: usize = 1_000_000;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No check at all (`/version`).
    None,
    /// The caller must present a certificate, but no policy is checked
    /// (`self/describe`, and routes with `skip_auth`, where even the certificate is optional).
    Identity,
    /// Admin, or allowed by the caller's policy in the selected enclave.
    Verify,
    /// The system admin only, whatever the policies say: membership changes, snapshots,
    /// restores, seal changes, join admission and enclave creation and deletion.
    Admin,
}

/// Where a route is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the enclave the request selects (`Kes-Enclave` or `?enclave=`).
    Enclave,
    /// In the default enclave, whatever enclave the request names: the route acts on the
    /// whole cluster, so a tenant's policy in its own enclave must never reach it.
    Cluster,
}

/// Route prefixes that act on the whole cluster.
const CLUSTER_WIDE: [&str; 5] = [
    "/v1/cluster/",
    "/v1/log/",
    "/v1/enclave/",
    "/v1/metrics",
    "/v1/status",
];

/// Routes that are another spelling of a canonical route: (alias prefix, canonical prefix).
/// A policy is matched against every spelling, so a deny that names the canonical path also
/// refuses the alias.
const ALIASES: [(&str, &str); 4] = [
    ("/v1/identity/forget/", "/v1/identity/delete/"),
    ("/v1/key/bulk/decrypt/", "/v1/key/decrypt/"),
    ("/v1/log/error/trace", "/v1/log/error"),
    ("/v1/log/audit/trace", "/v1/log/audit"),
];

/// One route.
#[derive(Clone)]
pub struct Route {
    /// The method KES declares; PUT routes also accept POST.
    pub method: Method,
    /// Other methods accepted for older clients.
    pub aliases: &'static [Method],
    /// Exact path, or prefix when `prefix` is set.
    pub path: &'static str,
    /// Whether the path is a prefix with a resource after it.
    pub prefix: bool,
    /// Largest accepted body; 0 means the body is never read.
    pub max_body: usize,
    /// Time limit for the whole answer; `None` for streams.
    pub timeout: Option<Duration>,
    /// Authentication rule.
    pub auth: Auth,
    /// Whether `skip_auth` made the certificate optional.
    pub skip_auth: bool,
    /// Where the route is authorised.
    pub scope: Scope,
    /// Counted in the `kes_http_request_*` metrics.
    pub counted: bool,
    /// Needs the unsealed keys.
    pub needs_keys: bool,
    /// The handler.
    pub handler: Handler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Route {
    /// The key `api:` uses in the config: the path itself (prefix routes keep their slash).
    pub fn config_key(&self) -> &'static str {
        self.path
    }

    /// Whether `method` is accepted.
    pub fn accepts(&self, method: &Method) -> bool {
        *method == self.method
            || (self.method == Method::PUT && *method == Method::POST)
            || self.aliases.contains(method)
    }

    /// The paths a policy is matched against for `resource` on this route, canonical first:
    /// the route's own path, and the canonical spelling when the route is an alias of another.
    /// Built from the route and the resource, never from the raw request path, so what is
    /// authorised is exactly what the handler acts on.
    pub fn policy_paths(&self, resource: &str) -> Vec<String> {
        let own = format!("{}{resource}", self.path);
        if self.path == "/v1/identity/assign/" {
            // The older `assign/<policy>/<identity>` hands out `<policy>`, like policy assign.
            let policy = resource.split('/').next().unwrap_or_default();
            return vec![format!("/v1/policy/assign/{policy}"), own];
        }
        match ALIASES.iter().find(|(alias, _)| *alias == self.path) {
            Some((_, canonical)) => vec![format!("{canonical}{resource}"), own],
            None => vec![own],
        }
    }
}

const S10: Option<Duration> = Some(Duration::from_secs(10));
const S15: Option<Duration> = Some(Duration::from_secs(15));
/// Streams last until the client leaves.
const STREAM: Option<Duration> = None;

#[allow(clippy::too_many_arguments)] // a table row reads best as one call
const fn route(
    method: Method,
    path: &'static str,
    prefix: bool,
    max_body: usize,
    timeout: Option<Duration>,
    auth: Auth,
    counted: bool,
    handler: Handler,
) -> Route {
    Route {
        method,
        aliases: &[],
        path,
        prefix,
        max_body,
        timeout,
        auth,
        skip_auth: false,
        scope: Scope::Enclave,
        counted,
        needs_keys: false,
        handler,
    }
}

/// The default table, before `api:` customisation.
#[rustfmt::skip] // one route per line reads as the table it is
pub fn default_routes() -> Vec<Route> {
    use Auth::*;
    use Method as M;
    let p = true;
    let x = false;
    let long = Some(Duration::from_secs(180));
    let mut routes = vec![
        route(M::GET, "/version", x, 0, S10, None, false, handlers::version),
        route(M::GET, "/v1/ready", x, 0, S15, Verify, false, handlers::ready),
        route(M::GET, "/v1/status", x, 0, S15, Verify, false, handlers::status),
        route(M::GET, "/v1/metrics", x, 0, S15, Verify, false, handlers::metrics),
        route(M::GET, "/v1/api", x, 0, S10, Verify, false, handlers::api),
        route(M::PUT, "/v1/key/create/", p, 4096, S15, Verify, true, handlers::key_create),
        route(M::PUT, "/v1/key/import/", p, MB, S15, Verify, true, handlers::key_import),
        route(M::GET, "/v1/key/describe/", p, 0, S15, Verify, true, handlers::key_describe),
        route(M::GET, "/v1/key/list/", p, 0, S15, Verify, true, handlers::key_list),
        route(M::DELETE, "/v1/key/delete/", p, 0, S15, Verify, true, handlers::key_delete),
        route(M::PUT, "/v1/key/encrypt/", p, MB, S15, Verify, true, handlers::key_encrypt),
        route(M::PUT, "/v1/key/generate/", p, MB, S15, Verify, true, handlers::key_generate),
        route(M::PUT, "/v1/key/decrypt/", p, MB, S15, Verify, true, handlers::key_decrypt),
        route(M::PUT, "/v1/key/hmac/", p, MB, S15, Verify, true, handlers::key_hmac),
        route(M::POST, "/v1/key/bulk/decrypt/", p, MB, S15, Verify, true, handlers::key_bulk_decrypt),
        route(M::PUT, "/v1/key/rotate/", p, 4096, S15, Verify, true, handlers::key_rotate),
        route(M::PUT, "/v1/key/rewrap/", p, MB, S15, Verify, true, handlers::key_rewrap),
        route(M::PUT, "/v1/key/min-version/", p, MB, S15, Verify, true, handlers::key_min_version),
        route(M::PUT, "/v1/key/retire/", p, MB, S15, Verify, true, handlers::key_retire),
        route(M::PUT, "/v1/key/rotation/", p, 4096, S15, Verify, true, handlers::key_rotation),
        route(M::GET, "/v1/policy/describe/", p, 0, S15, Verify, true, handlers::policy_describe),
        route(M::GET, "/v1/policy/read/", p, 0, S15, Verify, true, handlers::policy_read),
        route(M::GET, "/v1/policy/list/", p, 0, S15, Verify, true, handlers::policy_list),
        route(M::PUT, "/v1/policy/write/", p, MB, S15, Verify, true, handlers::policy_write),
        route(M::POST, "/v1/policy/assign/", p, MB, S15, Verify, true, handlers::policy_assign),
        route(M::DELETE, "/v1/policy/delete/", p, 0, S15, Verify, true, handlers::policy_delete),
        route(M::GET, "/v1/identity/describe/", p, 0, S15, Verify, true, handlers::identity_describe),
        route(M::GET, "/v1/identity/list/", p, 0, S15, Verify, true, handlers::identity_list),
        route(M::GET, "/v1/identity/self/describe", x, 0, S15, Identity, true, handlers::identity_self),
        route(M::POST, "/v1/identity/assign/", p, 0, S15, Verify, true, handlers::identity_assign),
        route(M::DELETE, "/v1/identity/delete/", p, 0, S15, Verify, true, handlers::identity_delete),
        route(M::DELETE, "/v1/identity/forget/", p, 0, S15, Verify, true, handlers::identity_delete),
        route(M::PUT, "/v1/enclave/create/", p, MB, S15, Admin, true, handlers::enclave_create),
        route(M::GET, "/v1/enclave/describe/", p, 0, S15, Verify, true, handlers::enclave_describe),
        route(M::GET, "/v1/enclave/list/", p, 0, S15, Verify, true, handlers::enclave_list),
        route(M::DELETE, "/v1/enclave/delete/", p, 0, S15, Admin, true, handlers::enclave_delete),
        route(M::GET, "/v1/cluster/status", x, 0, S15, Verify, false, handlers::cluster_status),
        route(M::POST, "/v1/cluster/join", x, MB, long, Admin, false, handlers::cluster_join),
        route(M::POST, "/v1/cluster/join-request", x, MB, long, Identity, false, handlers::cluster_join_request),
        route(M::GET, "/v1/cluster/founded", x, 0, S15, Identity, false, handlers::cluster_founded),
        route(M::DELETE, "/v1/cluster/remove/", p, 0, long, Admin, false, handlers::cluster_remove),
        route(M::GET, "/v1/cluster/snapshot", x, 0, long, Admin, false, handlers::cluster_snapshot),
        route(M::GET, "/v1/cluster/seal/status", x, 0, S15, Verify, false, handlers::seal_status),
        route(M::POST, "/v1/cluster/seal/add", x, 0, long, Admin, false, handlers::seal_add),
        route(M::DELETE, "/v1/cluster/seal/remove/", p, 0, long, Admin, false, handlers::seal_remove),
        route(M::POST, "/v1/cluster/seal/rekey", x, 0, Some(Duration::from_secs(600)), Admin, false, handlers::seal_rekey),
        route(M::POST, "/v1/cluster/restore", x, 256 * MB, long, Admin, false, handlers::cluster_restore),
        route(M::GET, "/v1/log/error", x, 0, STREAM, Verify, false, handlers::log_error),
        route(M::GET, "/v1/log/error/trace", x, 0, STREAM, Verify, false, handlers::log_error),
        route(M::GET, "/v1/log/audit", x, 0, STREAM, Verify, false, handlers::log_audit),
        route(M::GET, "/v1/log/audit/trace", x, 0, STREAM, Verify, false, handlers::log_audit),
    ];
    for r in &mut routes {
        r.needs_keys = r.path.starts_with("/v1/key/");
        if CLUSTER_WIDE.iter().any(|p| r.path.starts_with(p)) {
            r.scope = Scope::Cluster;
        }
        if r.path == "/v1/enclave/delete/" {
            r.aliases = &[Method::POST];
        }
    }
    routes
}

/// Finds the route for `path`: an exact route, else the longest prefix route. The bare list
/// paths (`/v1/key/list`) are served as an empty prefix, which the Go SDK sends for `*`.
///
/// Every request passes here, so it makes one pass, allocates only the resource it answers,
/// and skips a route whose first letter after `/v1/` differs before comparing the rest.
pub(super) fn find<'a>(routes: &'a [Route], path: &str) -> Option<(&'a Route, String)> {
    let group = |p: &str| p.as_bytes().get(GROUP_AT).copied();
    let mut longest: Option<&Route> = None;
    for r in routes {
        if !r.prefix {
            if r.path == path {
                return Some((r, String::new()));
            }
            continue;
        }
        if group(r.path) != group(path) {
            continue;
        }
        let bare_list = r.path.len() == path.len() + 1
            && r.path.starts_with(path)
            && r.path.ends_with("/list/");
        if (bare_list || path.starts_with(r.path))
            && longest.is_none_or(|l| r.path.len() > l.path.len())
        {
            longest = Some(r);
        }
    }
    longest.map(|r| (r, path.get(r.path.len()..).unwrap_or("").to_owned()))
}

/// Where the first letter after `/v1/` is.
const GROUP_AT: usize = "/v1/".len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_cluster_routes_are_scoped_to_the_default_enclave_and_changes_are_admin_only() {
        let routes = default_routes();
        for r in &routes {
            let cluster_wide = r.path.starts_with("/v1/cluster/")
                || r.path.starts_with("/v1/log/")
                || r.path.starts_with("/v1/enclave/")
                || r.path == "/v1/metrics"
                || r.path == "/v1/status";
            assert_eq!(r.scope == Scope::Cluster, cluster_wide, "{}", r.path);
        }
        for path in [
            "/v1/cluster/join",
            "/v1/cluster/remove/",
            "/v1/cluster/snapshot",
            "/v1/cluster/restore",
            "/v1/cluster/seal/add",
            "/v1/cluster/seal/remove/",
            "/v1/cluster/seal/rekey",
            "/v1/enclave/create/",
            "/v1/enclave/delete/",
        ] {
            let r = routes.iter().find(|r| r.path == path).expect(path);
            assert_eq!(r.auth, Auth::Admin, "{path}");
        }
    }

    #[test]
    fn every_route_is_found_by_its_own_path() {
        let routes = default_routes();
        for r in &routes {
            let path = if r.prefix {
                format!("{}name", r.path)
            } else {
                r.path.to_owned()
            };
            let (found, resource) = find(&routes, &path).expect("a route");
            assert_eq!(found.path, r.path, "{path}");
            assert_eq!(resource, if r.prefix { "name" } else { "" }, "{path}");
        }
    }

    #[test]
    fn routing_picks_exact_then_longest_prefix() {
        let routes = default_routes();
        let (r, res) = find(&routes, "/v1/key/create/my-key").expect("route");
        assert_eq!((r.path, res.as_str()), ("/v1/key/create/", "my-key"));
        let (r, res) = find(&routes, "/v1/key/list").expect("bare list");
        assert_eq!((r.path, res.as_str()), ("/v1/key/list/", ""));
        let (r, _) = find(&routes, "/v1/identity/self/describe").expect("self");
        assert_eq!(r.path, "/v1/identity/self/describe");
        let (r, res) = find(&routes, "/v1/key/bulk/decrypt/k").expect("bulk");
        assert_eq!((r.path, res.as_str()), ("/v1/key/bulk/decrypt/", "k"));
        assert!(find(&routes, "/v1/nothing").is_none());
        let (r, res) = find(&routes, "/v1/identity/forget/ab").expect("forget");
        assert_eq!(
            r.policy_paths(&res),
            ["/v1/identity/delete/ab", "/v1/identity/forget/ab"]
        );
        let (r, res) = find(&routes, "/v1/identity/assign/p/ab").expect("assign");
        assert_eq!(r.policy_paths(&res)[0], "/v1/policy/assign/p");
        let (r, res) = find(&routes, "/v1/key/list").expect("list");
        assert_eq!(r.policy_paths(&res), ["/v1/key/list/"]);
        let (r, _) = find(&routes, "/v1/log/audit/trace").expect("trace");
        assert_eq!(r.policy_paths(""), ["/v1/log/audit", "/v1/log/audit/trace"]);
        assert!(find(&routes, "/v1/key/create").is_none());
        assert!(
            routes
                .iter()
                .find(|r| r.path == "/v1/key/create/")
                .unwrap()
                .accepts(&Method::POST)
        );
        assert!(
            !routes
                .iter()
                .find(|r| r.path == "/v1/ready")
                .unwrap()
                .accepts(&Method::HEAD)
        );
    }
}
