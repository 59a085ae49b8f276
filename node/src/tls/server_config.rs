//! Builds the rustls server configuration of the KES port from the `tls` config section.

use super::{AnyClientCert, ServerCert, provider};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the TLS setup needs to know, already resolved from config and flags.
#[derive(Debug, Clone)]
pub struct ServerTlsOptions {
    /// PEM server certificate chain.
    pub cert: PathBuf,
    /// PEM private key (unencrypted).
    pub key: PathBuf,
    /// `tls.password`: the password of an encrypted (PKCS#8, `ENCRYPTED PRIVATE KEY`) key.
    pub password: Option<String>,
    /// `tls.auth: on`: verify client chains against `ca`.
    pub verify_clients: bool,
    /// PEM file, or a directory of PEM files, with the CAs that sign client certificates.
    pub ca: Option<PathBuf>,
    /// Some route has `skip_auth`, so a handshake without a client certificate must succeed.
    pub allow_anonymous: bool,
}

/// A TLS setup failure, with the file involved and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    Load {
        /// Which file it was meant to be.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("invalid TLS setup: {0}")]
    Rustls(String),
}

pub(super) fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let err = |reason: String| TlsSetupError::Load {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn load_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    if !path.is_dir() {
        return load_certs(path, "tls.ca certificates");
    }
    let entries = std::fs::read_dir(path).map_err(|e| TlsSetupError::Load {
        what: "tls.ca directory",
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut all = Vec::new();
    for entry in entries.flatten() {
        if entry.path().is_file() {
            all.extend(load_certs(&entry.path(), "tls.ca certificates")?);
        }
    }
    Ok(all)
}

/// Loads the server key: plain PEM, or an `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2, as
/// `openssl pkcs8 -topk8 -v2 aes256` writes it) opened with `tls.password`.
pub(super) fn load_key(
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let err = |reason: String| TlsSetupError::Load {
        what: "tls.key",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if !pem.contains("ENCRYPTED") {
        return PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| err(e.to_string()));
    }
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err("the key is encrypted: set tls.password".into()))?;
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(err(
            "legacy OpenSSL PEM encryption is not supported; convert the key with `openssl pkcs8 -topk8 -v2 aes256`".into(),
        ));
    }
    let (_, doc) =
        pkcs8::SecretDocument::from_pem(&pem).map_err(|e| err(format!("not a PEM key: {e}")))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
        .map_err(|e| err(format!("not an encrypted PKCS#8 key: {e}")))?;
    let plain = encrypted
        .decrypt(password)
        .map_err(|_| err("wrong tls.password, or an unsupported encryption scheme".into()))?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// Builds the server config: TLS 1.2 and 1.3, ALPN h2 and http/1.1, and the client-certificate
/// policy KES uses for the given `auth` setting.
pub fn load_server_config(opts: &ServerTlsOptions) -> Result<ServerConfig, TlsSetupError> {
    load_reloadable_server_config(opts).map(|(config, _)| config)
}

/// The server config, and the handle that replaces its certificate while it serves.
pub fn load_reloadable_server_config(
    opts: &ServerTlsOptions,
) -> Result<(ServerConfig, Arc<ServerCert>), TlsSetupError> {
    let cert = Arc::new(ServerCert::load(opts)?);
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = if opts.verify_clients {
        let ca = opts.ca.as_ref().ok_or_else(|| {
            TlsSetupError::Rustls(
                "tls.auth is on but tls.ca is not set: name the CA that signs client certificates"
                    .into(),
            )
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in load_ca_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| TlsSetupError::Rustls(format!("tls.ca: {e}")))?;
        }
        let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if opts.allow_anonymous {
            b = b.allow_unauthenticated();
        }
        b.build()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
    } else {
        Arc::new(AnyClientCert::new(provider, !opts.allow_anonymous))
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_key_opens_with_its_password_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = crate::dev::server_certificate().expect("cert");
        let plain = dir.path().join("plain.key");
        std::fs::write(&plain, key).expect("write");
        let enc = dir.path().join("enc.key");
        let out = std::process::Command::new("openssl")
            .args([
                "pkcs8",
                "-topk8",
                "-v2",
                "aes256",
                "-passout",
                "pass:s3cret",
                "-in",
            ])
            .arg(&plain)
            .arg("-out")
            .arg(&enc)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let certp = dir.path().join("c.crt");
        std::fs::write(&certp, cert).expect("write");
        let opts = |password: Option<&str>| ServerTlsOptions {
            cert: certp.clone(),
            key: enc.clone(),
            password: password.map(str::to_owned),
            verify_clients: false,
            ca: None,
            allow_anonymous: false,
        };
        assert!(load_server_config(&opts(Some("s3cret"))).is_ok());
        let wrong = load_server_config(&opts(Some("nope"))).expect_err("wrong password");
        assert!(wrong.to_string().contains("wrong tls.password"), "{wrong}");
        let missing = load_server_config(&opts(None)).expect_err("no password");
        assert!(
            missing.to_string().contains("set tls.password"),
            "{missing}"
        );
    }
}
