//! The rustls client configuration, and turning TLS failures into advice.
//!
//! Configs are always built with the `ring` provider passed explicitly: the
//! workspace compiles rustls without a process-default provider, and relying
//! on one would panic at the first handshake.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ClientConfig;
use super::verify::{AnyServer, TrustedServer};
use crate::error::{Error, Result};
use crate::identity::certificates_in;

/// Builds the rustls configuration for `config`: server verification,
/// optional client certificate, HTTP/1.1 via ALPN.
pub(crate) fn rustls_config(config: &ClientConfig) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if config.insecure {
        Arc::new(AnyServer::new(&provider))
    } else {
        let trusted = match &config.ca {
            Some(ca) => load_ca(ca)?,
            None => Vec::new(),
        };
        Arc::new(TrustedServer::new(trusted, &provider)?)
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => Error::Config(format!(
                        "private key {} does not belong to client certificate {}",
                        key.display(),
                        cert.display()
                    )),
                    other => Error::Config(format!(
                        "cannot use client certificate {} with key {}: {other}",
                        cert.display(),
                        key.display()
                    )),
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) => {
            return Err(Error::Config(format!(
                "client certificate {} given without its private key: set KES_CLIENT_KEY (or --key)",
                cert.display()
            )));
        }
        (None, Some(key)) => {
            return Err(Error::Config(format!(
                "private key {} given without its certificate: set KES_CLIENT_CERT (or --cert)",
                key.display()
            )));
        }
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// The certificates of a PEM file, or of every PEM file in a directory.
fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let meta = fs::metadata(path).map_err(|e| Error::file("read CA", path, e))?;
    if !meta.is_dir() {
        return load_certs(path);
    }
    let mut certs = Vec::new();
    let entries = fs::read_dir(path).map_err(|e| Error::file("read CA directory", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::file("read CA directory", path, e))?;
        let file = entry.path();
        // A CA directory may hold keys, READMEs and the like: take what parses.
        if file.is_file()
            && let Ok(data) = fs::read(&file)
        {
            certs.extend(CertificateDer::pem_slice_iter(&data).filter_map(|c| c.ok()));
        }
    }
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "no PEM certificates found in CA directory {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = fs::read(path).map_err(|e| Error::file("read certificate", path, e))?;
    certificates_in(&data).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = fs::read(path).map_err(|e| Error::file("read private key", path, e))?;
    if data.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
        return Err(Error::Config(format!(
            "private key {} is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN.key)",
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| {
        Error::Config(format!(
            "no usable private key in {} ({e}); expected a PEM 'PRIVATE KEY', 'EC PRIVATE KEY' or 'RSA PRIVATE KEY' block",
            path.display()
        ))
    })
}

/// A sentence for a TLS failure that says what to change.
pub(crate) fn explain(err: &rustls::Error, has_client_cert: bool) -> String {
    use rustls::Error as E;
    const INSECURE: &str = "or pass -k/--insecure to skip verification (testing only)";
    match err {
        E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            format!(
                "the server's certificate is not issued by a trusted CA: point KES_CA (--ca) at the CA \
             certificate, or at the server's own certificate when it is self-signed, {INSECURE}"
            )
        }
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            format!(
                "the server's certificate does not name this host: use a host name or IP address \
                 listed in the certificate, {INSECURE}"
            )
        }
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => {
            format!("the server's certificate has expired: renew it, {INSECURE}")
        }
        E::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => {
            format!("the server's certificate is not valid yet (check the clocks), {INSECURE}")
        }
        // WebPKI refuses a CA certificate presented as a server certificate,
        // which is how self-signed development certificates often look.
        E::InvalidCertificate(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            format!(
                "the server presents a self-signed CA certificate: point KES_CA (--ca) at that very \
             certificate to trust it, {INSECURE}"
            )
        }
        E::InvalidCertificate(other) => format!(
            "the server's certificate was refused ({other}): point KES_CA (--ca) at the certificate \
             of the CA that issued it, {INSECURE}"
        ),
        E::AlertReceived(alert) if !has_client_cert && is_client_cert_alert(*alert) => format!(
            "the server requires a client certificate ({alert:?}): set KES_CLIENT_CERT and \
             KES_CLIENT_KEY (or --cert and --key)"
        ),
        E::AlertReceived(alert) if is_client_cert_alert(*alert) => format!(
            "the server refused the client certificate ({alert:?}); check that KES_CLIENT_CERT and \
             KES_CLIENT_KEY name the right files"
        ),
        other => other.to_string(),
    }
}

fn is_client_cert_alert(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
            | AlertDescription::UnknownCA
    )
}

/// The rustls error somewhere in an error's source chain.
///
/// `std::io::Error` hides its payload from `source()` (it reports the
/// payload's source instead), so io errors are looked into with `get_ref`.
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            current = inner.source();
            continue;
        }
        current = e.source();
    }
    None
}

/// The first `std::io::Error` in an error's source chain.
pub(crate) fn find_io_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}
