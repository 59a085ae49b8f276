//! `tls:` — the certificate the KES port serves and how it treats client certificates.

use std::fmt;
use std::path::PathBuf;

use super::ConfigError;
use super::reader::{Field, items, opt};

/// The `tls:` section.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tls.key`: PEM private key of the server certificate. `None` when the file leaves it to
    /// `--key` or `--dev`.
    pub key: Option<PathBuf>,
    /// `tls.cert`: PEM server certificate (chain). `None` when left to `--cert` or `--dev`.
    pub cert: Option<PathBuf>,
    /// `tls.password`: decrypts an encrypted PEM private key.
    pub password: Option<String>,
    /// `tls.auth`: verify client certificate chains against `ca` (`on`), or accept any client
    /// certificate whose key the client proves to hold (`off`, KES's default).
    pub auth: bool,
    /// `tls.ca`: a PEM file, or a directory of them, trusted for client certificates.
    pub ca: Option<PathBuf>,
}

// Written by hand so that a logged config never shows the key password.
impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("key", &self.key)
            .field("cert", &self.cert)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("ca", &self.ca)
            .finish()
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<TlsConfig, ConfigError> {
    let mut sec = field.section()?;
    let key = sec.take("key");
    let cert = sec.take("cert");
    let password = sec.take("password");
    let auth = sec.take("auth");
    let ca = sec.take("ca");
    let proxy = sec.take("proxy");
    sec.finish()?;

    const PATH_HINT: &str =
        "give the path of a PEM file, or remove the key and pass --cert/--key instead";
    let required_path = |f: &Field<'_>| f.required_string(PATH_HINT).map(Some);
    let key = opt(&key, required_path)?.map(PathBuf::from);
    let cert = opt(&cert, required_path)?.map(PathBuf::from);
    let auth = match auth {
        Some(f) => parse_auth(&f)?,
        None => false,
    };
    if let Some(proxy) = proxy {
        check_proxy(&proxy)?;
    }
    Ok(TlsConfig {
        key,
        cert,
        password: opt(&password, Field::optional_string)?,
        auth,
        ca: opt(&ca, Field::optional_string)?.map(PathBuf::from),
    })
}

/// `""`/`off` or `on`, any case, as in KES; YAML booleans are accepted too, since `on` written
/// in a YAML 1.1 tool may come back as `true`.
fn parse_auth(field: &Field<'_>) -> Result<bool, ConfigError> {
    if let serde_yaml_ng::Value::Bool(b) = field.value() {
        return Ok(*b);
    }
    let text = field.text()?.unwrap_or_default();
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "off" => Ok(false),
        "on" => Ok(true),
        _ => Err(ConfigError::invalid(
            field.path(),
            format!(
                "'{text}' is not a valid setting; write on (verify client certificates against tls.ca) or off"
            ),
        )),
    }
}

/// `tls.proxy` is read so that its keys are checked, then ignored: KES itself stopped honouring
/// it in 2023 (the contract §2.4), and a proxy that may act as any identity is not something a
/// replicated key store should trust quietly. A configured proxy earns a warning.
fn check_proxy(field: &Field<'_>) -> Result<(), ConfigError> {
    let mut sec = field.section()?;
    let identities = sec.take("identities");
    let header = sec.take("header");
    sec.finish()?;
    if let Some(header) = header {
        let mut h = header.section()?;
        let cert = h.take("cert");
        h.finish()?;
        if let Some(cert) = cert {
            cert.text()?;
        }
    }
    let mut configured = Vec::new();
    for id in items(&identities)? {
        if let Some(id) = id.optional_string()? {
            configured.push(id);
        }
    }
    if !configured.is_empty() {
        field.warn(format!(
            "`{}` is ignored: kes-cluster does not support TLS proxies, so requests relayed by {} are evaluated as the proxy's own identity (as in KES since 2023); connect clients directly",
            field.path(),
            configured.join(", "),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::{Ctx, Section};

    fn tls(yaml: &str) -> (Result<TlsConfig, ConfigError>, Vec<String>) {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
        let env = |_: &str| None;
        let cx = Ctx::new(&env);
        let result = {
            let mut root = Section::root(&cx, &value).expect("mapping");
            let field = root.take("tls").expect("tls present");
            parse(&field)
        };
        (result, cx.into_warnings())
    }

    #[test]
    fn auth_values() {
        for (text, want) in [("\"\"", false), ("off", false), ("ON", true), ("On", true)] {
            let (got, _) = tls(&format!("tls: {{auth: {text}}}"));
            assert_eq!(got.expect("valid").auth, want, "{text}");
        }
        assert!(tls("tls: {auth: maybe}").0.is_err());
    }

    #[test]
    fn empty_optional_paths_are_none_and_password_is_redacted() {
        let (got, _) = tls("tls: {key: k, cert: c, ca: \"\", password: secret}");
        let got = got.expect("valid");
        assert_eq!(got.ca, None);
        assert!(!format!("{got:?}").contains("secret"));
    }

    #[test]
    fn a_configured_proxy_is_ignored_with_a_warning() {
        let (got, warnings) = tls("tls: {proxy: {identities: [abc], header: {cert: X}}}");
        assert!(got.is_ok());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("tls.proxy"), "{warnings:?}");
        let (got, _) = tls("tls: {proxy: {identitys: []}}");
        assert!(
            matches!(got, Err(ConfigError::UnknownKey { key, .. }) if key == "tls.proxy.identitys")
        );
    }
}
