//! `seal:` — the providers that hold the root key, and how often a node re-checks with them.
//!
//! Two spellings, so the common case stays one line:
//!
//! ```yaml
//! seal:
//!   file: {path: /etc/kes/root.key}    # one provider (or several different kinds, in order)
//!   recheck: 5m
//!   offline_grace: 1h
//! ---
//! seal:
//!   providers:                          # an ordered list, e.g. two files while migrating
//!     - file: {path: /etc/kes/old.key}
//!     - pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: kes-cluster, key_label: kes-root}
//! ```

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::names::is_valid_name;
use super::reader::{Field, opt};

/// The `seal:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealConfig {
    /// The providers in the order a node tries them when unsealing. Empty means the binary
    /// decides (`--dev` uses a file root key in its data directory).
    pub providers: Vec<SealProvider>,
    /// `seal.recheck`: how often an unsealed node asks its provider again. Default 5m.
    pub recheck: Duration,
    /// `seal.offline_grace`: how long a node keeps serving while its provider is unreachable
    /// (not refusing). Default 1h, so that one KMS blip does not seal every node at once;
    /// shorter means a revoked root key takes effect sooner during an outage.
    pub offline_grace: Duration,
}

impl Default for SealConfig {
    fn default() -> Self {
        SealConfig {
            providers: Vec::new(),
            recheck: Duration::from_secs(5 * 60),
            offline_grace: Duration::from_secs(60 * 60),
        }
    }
}

/// One root-key holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealProvider {
    /// `file`: 32 raw bytes in a file (mode 0600), for development and tests.
    File {
        /// `path`: the key file; keep it outside the data directory.
        path: PathBuf,
    },
    /// `pkcs11`: a non-extractable AES key inside an HSM token.
    Pkcs11 {
        /// `module`: the PKCS#11 library, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
        module: PathBuf,
        /// `token_label` or `slot`: which token to open.
        token: Pkcs11Token,
        /// `pin_env`: the environment variable that holds the user PIN. Default `KES_HSM_PIN`.
        /// The PIN itself never appears in the config.
        pin_env: String,
        /// `key_label`: the label of the AES root key in the token.
        key_label: String,
    },
    /// `kes`: a key on an upstream KES server (MinIO KES or another kes-cluster).
    Kes {
        /// `endpoint`: `https://host:port` of the upstream.
        endpoint: String,
        /// `cert`: client certificate presented to the upstream.
        cert: PathBuf,
        /// `key`: its private key.
        key: PathBuf,
        /// `ca`: CA for the upstream's server certificate; `None` uses the system roots.
        ca: Option<PathBuf>,
        /// `key_name`: the upstream key that wraps the cluster key.
        key_name: String,
    },
    /// `aws-kms`: a KMS key in AWS (or an emulator), reached with SigV4 and the usual
    /// `AWS_*` credential variables.
    AwsKms {
        /// `endpoint`: overrides `https://kms.<region>.amazonaws.com`.
        endpoint: Option<String>,
        /// `region`: e.g. `us-east-1`.
        region: String,
        /// `key_id`: key id, ARN or alias.
        key_id: String,
    },
}

/// How a PKCS#11 provider picks its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkcs11Token {
    /// By token label (stable across re-initialisation of other tokens).
    Label(String),
    /// By slot id.
    Slot(u64),
}

impl SealProvider {
    /// The provider's name as written in the config: `file`, `pkcs11`, `kes` or `aws-kms`.
    pub fn kind(&self) -> &'static str {
        match self {
            SealProvider::File { .. } => "file",
            SealProvider::Pkcs11 { .. } => "pkcs11",
            SealProvider::Kes { .. } => "kes",
            SealProvider::AwsKms { .. } => "aws-kms",
        }
    }
}

const PROVIDER_KINDS: [&str; 4] = ["file", "pkcs11", "kes", "aws-kms"];

pub(crate) fn parse(field: &Field<'_>) -> Result<SealConfig, ConfigError> {
    let mut seal = SealConfig::default();
    let mut sec = field.section()?;
    let mut inline = 0;
    let mut listed = None;
    // Document order matters for inline providers, so walk the keys as written.
    for (key, f) in sec.take_all() {
        match key.as_str() {
            "recheck" => seal.recheck = f.duration()?.unwrap_or(seal.recheck),
            "offline_grace" => seal.offline_grace = f.duration()?.unwrap_or(seal.offline_grace),
            "providers" => listed = Some(f),
            kind if PROVIDER_KINDS.contains(&kind) => {
                inline += 1;
                seal.providers.push(parse_provider(kind, &f)?);
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: f.path().to_owned(),
                    allowed: format!(
                        "{}, providers, recheck, offline_grace",
                        PROVIDER_KINDS.join(", ")
                    ),
                });
            }
        }
    }
    if let Some(list) = listed {
        if inline > 0 {
            return Err(ConfigError::invalid(
                list.path(),
                "list the providers either under `providers:` or directly under `seal:`, not both",
            ));
        }
        for item in list.list()? {
            let mut one = item.section()?;
            let entries = one.take_all();
            let [(kind, f)] = entries.as_slice() else {
                return Err(ConfigError::invalid(
                    item.path(),
                    format!(
                        "each entry names exactly one provider ({}), e.g. `- file: {{path: /etc/kes/root.key}}`",
                        PROVIDER_KINDS.join(", ")
                    ),
                ));
            };
            if !PROVIDER_KINDS.contains(&kind.as_str()) {
                return Err(ConfigError::UnknownKey {
                    key: f.path().to_owned(),
                    allowed: PROVIDER_KINDS.join(", "),
                });
            }
            seal.providers.push(parse_provider(kind, f)?);
        }
    }
    check(&seal, field)?;
    Ok(seal)
}

