//! A small private certificate authority: the one CA of a local cluster
//! (`kes-cluster dev`) and of tests that need CA-issued server certificates.
//!
//! ```text
//!   CertificateAuthority (ECDSA P-256, CA:TRUE, path length 0)
//!     └─ issue(LeafRequest) ─▶ leaf: CA:FALSE, SAN DNS/IP, EKU serverAuth [+ clientAuth]
//! ```
//!
//! The CA signs server and node certificates only. Client identities are
//! never made by it: a KES identity is a self-signed client certificate
//! (see [`crate::identity`]), and the node CA must not be able to mint
//! certificates that peers would accept as members.
//!
//! A leaf can be re-issued over its existing private key, so a renewed
//! certificate keeps its SubjectPublicKeyInfo (what KES identities and
//! cluster membership are bound to).
//!
//! Non-features: no intermediates, no revocation, no RSA.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use crate::error::{Error, Result};
use crate::identity::certificates_in;

/// The common name of the CA that `kes-cluster dev` makes.
pub const DEV_CA_NAME: &str = "kes-cluster dev CA";

/// How long a new CA certificate is valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);

/// How long a new leaf certificate is valid.
const LEAF_VALIDITY: time::Duration = time::Duration::days(730);

/// A leaf closer than this to its end is renewed by [`renewal_reason`].
const RENEW_BEFORE: time::Duration = time::Duration::days(7);

/// A CA certificate and its private key, able to issue leaf certificates.
pub struct CertificateAuthority {
    /// What rcgen needs to sign as this CA: the subject and key identifier
    /// method must reproduce the CA certificate's exactly, or issued
    /// certificates would not chain to it.
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.params.distinguished_name)
            .finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Default)]
pub struct LeafRequest {
    /// Subject common name, e.g. `node1`.
    pub common_name: String,
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// IP address subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Also allow TLS client authentication (EKU clientAuth), for node
    /// certificates that both serve and dial peers.
    pub client_auth: bool,
}

/// A certificate and its private key, as PEM text.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key. Keep it secret.
    pub key_pem: String,
}

