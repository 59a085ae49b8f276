//! Attack: become the admin by sending [a CA certificate over the attacker's own key, a
//! made-up leaf carrying the admin's public key]. The handshake signature verifies against the
//! first certificate; upstream KES then skipped CA certificates and named the caller after the
//! second. The identity must come from the first certificate only.

use crate::support::*;
use kes_cluster::Method;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// A public key the attacker only knows from a certificate: enough to put it in another one.
struct KnownPublicKey {
    bits: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for KnownPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

fn public_key_of(cert_pem: &[u8]) -> KnownPublicKey {
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let spki = cert.public_key();
    let alg = match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.3.101.112" => &rcgen::PKCS_ED25519,
        "1.2.840.10045.2.1" => &rcgen::PKCS_ECDSA_P256_SHA256,
        other => panic!("victim key algorithm {other} not covered by this test"),
    };
    KnownPublicKey {
        bits: spki.subject_public_key.data.to_vec(),
        alg,
    }
}

/// The attacker's files: a chain file and the attacker's own private key.
struct Attack {
    chain: PathBuf,
    key: PathBuf,
}

/// Writes `certs` (PEM, in order) as one chain file, with the attacker's key.
fn write_chain(dir: &Path, name: &str, certs: &[String], key: &rcgen::KeyPair) -> Attack {
    let chain = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&chain, certs.concat()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Attack {
        chain,
        key: key_path,
    }
}

/// [CA over the attacker's key, non-CA leaf carrying the victim's public key].
fn forged_chain(dir: &Path, victim_cert_pem: &[u8]) -> Attack {
    let attacker = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.clone().self_signed(&attacker).unwrap();
    let issuer = rcgen::Issuer::new(ca, &attacker);
    let leaf = rcgen::CertificateParams::new(vec!["victim".into()])
        .unwrap()
        .signed_by(&public_key_of(victim_cert_pem), &issuer)
        .unwrap();
    write_chain(dir, "forged", &[ca_cert.pem(), leaf.pem()], &attacker)
}

/// Runs curl with the attacker's chain over `http` ("--http1.1" or "--http2") and returns
/// (status, body).
fn curl(n: &TestNode, a: &Attack, http: &str, method: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", http, "-X", method, "-w", "\n%{http_code}", "--cert"])
        .arg(&a.chain)
        .arg("--key")
        .arg(&a.key)
        .arg(format!("{}{path}", n.url))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test]
async fn a_forged_chain_carrying_the_admins_key_is_not_the_admin() {
    let n = TestNode::dev().await;
    let admin = n.admin();
    assert_eq!(
        call(&admin, Method::POST, "/v1/key/create/precious", "")
            .await
            .status,
        200
    );
    let victim = std::fs::read(n.file("admin.crt")).unwrap();
    let a = forged_chain(n.dir.path(), &victim);
    // Sanity: the made-up leaf really names the admin, so the attack is the real one.
    let second = std::fs::read_to_string(&a.chain).unwrap();
    let leaf_pem = &second[second.rfind("-----BEGIN").unwrap()..];
    assert_eq!(
        kes_cluster::identity_of_cert_pem(leaf_pem.as_bytes()).unwrap(),
        kes_cluster::identity_of_cert_pem(&victim).unwrap()
    );

    let attacker = n.client_with(Some(&a.chain), Some(&a.key));
    let r = call(&attacker, Method::GET, "/v1/identity/self/describe", "").await;
    assert_error(&r, 400, "tls: client certificate is required");
    let r = call(&attacker, Method::DELETE, "/v1/key/delete/precious", "").await;
    assert_error(&r, 400, "tls: client certificate is required");
    for http in ["--http1.1", "--http2"] {
        let (code, body) = curl(&n, &a, http, "GET", "/v1/identity/self/describe");
        assert_eq!(code, 400, "{http}: {body}");
        assert!(!body.contains("\"admin\":true"), "{http}: {body}");
        let (code, body) = curl(&n, &a, http, "DELETE", "/v1/key/delete/precious");
        assert_eq!(code, 400, "{http}: {body}");
    }
    assert_eq!(
        call(&admin, Method::GET, "/v1/key/describe/precious", "")
            .await
            .status,
        200,
        "the admin's key survives"
    );
}

