//! `kes-node --dev`: everything a first try needs, made once in the data directory and reused.
//!
//! Unlike upstream KES's dev mode this listens on 127.0.0.1, keeps its data on disk, and writes
//! an admin certificate (instead of printing an API key) so curl and the kes CLI work at once.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The files of a dev data directory.
#[derive(Debug, Clone)]
pub struct DevFiles {
    /// Self-signed server certificate (SAN 127.0.0.1 and localhost); also the client's CA.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The admin's client certificate.
    pub admin_cert: PathBuf,
    /// Its key.
    pub admin_key: PathBuf,
    /// The file root key.
    pub root_key: PathBuf,
    /// The admin identity.
    pub admin_identity: String,
}

/// Creates `dir` and whatever files are missing in it; existing ones are reused, so a restart
/// keeps its certificates and data.
pub fn prepare(dir: &Path) -> Result<DevFiles, String> {
    crate::dir_sync::create_dirs_durably(
        std::fs::DirBuilder::new().recursive(true).mode(0o700),
        dir,
    )
    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = DevFiles {
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        root_key: dir.join("root.key"),
        admin_identity: String::new(),
    };
    if !files.server_cert.exists() || !files.server_key.exists() {
        let (cert, key) = server_certificate().map_err(|e| format!("server certificate: {e}"))?;
        write_private(&files.server_key, key.as_bytes())?;
        write_private(&files.server_cert, cert.as_bytes())?;
    }
    if !files.admin_cert.exists() || !files.admin_key.exists() {
        let (cert, key) =
            client_certificate("admin").map_err(|e| format!("admin certificate: {e}"))?;
        write_private(&files.admin_key, key.as_bytes())?;
        write_private(&files.admin_cert, cert.as_bytes())?;
    }
    let pem = std::fs::read(&files.admin_cert)
        .map_err(|e| format!("cannot read {}: {e}", files.admin_cert.display()))?;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: {e}", files.admin_cert.display()))?;
    let id = crate::tls::identity_of_certificate(der.as_ref())
        .ok_or_else(|| format!("{} has no KES identity", files.admin_cert.display()))?;
    Ok(DevFiles {
        admin_identity: id.to_string(),
        ..files
    })
}

use rustls_pki_types::pem::PemObject;

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| crate::dir_sync::sync_parent(path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A self-signed ECDSA P-256 server certificate for 127.0.0.1 and localhost. Returns (cert
/// PEM, key PEM).
pub fn server_certificate() -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A self-signed ECDSA P-256 client certificate (not a CA, EKU clientAuth). Returns (cert
/// PEM, key PEM).
pub fn client_certificate(name: &str) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
