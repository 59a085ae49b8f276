//! The node's configuration file: the KES YAML of the KES configuration page, plus the
//! `cluster:` and `seal:` sections that make a node part of a replicated, sealed cluster, and
//! `limits:`, the bounds that keep a node serving under abuse.
//!
//! ```text
//!  text ──serde_yaml_ng──▶ Value ──Section/Field──▶ typed sections ──Config::validate──▶ Config
//!                                  │                                                + warnings
//!                                  ├─ full dotted path of every key (`policy.my-app.alow`)
//!                                  └─ `${NAME}` expanded where a scalar is read
//! ```
//!
//! What a file may hold (the contract §3.2 and §10):
//! * every key of KES's sample config loads;
//! * `version` must be `v1` when present; `tls.proxy` is ignored with a warning when it names
//!   proxies; `cache.expiry.*` are honoured (`offline` is kept but has no effect, and says so);
//! * `keystore:` that configures a store is refused — a node keeps keys itself; an all-empty
//!   skeleton such as the sample's is ignored with a warning;
//! * any other unknown key is an error naming its full path;
//! * `${NAME}` is expanded in every scalar except `version` and policy patterns; an unset
//!   variable leaves the value empty with a warning, and a required value left empty is an error.
//!
//! Non-features: this module reads no certificate or key file and touches no network; it only
//! checks that settings are well-formed and consistent. Warnings are returned, not logged, so
//! the binary decides where they go.

mod address;
mod api;
mod cache;
mod cluster;
mod duration;
mod env;
mod error;
mod keys;
pub use keys::KeySpec;
mod keystore;
mod limits;
mod log;
mod names;
mod policy;
mod rate_limits;
mod reader;
mod seal;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use api::{API_ROUTES, ApiRouteConfig, SKIP_AUTH_ROUTES};
pub use cache::CacheConfig;
pub use cluster::{ClusterConfig, ClusterTlsConfig, ElectionTimeout, GrpcConfig};
pub use error::ConfigError;
pub use limits::LimitsConfig;
pub use log::{AuditFailure, AuditFileConfig, LogConfig};
pub use names::is_valid_name;
pub use policy::PolicyConfig;
pub use rate_limits::{RateLimit, RateLimitsConfig};
pub use seal::{Pkcs11Token, SealConfig, SealProvider};
pub use tls::TlsConfig;

use reader::{Ctx, Field, Section};

/// The port KES listens on when nothing says otherwise.
pub const DEFAULT_PORT: u16 = 7373;

/// A validated node configuration. `Config::default()` is the development baseline: no file,
/// every default, and the identity and certificates left to `--dev` or the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `address`: where the KES API listens. `None` lets `--addr` or the default
    /// (`0.0.0.0:7373`, see [`Config::listen_address`]) decide.
    pub address: Option<SocketAddr>,
    /// `data_dir`: where the node keeps its state (our extension). `--data-dir` overrides it.
    pub data_dir: Option<PathBuf>,
    /// `admin.identity`: the identity that bypasses every policy. `None` when the file leaves
    /// it to `--root` or `--dev`.
    pub admin_identity: Option<String>,
    /// `tls`: the server certificate and client-certificate handling.
    pub tls: TlsConfig,
    /// `api`: per-route overrides, keyed by KES route key (`/v1/key/create/`, `/v1/status`).
    pub api: BTreeMap<String, ApiRouteConfig>,
    /// `cache.expiry`: lifetimes of unsealed keys in memory.
    pub cache: CacheConfig,
    /// `log`: console output of error and audit events.
    pub log: LogConfig,
    /// `limits`: connection, timeout and stream bounds (our extension; every key optional).
    pub limits: LimitsConfig,
    /// `rate_limits`: requests per second per identity (our extension; none without it).
    pub rate_limits: RateLimitsConfig,
    /// `policy`: policies declared in the file (read-only in the cluster), by name.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// `keys[]`: keys created once a leader is known, in file order, with their rotation.
    pub keys: Vec<keys::KeySpec>,
    /// `cluster`: peers and Raft timings.
    pub cluster: ClusterConfig,
    /// `seal`: root-key providers.
    pub seal: SealConfig,
}

/// A loaded configuration and the warnings that loading produced (unset variables, ignored
/// sections). The caller should show every warning to the operator.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Human-readable warnings, each naming its key.
    pub warnings: Vec<String>,
}