impl CertificateAuthority {
    /// Makes a new ECDSA P-256 CA named `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed("a CA key"))?;
        let mut params = ca_params(name);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(failed("the CA certificate"))?;
        Ok(CertificateAuthority {
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// Loads a CA made by [`CertificateAuthority::new`] from its PEM files.
    ///
    /// The key must belong to the certificate, and the certificate must be a
    /// CA whose subject is a lone common name (what `new` makes): rcgen signs
    /// with a subject rebuilt from that name, so any other subject would yield
    /// certificates that do not chain.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let ders = certificates_in(cert_pem.as_bytes())?;
        let der = ders
            .first()
            .ok_or_else(|| Error::Config("no CA certificate found".into()))?;
        let cert = parse(der)?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| Error::Config(format!("the CA key cannot be read: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(Error::Config(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(Error::Config(
                "the CA certificate is not a CA (basic constraints CA:TRUE missing)".into(),
            ));
        }
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let params = ca_params(&name);
        // Sign a throwaway certificate to learn how rcgen encodes this subject.
        let probe = params
            .self_signed(&key)
            .map_err(failed("a test certificate"))?;
        let probe = parse(probe.der())?;
        if probe.subject().as_raw() != cert.subject().as_raw() {
            return Err(Error::Config(format!(
                "the CA certificate's subject '{}' is not one kes-cluster made, so it cannot issue \
                 certificates that chain to it: issue the certificates with the tool that made the CA",
                cert.subject()
            )));
        }
        Ok(CertificateAuthority {
            params,
            key,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate (PEM): what clients and peers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM). Keep it secret.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a leaf certificate for `request`, valid for two years.
    ///
    /// With `key_pem` the certificate is made for that existing key (a
    /// renewal keeps the identity); without it a new ECDSA P-256 key is made.
    pub fn issue(&self, request: &LeafRequest, key_pem: Option<&str>) -> Result<IssuedPem> {
        let key = match key_pem {
            Some(pem) => KeyPair::from_pem(pem)
                .map_err(|e| Error::Config(format!("the private key cannot be read: {e}")))?,
            None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed("a key"))?,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if request.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        for dns in &request.dns {
            let name = dns
                .as_str()
                .try_into()
                .map_err(|_| Error::Config(format!("{dns:?} is not a valid DNS name")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .extend(request.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        // Lets verifiers pick the right CA certificate when several share a name.
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(failed(&format!(
            "a certificate for {:?}",
            request.common_name
        )))?;
        Ok(IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Whether `key_pem` holds a private key that [`CertificateAuthority::issue`]
/// can issue a certificate for.
pub fn key_is_usable(key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok()
}

/// Why an existing leaf certificate should be issued again, or `None` when it
/// can be kept: it must parse, belong to its key, chain to `ca_cert_pem` by
/// name, and stay valid for at least another week.
pub fn renewal_reason(cert_pem: &[u8], key_pem: &[u8], ca_cert_pem: &[u8]) -> Option<String> {
    let ders = match certificates_in(cert_pem) {
        Ok(ders) => ders,
        Err(e) => return Some(format!("it cannot be read ({e})")),
    };
    let Some(cert) = ders.first().and_then(|der| parse(der).ok()) else {
        return Some("it is not a valid X.509 certificate".into());
    };
    let key = match std::str::from_utf8(key_pem)
        .ok()
        .and_then(|pem| KeyPair::from_pem(pem).ok())
    {
        Some(key) => key,
        None => return Some("its private key cannot be read".into()),
    };
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Some("it does not belong to its private key".into());
    }
    let ca_der = certificates_in(ca_cert_pem)
        .ok()
        .and_then(|ders| ders.into_iter().next());
    let Some(ca) = ca_der.as_deref().and_then(|der| parse(der).ok()) else {
        return Some("the CA certificate cannot be read".into());
    };
    // Names alone do not tell two CAs of the same name apart; key identifiers do.
    let same_key = match (authority_key_id(&cert), subject_key_id(&ca)) {
        (Some(aki), Some(ski)) => aki == ski,
        _ => true,
    };
    if ca.subject().as_raw() != cert.issuer().as_raw() || !same_key {
        return Some("it was not issued by the current CA".into());
    }
    let not_after = cert.validity().not_after.to_datetime();
    if not_after < time::OffsetDateTime::now_utc() + RENEW_BEFORE {
        return Some(format!("it expires on {}", not_after.date()));
    }
    None
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

/// The parameters that describe a CA named `name`, minus validity and serial.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    // Path length 0: this CA signs leaves, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::Config(format!("not a valid X.509 certificate: {e}")))
}

fn random_serial() -> SerialNumber {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // a positive INTEGER in DER
    SerialNumber::from_slice(&serial)
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Config(format!("cannot make {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_request() -> LeafRequest {
        LeafRequest {
            common_name: "node1".into(),
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            client_auth: true,
        }
    }

    /// openssl's view of a certificate, or None when openssl is not installed.
    fn openssl(args: &[&str], files: &[(&str, &str)]) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .ok()?;
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    #[test]
    fn issued_leaves_chain_to_a_reloaded_ca() {
        let made = CertificateAuthority::new(DEV_CA_NAME).unwrap();
        // Reloading from PEM must sign exactly like the original.
        let ca = CertificateAuthority::load(made.cert_pem(), &made.key_pem()).unwrap();
        let leaf = ca.issue(&node_request(), None).unwrap();
        assert_eq!(
            renewal_reason(
                leaf.cert_pem.as_bytes(),
                leaf.key_pem.as_bytes(),
                ca.cert_pem().as_bytes()
            ),
            None
        );
        let Some(verify) = openssl(
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslserver",
                "leaf.crt",
            ],
            &[("ca.crt", made.cert_pem()), ("leaf.crt", &leaf.cert_pem)],
        ) else {
            eprintln!("openssl not installed: skipping the cross-check");
            return;
        };
        assert!(verify.contains("leaf.crt: OK"), "{verify}");
        let text = openssl(
            &["x509", "-noout", "-text", "-in", "leaf.crt"],
            &[("leaf.crt", &leaf.cert_pem)],
        )
        .unwrap();
        for want in [
            "CA:FALSE",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "DNS:localhost",
            "IP Address:127.0.0.1",
            "kes-cluster dev CA",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        let ca_text = openssl(
            &["x509", "-noout", "-text", "-in", "ca.crt"],
            &[("ca.crt", made.cert_pem())],
        )
        .unwrap();
        assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    }

    #[test]
    fn renewal_keeps_the_key_and_notices_problems() {
        let ca = CertificateAuthority::new(DEV_CA_NAME).unwrap();
        let first = ca.issue(&node_request(), None).unwrap();
        let renewed = ca.issue(&node_request(), Some(&first.key_pem)).unwrap();
        assert_eq!(renewed.key_pem, first.key_pem);
        assert_ne!(renewed.cert_pem, first.cert_pem);

        let ca_pem = ca.cert_pem().as_bytes();
        let other = ca.issue(&node_request(), None).unwrap();
        let reason = |cert: &str, key: &str, ca: &[u8]| {
            renewal_reason(cert.as_bytes(), key.as_bytes(), ca).unwrap_or_default()
        };
        assert!(reason(&first.cert_pem, &other.key_pem, ca_pem).contains("does not belong"));
        assert!(reason("junk", &first.key_pem, ca_pem).contains("cannot be read"));
        assert!(reason(&first.cert_pem, "junk", ca_pem).contains("private key"));
        // A new CA, even one of the same name, did not issue it.
        for name in [DEV_CA_NAME, "another CA"] {
            let new_ca = CertificateAuthority::new(name).unwrap();
            let why = reason(
                &first.cert_pem,
                &first.key_pem,
                new_ca.cert_pem().as_bytes(),
            );
            assert!(
                why.contains("not issued by the current CA"),
                "{name}: {why}"
            );
        }
    }

    #[test]
    fn foreign_or_mismatched_cas_are_refused() {
        let ca = CertificateAuthority::new(DEV_CA_NAME).unwrap();
        let other = CertificateAuthority::new(DEV_CA_NAME).unwrap();
        let err = CertificateAuthority::load(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let leaf = ca.issue(&node_request(), None).unwrap();
        let err = CertificateAuthority::load(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        assert!(CertificateAuthority::load("junk", &ca.key_pem()).is_err());
        assert!(CertificateAuthority::load(ca.cert_pem(), "junk").is_err());
    }
}
