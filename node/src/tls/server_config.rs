//! Builds the rustls server configuration of the KES port from the `tls` config section.

use super::{AnyClientCert, provider};
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

fn load_certs(
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

/// Builds the server config: TLS 1.2 and 1.3, ALPN h2 and http/1.1, and the client-certificate
/// policy KES uses for the given `auth` setting.
pub fn load_server_config(opts: &ServerTlsOptions) -> Result<ServerConfig, TlsSetupError> {
    let chain = load_certs(&opts.cert, "tls.cert")?;
    let key = PrivateKeyDer::from_pem_file(&opts.key).map_err(|e| TlsSetupError::Load {
        what: "tls.key (an unencrypted PEM private key)",
        path: opts.key.clone(),
        reason: e.to_string(),
    })?;
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
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