impl Config {
    /// Parses and validates a config file's text. `env` looks up `${NAME}` references; pass
    /// `&|name| std::env::var(name).ok()` for the process environment.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
                message: e.to_string(),
            })?;
        let cx = Ctx::new(env);
        let config = read(&cx, &value)?;
        config.validate()?;
        Ok(Loaded {
            config,
            warnings: cx.into_warnings(),
        })
    }

    /// Reads a config file, expanding `${NAME}` from the process environment. Errors carry the
    /// file's path.
    pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok()).map_err(|e| {
            ConfigError::InFile {
                path: path.to_owned(),
                source: Box::new(e),
            }
        })
    }

    /// Checks the rules that span keys. Loading runs it; run it again after applying command
    /// line flags (`--root`, `--cert`, ...) to a loaded config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls.key.is_some() != self.tls.cert.is_some() {
            return Err(ConfigError::invalid(
                "tls",
                "set tls.key and tls.cert together (or pass --key and --cert)",
            ));
        }
        for (route, entry) in &self.api {
            if entry.skip_auth && !SKIP_AUTH_ROUTES.contains(&route.as_str()) {
                return Err(ConfigError::SkipAuthNotAllowed {
                    route: route.clone(),
                });
            }
        }
        for (name, p) in &self.policies {
            if !is_valid_name(name) {
                return Err(ConfigError::PolicyName {
                    key: format!("policy.{name}"),
                    name: name.clone(),
                });
            }
            for pattern in p.allow.iter().chain(&p.deny) {
                policy::check_pattern(name, pattern)?;
            }
        }
        policy::check_assignments(&self.policies, self.admin_identity.as_deref())?;
        self.cluster.check()
    }

    /// Fails unless the settings a production node cannot start without are present: the admin
    /// identity and the server certificate. `--dev` supplies them itself and skips this.
    pub fn check_required(&self) -> Result<(), ConfigError> {
        if self.admin_identity.is_none() {
            return Err(ConfigError::Missing {
                key: "admin.identity".to_owned(),
                hint: "set it in the config file or pass --root IDENTITY",
            });
        }
        if self.tls.cert.is_none() {
            return Err(ConfigError::Missing {
                key: "tls.cert".to_owned(),
                hint: "set tls.cert and tls.key in the config file or pass --cert and --key",
            });
        }
        Ok(())
    }

    /// The KES listen address: `address`, or `0.0.0.0:7373`.
    pub fn listen_address(&self) -> SocketAddr {
        self.address
            .unwrap_or_else(|| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_PORT))
    }
}

/// Reads every top-level section. Unknown keys are refused before any value is judged, so a
/// typo is reported as a typo and not as whatever its neighbour complains about.
fn read(cx: &Ctx<'_>, value: &serde_yaml_ng::Value) -> Result<Config, ConfigError> {
    let mut top = Section::root(cx, value)?;
    let version = top.take("version");
    let address = top.take("address");
    let data_dir = top.take("data_dir");
    let admin = top.take("admin");
    let tls = top.take("tls");
    let api = top.take("api");
    let policy = top.take("policy");
    let cache = top.take("cache");
    let log = top.take("log");
    let limits = top.take("limits");
    let rate_limits = top.take("rate_limits");
    let keys = top.take("keys");
    let keystore = top.take("keystore");
    let cluster = top.take("cluster");
    let seal = top.take("seal");
    if let Some(f) = &keystore {
        keystore::check(f)?;
    }
    // Era-A KES files used `root:`; point at the new spelling instead of "unknown key".
    top.finish_with(&[(
        "root",
        "KES renamed this key: write `admin:` with `identity: <the root identity>` below it",
    )])?;

    if let Some(f) = version {
        check_version(&f.verbatim())?;
    }
    let mut config = Config::default();
    if let Some(f) = address
        && let Some(text) = f.optional_string()?
    {
        config.address =
            Some(address::parse_listen(&text).map_err(|r| ConfigError::invalid(f.path(), r))?);
    }
    if let Some(f) = data_dir {
        config.data_dir = Some(PathBuf::from(
            f.required_string("the directory where the node keeps its state")?,
        ));
    }
    if let Some(f) = admin {
        let mut sec = f.section()?;
        let identity = sec.take("identity");
        sec.finish()?;
        if let Some(id) = identity {
            config.admin_identity = Some(id.required_string(
                "set the admin's identity (`kes-cluster identity of CERT`), or `disabled` to have no admin",
            )?);
        }
    }
    if let Some(f) = tls {
        config.tls = tls::parse(&f)?;
    }
    if let Some(f) = api {
        config.api = api::parse(&f)?;
    }
    if let Some(f) = policy {
        config.policies = policy::parse(&f)?;
    }
    if let Some(f) = cache {
        config.cache = cache::parse(&f)?;
    }
    if let Some(f) = log {
        config.log = log::parse(&f)?;
    }
    if let Some(f) = rate_limits {
        config.rate_limits = rate_limits::parse(&f)?;
    }
    if let Some(f) = limits {
        config.limits = limits::parse(&f)?;
    }
    if let Some(f) = keys {
        config.keys = keys::parse(&f)?;
    }
    if let Some(f) = cluster {
        config.cluster = cluster::parse(&f)?;
    }
    if let Some(f) = seal {
        config.seal = seal::parse(&f)?;
    }
    Ok(config)
}

/// `version` is optional; when present it must be `v1`, the only version KES defines.
fn check_version(field: &Field<'_>) -> Result<(), ConfigError> {
    match field.text()?.as_deref().map(str::trim) {
        None | Some("v1") => Ok(()),
        Some(other) => Err(ConfigError::invalid(
            field.path(),
            format!("'{other}' is not supported; write `version: v1` or remove the key"),
        )),
    }
}