#[tokio::test]
async fn certificates_after_the_first_never_change_who_the_caller_is() {
    let n = TestNode::dev().await;
    let victim = std::fs::read(n.file("admin.crt")).unwrap();
    let forged = forged_chain(n.dir.path(), &victim);
    let forged_text = std::fs::read_to_string(&forged.chain).unwrap();
    let forged_leaf = forged_text[forged_text.rfind("-----BEGIN").unwrap()..].to_owned();
    // The attacker's own leaf first, the admin's real certificate and the forged one after.
    let me = rcgen::KeyPair::generate().unwrap();
    let mine = rcgen::CertificateParams::new(vec!["me".into()])
        .unwrap()
        .self_signed(&me)
        .unwrap();
    let a = write_chain(
        n.dir.path(),
        "tail",
        &[mine.pem(), String::from_utf8(victim).unwrap(), forged_leaf],
        &me,
    );
    let my_id = kes_cluster::identity_of_cert_pem(mine.pem().as_bytes()).unwrap();
    let client = n.client_with(Some(&a.chain), Some(&a.key));
    let who = json(&call(&client, Method::GET, "/v1/identity/self/describe", "").await);
    assert_eq!(who["identity"], my_id.as_str());
    assert_ne!(who["admin"], true);
    assert_eq!(
        call(&client, Method::GET, "/v1/key/list/*", "")
            .await
            .status,
        403
    );
    for http in ["--http1.1", "--http2"] {
        let (code, body) = curl(&n, &a, http, "GET", "/v1/identity/self/describe");
        assert_eq!(code, 200, "{http}: {body}");
        assert!(body.contains(&my_id), "{http}: {body}");
    }
}

#[tokio::test]
async fn with_tls_auth_on_the_first_certificate_still_names_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.clone().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key)
    };
    let (admin_pem, admin_key) = leaf("admin");
    let (tenant_pem, tenant_key) = leaf("tenant");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let config = dir.path().join("auth-on.yml");
    std::fs::write(
        &config,
        format!("tls:\n  auth: on\n  ca: {}\n", ca_path.display()),
    )
    .unwrap();
    let admin_id = kes_cluster::identity_of_cert_pem(admin_pem.as_bytes()).unwrap();
    let tenant_id = kes_cluster::identity_of_cert_pem(tenant_pem.as_bytes()).unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let args = vec![
        "--dev".into(),
        "--config".into(),
        config.display().to_string(),
        "--root".into(),
        admin_id.clone(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    let mut n = TestNode::with_args(dir, data, port, args);
    n.spawn();
    let admin_files = write_chain(
        n.dir.path(),
        "admin",
        std::slice::from_ref(&admin_pem),
        &admin_key,
    );
    let admin = n.client_with(Some(&admin_files.chain), Some(&admin_files.key));
    let t0 = std::time::Instant::now();
    loop {
        match admin.request(Method::GET, "/v1/ready", &[], "").await {
            Ok(r) if r.status == 200 => break,
            _ if t0.elapsed() > std::time::Duration::from_secs(30) => {
                panic!("never ready:\n{}", n.log())
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    // A CA-signed tenant that appends the admin's real certificate stays the tenant.
    let a = write_chain(
        n.dir.path(),
        "tenant",
        &[tenant_pem, admin_pem],
        &tenant_key,
    );
    let tenant = n.client_with(Some(&a.chain), Some(&a.key));
    let who = json(&call(&tenant, Method::GET, "/v1/identity/self/describe", "").await);
    assert_eq!(who["identity"], tenant_id.as_str());
    assert_ne!(who["admin"], true);
    for http in ["--http1.1", "--http2"] {
        let (code, body) = curl(&n, &a, http, "GET", "/v1/identity/self/describe");
        assert_eq!(code, 200, "{http}: {body}");
        assert!(
            body.contains(&tenant_id) && !body.contains("\"admin\":true"),
            "{http}: {body}"
        );
        let (code, body) = curl(&n, &a, http, "POST", "/v1/key/create/x");
        assert_eq!(code, 403, "{http}: {body}");
    }
}
