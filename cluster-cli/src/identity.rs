//! KES identities: what a server calls a client, and how to make a new one.
//!
//! A KES identity is the lowercase hex SHA-256 of the client certificate's
//! SubjectPublicKeyInfo DER. It names the key pair, not the certificate, so a
//! renewed certificate over the same key keeps its identity. Like the server,
//! we pick the leaf by skipping every certificate whose basic constraints say
//! CA; a file with no such leaf has no identity.
//!
//! API keys (`kes:v1:…`) stand for an Ed25519 key pair; their identity is the
//! hash of that key's SPKI, exactly as for a certificate.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How long a certificate made by [`new_identity`] stays valid.
const VALIDITY: time::Duration = time::Duration::days(365);

/// The prefix of a KES API key.
const API_KEY_PREFIX: &str = "kes:v1:";

/// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410): this prefix, then the
/// 32 seed bytes. It lets rcgen (and ring below it) load an API key's seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The KES identity of a SubjectPublicKeyInfo: lowercase hex SHA-256 of its DER.
pub fn identity_of_spki(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// The KES identity of the certificate a client would present from a PEM (or DER) file: the
/// FIRST certificate, whose key signs the TLS handshake. The server names a client after that
/// certificate only (contract §2.1), so later certificates in the file never matter, and a CA
/// certificate in first place is an error because the server would refuse it.
pub fn identity_of_cert_pem(pem: &[u8]) -> Result<String> {
    let ders = certificates_in(pem)?;
    let first = ders
        .first()
        .ok_or_else(|| Error::Config("no certificate found".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first)
        .map_err(|e| Error::Config(format!("not a valid X.509 certificate: {e}")))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| Error::Config(format!("certificate has invalid basic constraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if is_ca {
        return Err(Error::Config(
            "the first certificate is a CA certificate (basic constraints CA:TRUE); a KES \
             client is identified by the first certificate it sends, which must not be a CA"
                .into(),
        ));
    }
    Ok(identity_of_spki(cert.public_key().raw))
}

/// The KES identity of an API key `kes:v1:<base64(0x00 ‖ 32-byte Ed25519 seed)>`.
pub fn identity_of_api_key(api_key: &str) -> Result<String> {
    let key = api_key_pair(api_key)?;
    Ok(identity_of_spki(&key.subject_public_key_info()))
}

/// Whether `s` looks like a KES API key rather than a file name.
pub fn is_api_key(s: &str) -> bool {
    s.starts_with(API_KEY_PREFIX)
}

/// The Ed25519 key pair an API key stands for.
fn api_key_pair(api_key: &str) -> Result<KeyPair> {
    let invalid = |why: &str| Error::Config(format!("invalid KES API key: {why}"));
    let encoded = api_key
        .trim()
        .strip_prefix(API_KEY_PREFIX)
        .ok_or_else(|| invalid("it must start with 'kes:v1:'"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| invalid("not base64 after 'kes:v1:'"))?;
    // Byte 0 names the key type; 0 is Ed25519, the only type KES defines.
    let seed = match raw.split_first() {
        Some((0, seed)) if seed.len() == 32 => seed,
        Some((0, _)) => return Err(invalid("an Ed25519 key must have 32 bytes")),
        _ => return Err(invalid("unknown key type")),
    };
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)
        .map_err(|e| invalid(&e.to_string()))
}

/// A freshly made client certificate and key, as PEM text.
#[derive(Debug, Clone)]
pub struct IdentityPem {
    /// The self-signed certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key. Keep it secret.
    pub key_pem: String,
    /// The certificate's KES identity.
    pub identity: String,
}

/// Extra names for a new certificate, for when it also serves TLS (nodes).
#[derive(Debug, Clone, Default)]
pub struct IdentityOptions {
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// IP address subject alternative names.
    pub ips: Vec<std::net::IpAddr>,
}

/// Makes an ECDSA P-256 self-signed client certificate, CN = `name`, valid for
/// a year, not a CA (so KES accepts it as a leaf), EKU clientAuth.
pub fn new_identity_pem(name: &str, options: &IdentityOptions) -> Result<IdentityPem> {
    let failed =
        |e: rcgen::Error| Error::Config(format!("cannot make a certificate for {name:?}: {e}"));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    // Explicit CA:FALSE: KES skips certificates that say CA when it looks for
    // the client's leaf, and some tools treat a missing extension as a CA.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    for dns in &options.dns {
        let name = dns
            .as_str()
            .try_into()
            .map_err(|_| Error::Config(format!("{dns:?} is not a valid DNS name")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(options.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack, so a server whose clock lags a little still accepts it.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + VALIDITY;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // a positive INTEGER in DER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(IdentityPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        identity: identity_of_spki(&key.subject_public_key_info()),
    })
}

/// Makes a new client identity (see [`new_identity_pem`]) and writes it to
/// `<dir>/<name>.crt` and `<dir>/<name>.key` (mode 0600), replacing files of
/// those names. Returns (certificate path, key path, identity).
pub fn new_identity(name: &str, dir: &Path) -> Result<(PathBuf, PathBuf, String)> {
    let made = new_identity_pem(name, &IdentityOptions::default())?;
    let (cert, key) = save_identity(&made, name, dir)?;
    Ok((cert, key, made.identity))
}

/// Writes `made` to `<dir>/<name>.crt` and `<dir>/<name>.key` (mode 0600),
/// replacing files of those names. Returns (certificate path, key path).
pub fn save_identity(made: &IdentityPem, name: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = identity_paths(name, dir);
    write_private(&key, made.key_pem.as_bytes())?;
    fs::write(&cert, made.cert_pem.as_bytes()).map_err(|e| Error::file("write", &cert, e))?;
    Ok((cert, key))
}

/// Where [`new_identity`] puts `name`'s certificate and key.
pub fn identity_paths(name: &str, dir: &Path) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// Writes a secret file readable only by its owner, also when it existed before
/// with wider permissions.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |e| Error::file("write", path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // `mode` applies only when the file is created; tighten an existing one.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The DER certificates in `data`: its PEM `CERTIFICATE` blocks, or `data`
/// itself when it holds no PEM at all (a DER file).
pub(crate) fn certificates_in(data: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let mut ders = Vec::new();
    for item in CertificateDer::pem_slice_iter(data) {
        ders.push(item.map_err(|e| Error::Config(format!("invalid PEM certificate: {e}")))?);
    }
    if ders.is_empty() {
        if data.first() == Some(&0x30) {
            // 0x30 = ASN.1 SEQUENCE: try it as one DER certificate.
            ders.push(CertificateDer::from(data.to_vec()));
        } else {
            return Err(Error::Config(
                "no PEM certificate (BEGIN CERTIFICATE) found".into(),
            ));
        }
    }
    Ok(ders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// SPKI hash as openssl computes it, or None when openssl is not installed.
    fn openssl_identity(cert: &Path) -> Option<String> {
        let pubkey = Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(cert)
            .output()
            .ok()?;
        assert!(pubkey.status.success(), "openssl x509 failed");
        let mut child = Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(&pubkey.stdout).ok()?;
        let der = child.wait_with_output().ok()?;
        assert!(der.status.success(), "openssl pkey failed");
        Some(identity_of_spki(&der.stdout))
    }

    fn openssl_text(cert: &Path) -> Option<String> {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(cert)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn new_identity_matches_openssl_and_is_a_client_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, id) = new_identity("app", dir.path()).unwrap();
        assert_eq!(cert, dir.path().join("app.crt"));
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let pem = fs::read(&cert).unwrap();
        assert_eq!(identity_of_cert_pem(&pem).unwrap(), id);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let Some(want) = openssl_identity(&cert) else {
            eprintln!("openssl not installed: skipping the cross-check");
            return;
        };
        assert_eq!(id, want);
        let text = openssl_text(&cert).unwrap();
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        assert!(
            text.contains("Subject: CN=app") || text.contains("Subject: CN = app"),
            "{text}"
        );
    }

    #[test]
    fn openssl_made_certificates_agree() {
        let dir = tempfile::tempdir().unwrap();
        for (name, algo) in [("ed", "ed25519"), ("rsa", "rsa:2048"), ("ec", "ec")] {
            let cert = dir.path().join(format!("{name}.crt"));
            let key = dir.path().join(format!("{name}.key"));
            let mut cmd = Command::new("openssl");
            cmd.args(["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=t"]);
            cmd.args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"]);
            cmd.arg(&key).arg("-out").arg(&cert);
            if algo == "ec" {
                cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]);
            } else {
                cmd.args(["-newkey", algo]);
            }
            let Ok(out) = cmd.output() else {
                eprintln!("openssl not installed: skipping");
                return;
            };
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = openssl_identity(&cert).unwrap();
            assert_eq!(
                identity_of_cert_pem(&fs::read(&cert).unwrap()).unwrap(),
                want,
                "{algo}"
            );
        }
    }

    #[test]
    fn only_the_first_certificate_names_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=ca", "-newkey", "ed25519",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .output();
        let Ok(out) = out else {
            eprintln!("openssl not installed: skipping");
            return;
        };
        assert!(out.status.success());
        let ca_pem = fs::read(&ca).unwrap();
        assert!(matches!(
            identity_of_cert_pem(&ca_pem),
            Err(Error::Config(_))
        ));
        // A chain of leaf + CA names the leaf.
        let leaf = new_identity_pem("leaf", &IdentityOptions::default()).unwrap();
        let mut chain = leaf.cert_pem.clone().into_bytes();
        chain.extend_from_slice(&ca_pem);
        assert_eq!(identity_of_cert_pem(&chain).unwrap(), leaf.identity);
        // The forged shape: a CA first and another client's leaf after it. The server refuses
        // such a chain, so `identity of` must not name the second certificate either.
        let victim = new_identity_pem("victim", &IdentityOptions::default()).unwrap();
        let mut forged = ca_pem.clone();
        forged.extend_from_slice(victim.cert_pem.as_bytes());
        assert!(matches!(
            identity_of_cert_pem(&forged),
            Err(Error::Config(_))
        ));
        // Two leaves: the first one names the client.
        let mut two = leaf.cert_pem.clone().into_bytes();
        two.extend_from_slice(victim.cert_pem.as_bytes());
        assert_eq!(identity_of_cert_pem(&two).unwrap(), leaf.identity);
    }

    #[test]
    fn der_input_and_garbage() {
        let leaf = new_identity_pem("d", &IdentityOptions::default()).unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        assert_eq!(identity_of_cert_pem(&der).unwrap(), leaf.identity);
        assert!(identity_of_cert_pem(b"hello").is_err());
        assert!(identity_of_cert_pem(b"").is_err());
        assert!(identity_of_cert_pem(&[0x30, 0x03, 0x01]).is_err());
    }

    /// Vectors from kes-vectors.json `api_key_identity_vectors` (kms-go apikey_test.go).
    #[test]
    fn api_key_vectors() {
        let vectors = [
            (
                "kes:v1:AGaV6VXHasF0FnaB60WdCOeTZ8eTIDikL4zlN16c8NAs",
                "ea9826089311fe44d7590408ede9150f7c637b6cab0a91ee6fe1aa5d9fb366f6",
            ),
            (
                "kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw",
                "0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb",
            ),
            (
                "kes:v1:AMxvd2uV1l5dDSRwuKZxSjuM5BDemlr+685+JAHA1TuJ",
                "ab785e3b95d80d72cc9c27cb9fde886a0bf9068a69d40e3bd08a54e68c3f2bf7",
            ),
        ];
        for (key, id) in vectors {
            assert!(is_api_key(key));
            assert_eq!(identity_of_api_key(key).unwrap(), id);
        }
        for invalid in [
            "v1:AM0F5TP43FYEShMzA42f2drFYGnBOiNx7UH4DK0nm08E",
            "kes:AM0F5TP43FYEShMzA42f2drFYGnBOiNx7UH4DK0nm08E",
            "kes:v1:sbDvZFqUPFFwxRS4EkuoEb2nyyInkdKSUEYHXFHeTouW",
        ] {
            assert!(identity_of_api_key(invalid).is_err(), "{invalid}");
        }
        assert!(identity_of_api_key("kes:v1:AAAA").is_err());
        assert!(identity_of_api_key("kes:v1:!!").is_err());
        assert!(identity_of_api_key("nope").is_err());
    }
}