fn check(seal: &SealConfig, field: &Field<'_>) -> Result<(), ConfigError> {
    if seal.recheck.is_zero() {
        return Err(ConfigError::invalid(
            format!("{}.recheck", field.path()),
            "must be greater than zero; the default is 5m",
        ));
    }
    for (i, p) in seal.providers.iter().enumerate() {
        if seal.providers[..i].contains(p) {
            return Err(ConfigError::invalid(
                field.path(),
                format!("the {} provider is listed twice; remove one", p.kind()),
            ));
        }
    }
    Ok(())
}

fn parse_provider(kind: &str, field: &Field<'_>) -> Result<SealProvider, ConfigError> {
    match kind {
        "file" => file(field),
        "pkcs11" => pkcs11(field),
        "kes" => kes(field),
        _ => aws_kms(field),
    }
}

fn file(field: &Field<'_>) -> Result<SealProvider, ConfigError> {
    let mut sec = field.section()?;
    let path = sec.take("path");
    sec.finish()?;
    let path = required(
        field,
        "path",
        &path,
        "give the path of the 32-byte root key file",
    )?;
    Ok(SealProvider::File { path: path.into() })
}

fn pkcs11(field: &Field<'_>) -> Result<SealProvider, ConfigError> {
    let mut sec = field.section()?;
    let module = sec.take("module");
    let token_label = sec.take("token_label");
    let slot = sec.take("slot");
    let pin_env = sec.take("pin_env");
    let key_label = sec.take("key_label");
    sec.finish()?;
    let token = match (
        opt(&token_label, Field::optional_string)?,
        opt(&slot, Field::u64)?,
    ) {
        (Some(label), None) => Pkcs11Token::Label(label),
        (None, Some(slot)) => Pkcs11Token::Slot(slot),
        _ => {
            return Err(ConfigError::invalid(
                field.path(),
                "set exactly one of token_label (e.g. kes-cluster) and slot",
            ));
        }
    };
    Ok(SealProvider::Pkcs11 {
        module: required(
            field,
            "module",
            &module,
            "give the path of the PKCS#11 library",
        )?
        .into(),
        token,
        // The name the setup script in scripts/ uses, so the common case needs no setting.
        pin_env: opt(&pin_env, Field::optional_string)?.unwrap_or_else(|| "KES_HSM_PIN".to_owned()),
        key_label: required(
            field,
            "key_label",
            &key_label,
            "give the label of the AES root key, e.g. kes-root",
        )?,
    })
}

fn kes(field: &Field<'_>) -> Result<SealProvider, ConfigError> {
    let mut sec = field.section()?;
    let endpoint = sec.take("endpoint");
    let cert = sec.take("cert");
    let key = sec.take("key");
    let ca = sec.take("ca");
    let key_name = sec.take("key_name");
    sec.finish()?;
    let endpoint = required(
        field,
        "endpoint",
        &endpoint,
        "give the upstream's https://host:port",
    )?;
    check_url(field, "endpoint", &endpoint, &["https://"])?;
    let key_name = required(
        field,
        "key_name",
        &key_name,
        "name the upstream key that wraps the cluster key",
    )?;
    if !is_valid_name(&key_name) {
        return Err(ConfigError::invalid(
            format!("{}.key_name", field.path()),
            format!("'{key_name}' is not a valid KES key name; use A-Z, a-z, 0-9, '-' and '_'"),
        ));
    }
    Ok(SealProvider::Kes {
        endpoint,
        cert: required(
            field,
            "cert",
            &cert,
            "give the client certificate for the upstream",
        )?
        .into(),
        key: required(
            field,
            "key",
            &key,
            "give the client certificate's private key",
        )?
        .into(),
        ca: opt(&ca, Field::optional_string)?.map(PathBuf::from),
        key_name,
    })
}

fn aws_kms(field: &Field<'_>) -> Result<SealProvider, ConfigError> {
    let mut sec = field.section()?;
    let endpoint = sec.take("endpoint");
    let region = sec.take("region");
    let key_id = sec.take("key_id");
    sec.finish()?;
    let endpoint = opt(&endpoint, Field::optional_string)?;
    if let Some(e) = &endpoint {
        // Plain http is allowed for emulators such as moto on loopback.
        check_url(field, "endpoint", e, &["https://", "http://"])?;
    }
    Ok(SealProvider::AwsKms {
        endpoint,
        region: required(
            field,
            "region",
            &region,
            "give the AWS region, e.g. us-east-1",
        )?,
        key_id: required(
            field,
            "key_id",
            &key_id,
            "give the KMS key id, ARN or alias",
        )?,
    })
}

/// A setting a provider cannot work without: missing and empty are both errors.
fn required(
    parent: &Field<'_>,
    key: &'static str,
    field: &Option<Field<'_>>,
    hint: &'static str,
) -> Result<String, ConfigError> {
    match field {
        Some(f) => f.required_string(hint),
        None => Err(ConfigError::Missing {
            key: format!("{}.{key}", parent.path()),
            hint,
        }),
    }
}

fn check_url(
    parent: &Field<'_>,
    key: &str,
    url: &str,
    schemes: &[&str],
) -> Result<(), ConfigError> {
    let host_ok = schemes
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', ':']));
    if host_ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            format!("{}.{key}", parent.path()),
            format!("'{url}' is not a URL; write it as {}host:port", schemes[0]),
        ))
    }
}
