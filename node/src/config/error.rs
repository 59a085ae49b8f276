//! The one error type of config loading. Every message names the key (as a dotted path such as
//! `policy.my-app.allow[2]`) and says what to do about it, because the reader is an operator
//! looking at a node that refused to start.

use std::path::PathBuf;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {}: {source}; check the path given to --config", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// An error found in a config file; wraps the error with the file's path.
    #[error("config file {}: {source}", path.display())]
    InFile {
        /// The file that holds the error.
        path: PathBuf,
        /// The error itself.
        #[source]
        source: Box<ConfigError>,
    },

    /// The text is not YAML, or not a YAML mapping at the top.
    #[error("the config is not valid YAML: {message}; fix the syntax at the position shown")]
    Yaml {
        /// The parser's message, with line and column where it has them.
        message: String,
    },

    /// A `keystore:` section that selects an external key store.
    #[error(
        "`{key}` is set, but kes-cluster keeps keys itself: configure `seal:` instead, and remove the `keystore:` section"
    )]
    Keystore {
        /// The first non-empty key found under `keystore`.
        key: String,
    },

    /// A key this node does not know, most likely misspelt.
    #[error("unknown key `{key}`: remove it or correct its spelling (allowed here: {allowed})")]
    UnknownKey {
        /// Full dotted path of the key.
        key: String,
        /// The keys allowed at that place, comma-separated.
        allowed: String,
    },

    /// A value of the wrong YAML shape, e.g. a list where a string belongs.
    #[error("`{key}` must be {expected}, but it is {found}")]
    WrongType {
        /// Full dotted path of the key.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// What the file gives.
        found: &'static str,
    },

    /// A required value that is present but empty, often because its `${ENV}` was not set.
    #[error("`{key}` is empty{cause}: {hint}")]
    Empty {
        /// Full dotted path of the key.
        key: String,
        /// Why it is empty, e.g. " because the environment variable ADMIN is not set", or "".
        cause: String,
        /// What to set it to.
        hint: &'static str,
    },

    /// A required value that is missing altogether.
    #[error("`{key}` is not set: {hint}")]
    Missing {
        /// Full dotted path of the key.
        key: String,
        /// Where the value can come from.
        hint: &'static str,
    },

    /// A duration that is not in Go syntax, or negative.
    #[error(
        "`{key}`: '{value}' is not a duration ({reason}); write it like 250ms, 30s, 5m or 1h30m"
    )]
    Duration {
        /// Full dotted path of the key.
        key: String,
        /// The text as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A policy name that breaks the KES name rule.
    #[error(
        "`{key}`: '{name}' is not a valid policy name; use 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_', not starting or ending with '-', and not '_' alone"
    )]
    PolicyName {
        /// Full dotted path of the policy.
        key: String,
        /// The name as given.
        name: String,
    },

    /// A policy pattern this node refuses to store.
    #[error("policy `{policy}`: the pattern '{pattern}' {reason}")]
    PolicyPattern {
        /// The policy name.
        policy: String,
        /// The pattern as given.
        pattern: String,
        /// What is wrong and what to write instead.
        reason: &'static str,
    },

    /// One identity assigned to two policies.
    #[error(
        "identity {identity} is assigned to policy `{first}` and to policy `{second}`, but an identity belongs to at most one policy; remove it from one of them"
    )]
    IdentityInTwoPolicies {
        /// The identity.
        identity: String,
        /// The first policy that lists it (in name order).
        first: String,
        /// The second policy that lists it.
        second: String,
    },

    /// The admin identity listed in a policy.
    #[error(
        "the admin identity {identity} is also listed in `policy.{policy}.identities`; the admin bypasses all policies, so remove it from the policy"
    )]
    AdminInPolicy {
        /// The admin identity.
        identity: String,
        /// The policy that lists it.
        policy: String,
    },

    /// `skip_auth: true` on a route that must stay authenticated.
    #[error(
        "`api.{route}.skip_auth` is true, but authentication can only be skipped for /v1/ready, /v1/status, /v1/metrics and /v1/api; remove it, and give the client a certificate and a policy instead"
    )]
    SkipAuthNotAllowed {
        /// The route key.
        route: String,
    },

    /// Any other invalid value; the reason says what to do.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// Full dotted path of the key.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The error without the file wrapper, for callers (and tests) that match on the kind.
    pub fn kind(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { source, .. } => source.kind(),
            other => other,
        }
    }
}
