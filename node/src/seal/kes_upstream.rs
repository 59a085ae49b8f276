//! The `kes` root key: a key on an upstream KES server (MinIO KES, or another kes-cluster)
//! wraps the cluster key through the standard KES encrypt and decrypt routes.
//!
//! ```text
//!  wrap(cluster key, aad)  ──mTLS──▶ POST /v1/key/encrypt/<key_name>
//!                                     {"plaintext": b64(cluster key), "context": b64(aad)}
//!                          ◀──────── {"ciphertext": ...}            = the wrapped copy
//!  unwrap(wrapped, aad)    ──mTLS──▶ POST /v1/key/decrypt/<key_name>
//!                                     {"ciphertext": b64(wrapped), "context": b64(aad)}
//!                          ◀──────── {"plaintext": ...}             = exactly 32 bytes
//! ```
//!
//! The root key never leaves the upstream. KES binds `context` as AEAD associated data, so a
//! wrapped copy opens only with the `aad` it was made with, and the upstream's policy decides
//! who may use the key: revoking our identity's policy, or deleting the key, seals every node
//! at its next re-check.
//!
//! How answers map onto [`ProviderError`], which the unseal loop treats differently:
//!
//! | upstream answer                                    | error         |
//! |----------------------------------------------------|---------------|
//! | 400 (`ciphertext is not authentic`), 403, 404, other 4xx; a plaintext that is not 32 bytes | `Refused` |
//! | 401; TLS handshake refused over our client certificate | `Auth` |
//! | connection refused or broken, no answer within 10 s, 408, 429, 5xx (503 `sealed`), a 2xx that is not a KES answer | `Unreachable` |
//! | cert/key/CA files missing or unusable, bad key name; the upstream's certificate not trusted by `ca` | `Config` |
//!
//! Non-features: no retries and no caching here; the unseal loop retries with backoff and the
//! node keeps the unsealed keys. Key material is never logged or put into an error, and the
//! buffers this module owns that hold the cluster key are zeroized. The HTTP stack's own
//! buffers (hyper's read buffer, rustls records) are outside our reach and may keep a copy
//! until they are reused or freed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kes_cluster::{Client, ClientConfig, Method};
use zeroize::{Zeroize, Zeroizing};

use super::provider::{ProviderError, ProviderFuture, RootKeyProvider};
use crate::config::is_valid_name;

/// How long one encrypt or decrypt may take, connecting included. The unseal loop retries, so a
/// hung upstream must turn into `Unreachable` well before the loop's next attempt is due.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Longest upstream message quoted in an error, so a misbehaving server cannot flood the log.
const MAX_MESSAGE: usize = 200;

/// A root key held by an upstream KES server, used over mTLS with a client certificate.
#[derive(Clone)]
pub struct KesRootKey {
    client: Client,
    /// `https://host:port`, the form the client normalised the configured endpoint to, so that
    /// `https://kes:7373/` and `kes:7373` give the same seal id.
    endpoint: String,
    key_name: String,
    /// For messages: which certificate the upstream refused, which CA did not fit.
    cert: PathBuf,
    ca: Option<PathBuf>,
}

// By hand, so that the client's internals never reach a log line.
impl std::fmt::Debug for KesRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KesRootKey")
            .field("endpoint", &self.endpoint)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl KesRootKey {
    /// Loads the client certificate, its key and the CA (`None`: the public web roots) and
    /// checks the key name. Nothing is sent until the first wrap or unwrap, so a node can be
    /// configured while the upstream is down.
    pub fn new(
        endpoint: &str,
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        key_name: &str,
    ) -> Result<Self, ProviderError> {
        if !is_valid_name(key_name) {
            return Err(ProviderError::Config(format!(
                "kes seal: '{key_name}' is not a valid KES key name; use A-Z, a-z, 0-9, '-' and '_'"
            )));
        }
        // The client reports unreadable files as I/O errors; for a provider they are all
        // configuration to fix, never something a retry could cure.
        let client = Client::new(&ClientConfig {
            server: endpoint.to_owned(),
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
            ca: ca.map(PathBuf::from),
            insecure: false,
        })
        .map_err(|e| ProviderError::Config(format!("kes seal for {endpoint}: {e}")))?
        .with_timeout(TIMEOUT);
        Ok(KesRootKey {
            endpoint: client.server().to_owned(),
            client,
            key_name: key_name.to_owned(),
            cert: cert.to_owned(),
            ca: ca.map(PathBuf::from),
        })
    }

    /// The seal id a `kes` provider with this endpoint and key name has, also when it could not
    /// be built (e.g. its certificate file is missing): `kes:https://host:port/<key_name>`.
    /// The endpoint is normalised as the client does it, so `kes:7373` and `https://kes:7373/`
    /// name the same seal; an endpoint that does not parse is kept as written.
    pub fn id_for(endpoint: &str, key_name: &str) -> String {
        let endpoint = kes_cluster::client::server_url(endpoint)
            .unwrap_or_else(|_| endpoint.trim_end_matches('/').to_owned());
        format!("kes:{endpoint}/{key_name}")
    }

    /// The upstream as `https://host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The name of the upstream key that wraps the cluster key.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// POSTs `body` to `/v1/key/<op>/<key_name>` and returns the 2xx body.
    async fn call(&self, op: Op, body: Bytes) -> Result<Bytes, ProviderError> {
        // The key name was checked in `new`, so it is a single safe path segment as it is.
        let path = format!("/v1/key/{}/{}", op.route(), self.key_name);
        let response = self
            .client
            .request(
                Method::POST,
                &path,
                &[("content-type", "application/json")],
                body,
            )
            .await
            .map_err(|e| self.transport_error(op, e))?;
        if !response.is_success() {
            return Err(self.api_error(op, response.api_error()));
        }
        Ok(response.body)
    }

    fn who(&self) -> String {
        format!("upstream KES {} (key '{}')", self.endpoint, self.key_name)
    }

    /// A non-2xx answer: the upstream is there and has decided.
    fn api_error(&self, op: Op, err: kes_cluster::Error) -> ProviderError {
        let kes_cluster::Error::Api { status, message } = err else {
            return self.transport_error(op, err);
        };
        let message = shorten(&message);
        let who = self.who();
        let what = op.route();
        match status {
            400 if op == Op::Decrypt => ProviderError::Refused(format!(
                "{who} refused to decrypt ({message}): this wrapped copy was made under another \
                 key or another cluster, or it was altered"
            )),
            401 => ProviderError::Auth(format!(
                "{who} did not accept our credentials ({status} {message}); check the seal's \
                 client certificate and key"
            )),
            403 => ProviderError::Refused(format!(
                "{who} refused the {what} ({status} {message}): give our client identity a \
                 policy that allows /v1/key/encrypt/{k} and /v1/key/decrypt/{k}",
                k = self.key_name
            )),
            404 => ProviderError::Refused(format!(
                "{who}: {message} ({status}); the key was deleted upstream, or key_name is wrong"
            )),
            // Overload, a request timeout and server errors (a sealed kes-cluster answers 503)
            // pass; the offline grace covers them.
            408 | 429 | 500..=599 => ProviderError::Unreachable(format!(
                "{who} failed the {what} with {status} {message}; will try again"
            )),
            _ => {
                ProviderError::Refused(format!("{who} refused the {what} with {status} {message}"))
            }
        }
    }

    /// Everything that is not an answer from the upstream's API.
    fn transport_error(&self, op: Op, err: kes_cluster::Error) -> ProviderError {
        use kes_cluster::Error as E;
        let what = op.route();
        match err {
            E::Api { .. } => self.api_error(op, err),
            // The client's own advice names its CLI flags and variables, which mean nothing in
            // a node's config, so the two cases that need a person get a sentence of ours.
            E::Tls { ref reason, .. } => match tls_failure(reason) {
                TlsFailure::ClientCertRefused => ProviderError::Auth(format!(
                    "upstream KES {} refused the seal's client certificate {} in the TLS \
                     handshake: the upstream must trust the CA that issued it (with tls.auth \
                     on, its tls.ca), or the seal's `cert` and `key` must name another identity",
                    self.endpoint,
                    self.cert.display()
                )),
                TlsFailure::ServerNotTrusted => ProviderError::Config(format!(
                    "the certificate of upstream KES {} is not trusted with {}: set the kes \
                     seal's `ca` to the CA that issued it, or to the upstream's own certificate \
                     when it is self-signed",
                    self.endpoint,
                    match &self.ca {
                        Some(ca) => format!("ca {}", ca.display()),
                        None => "the public web roots (no `ca` is set)".to_owned(),
                    }
                )),
                TlsFailure::Other => {
                    ProviderError::Unreachable(format!("{what} through {}: {err}", self.who()))
                }
            },
            E::Connect { .. } | E::Io { .. } | E::Timeout { .. } => {
                ProviderError::Unreachable(format!("{what} through {}: {err}", self.who()))
            }
            // The client's protocol errors may quote the body, which for a decrypt holds the
            // cluster key; say only what happened.
            E::Protocol(_) => ProviderError::Unreachable(format!(
                "{} sent an answer to {what} that is not HTTP the KES API speaks",
                self.who()
            )),
            E::Config(m) => ProviderError::Config(format!("kes seal for {}: {m}", self.endpoint)),
        }
    }
}

impl RootKeyProvider for KesRootKey {
    fn id(&self) -> String {
        KesRootKey::id_for(&self.endpoint, &self.key_name)
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let body = self
                .call(Op::Encrypt, json_body("plaintext", plaintext, aad))
                .await?;
            parse_ciphertext(&body).map_err(|why| {
                ProviderError::Unreachable(format!("{} answered an encrypt {why}", self.who()))
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        Box::pin(async move {
            let body = self
                .call(Op::Decrypt, json_body("ciphertext", wrapped, aad))
                .await?;
            let key = parse_plaintext(&body).map_err(|e| match e {
                PlaintextError::NotKes(why) => {
                    ProviderError::Unreachable(format!("{} answered a decrypt {why}", self.who()))
                }
                PlaintextError::Length(why) => ProviderError::Refused(format!(
                    "{} decrypted this wrapped copy to {why}, not the 32-byte cluster key; it \
                     was not made by this seal",
                    self.who()
                )),
            });
            wipe(body);
            key
        })
    }
}

/// The two routes this provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Encrypt,
    Decrypt,
}

impl Op {
    fn route(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
        }
    }
}

/// What a TLS failure means for the unseal loop.
#[derive(Debug, PartialEq, Eq)]
enum TlsFailure {
    /// The upstream would not take our client certificate: never retried automatically.
    ClientCertRefused,
    /// We do not trust the upstream's certificate: the `ca` setting is wrong.
    ServerNotTrusted,
    /// Anything else (a reset mid-handshake, a protocol mismatch).
    Other,
}

/// Reads the client's TLS advice. `kes_cluster` reports a TLS failure as a sentence, not a
/// kind, so the sentences it writes (cluster-cli/src/client/tls.rs, `explain`) are matched
/// here; the integration tests pin both cases against a real upstream.
fn tls_failure(reason: &str) -> TlsFailure {
    if reason.contains("refused the client certificate")
        || reason.contains("requires a client certificate")
    {
        TlsFailure::ClientCertRefused
    } else if reason.starts_with("the server's certificate")
        || reason.starts_with("the server presents")
    {
        TlsFailure::ServerNotTrusted
    } else {
        TlsFailure::Other
    }
}

/// `{"<field>":"<b64 value>","context":"<b64 aad>"}`, written into one buffer of the exact size
/// and zeroized when the last reference to the body is dropped. serde_json would grow its
/// buffer and leave unzeroized copies of the cluster key behind. Base64 needs no JSON
/// escaping. An empty `aad` is left out, as the KES SDK does; KES reads a missing context as
/// empty.
fn json_body(field: &'static str, value: &[u8], aad: &[u8]) -> Bytes {
    let size = 2 + field.len() + 3 + b64_len(value.len()) + 1 + 13 + b64_len(aad.len()) + 1 + 1;
    let mut body = Zeroizing::new(Vec::with_capacity(size));
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(field.as_bytes());
    body.extend_from_slice(b"\":\"");
    push_b64(&mut body, value);
    body.push(b'"');
    if !aad.is_empty() {
        body.extend_from_slice(b",\"context\":\"");
        push_b64(&mut body, aad);
        body.push(b'"');
    }
    body.push(b'}');
    Bytes::from_owner(body)
}

fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn push_b64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.resize(start + b64_len(data.len()), 0);
    // The slice has exactly the padded length, so encoding cannot run out of room.
    let written = STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("output sized to the padded base64 length");
    debug_assert_eq!(written, b64_len(data.len()));
}

/// The `ciphertext` of an encrypt answer. The error says what was wrong, never what was sent.
fn parse_ciphertext(body: &[u8]) -> Result<Vec<u8>, &'static str> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        ciphertext: Cow<'a, str>,
    }
    let answer: Answer<'_> =
        serde_json::from_slice(body).map_err(|_| "without a JSON `ciphertext` field")?;
    let ciphertext = STANDARD
        .decode(answer.ciphertext.trim())
        .map_err(|_| "with a `ciphertext` that is not base64")?;
    if ciphertext.is_empty() {
        return Err("with an empty `ciphertext`");
    }
    Ok(ciphertext)
}

/// Why a decrypt answer gave no cluster key.
#[derive(Debug, PartialEq, Eq)]
enum PlaintextError {
    /// Not a KES decrypt answer at all.
    NotKes(&'static str),
    /// A plaintext of the wrong size: the upstream opened something that is not our copy.
    Length(&'static str),
}

/// The `plaintext` of a decrypt answer, which must be exactly 32 bytes. Decoded straight into
/// a zeroized array; the error says what was wrong, never what was received.
fn parse_plaintext(body: &[u8]) -> Result<Zeroizing<[u8; 32]>, PlaintextError> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        plaintext: Cow<'a, str>,
    }
    let answer: Answer<'_> = serde_json::from_slice(body)
        .map_err(|_| PlaintextError::NotKes("without a JSON `plaintext` field"))?;
    // 48 bytes take any base64 text of up to 64 characters, so a 33-byte answer is measured
    // and refused instead of failing as "too long to decode".
    let mut buf = Zeroizing::new([0u8; 48]);
    let decoded = STANDARD.decode_slice(answer.plaintext.trim(), buf.as_mut());
    // A JSON escape inside the string makes serde copy it; that copy holds the key too.
    if let Cow::Owned(mut copy) = answer.plaintext {
        copy.zeroize();
    }
    match decoded {
        Ok(32) => {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&buf[..32]);
            Ok(key)
        }
        Ok(0) => Err(PlaintextError::Length("nothing")),
        Ok(_) => Err(PlaintextError::Length("fewer or more bytes")),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            Err(PlaintextError::Length("more than 48 bytes"))
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(PlaintextError::NotKes(
            "with a `plaintext` that is not base64",
        )),
    }
}

/// Zeroizes a response body when this is its only reference; the client may share it with a
/// buffer we cannot reach, and then there is nothing to do.
fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

/// At most [`MAX_MESSAGE`] characters of an upstream message, cut on a character boundary.
fn shorten(message: &str) -> Cow<'_, str> {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &message[..cut])),
        None => Cow::Borrowed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SealProvider};

    fn identity(dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key, _) = kes_cluster::new_identity("seal", dir).expect("identity");
        (cert, key)
    }

    #[test]
    fn new_checks_files_and_key_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = identity(dir.path());
        let missing = dir.path().join("missing.crt");
        let e = KesRootKey::new("https://127.0.0.1:7373", &missing, &key, None, "root")
            .expect_err("missing certificate");
        assert!(
            matches!(&e, ProviderError::Config(m) if m.contains("missing.crt")),
            "{e:?}"
        );
        let e = KesRootKey::new(
            "https://127.0.0.1:7373",
            &cert,
            &key,
            Some(&missing),
            "root",
        )
        .expect_err("missing CA");
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
        let e = KesRootKey::new("https://127.0.0.1:7373", &cert, &key, None, "a/b")
            .expect_err("bad name");
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
        let e = KesRootKey::new("ftp://x", &cert, &key, None, "root").expect_err("bad endpoint");
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
    }

    #[test]
    fn id_uses_the_normalised_endpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = identity(dir.path());
        let p = KesRootKey::new(
            "https://kes.example.net:7373/",
            &cert,
            &key,
            None,
            "root-key",
        )
        .expect("provider");
        assert_eq!(p.id(), "kes:https://kes.example.net:7373/root-key");
        for spelling in ["kes.example.net:7373", "https://kes.example.net:7373"] {
            assert_eq!(KesRootKey::id_for(spelling, "root-key"), p.id());
        }
        assert_eq!(format!("{p:?}").matches("kes.example.net").count(), 1);
    }

    #[tokio::test]
    async fn nobody_listening_is_unreachable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = identity(dir.path());
        // Bind and drop: the port was free a moment ago and nothing listens on it now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let p = KesRootKey::new(&format!("https://127.0.0.1:{port}"), &cert, &key, None, "k")
            .expect("provider");
        let e = p.wrap(&[1; 32], b"aad").await.expect_err("nobody there");
        assert!(matches!(e, ProviderError::Unreachable(_)), "{e:?}");
        let e = p.unwrap(&[1; 60], b"aad").await.expect_err("nobody there");
        assert!(matches!(e, ProviderError::Unreachable(_)), "{e:?}");
    }

    #[test]
    fn request_bodies_are_the_kes_json() {
        let body = json_body("plaintext", &[7u8; 32], b"cluster-1");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["plaintext"], STANDARD.encode([7u8; 32]));
        assert_eq!(v["context"], STANDARD.encode(b"cluster-1"));
        let body = json_body("ciphertext", &[1, 2, 3, 4], b"");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({ "ciphertext": STANDARD.encode([1, 2, 3, 4]) })
        );
    }

    #[test]
    fn decrypt_answers_must_hold_exactly_32_bytes() {
        let answer = |bytes: &[u8]| format!(r#"{{"plaintext":"{}"}}"#, STANDARD.encode(bytes));
        let key = parse_plaintext(answer(&[9; 32]).as_bytes()).expect("32 bytes");
        assert_eq!(*key, [9; 32]);
        // serde copies an escaped string; the copy must decode the same.
        let escaped = answer(&[0xff; 32]).replace('/', "\\/");
        assert!(escaped.contains("\\/"));
        assert_eq!(
            *parse_plaintext(escaped.as_bytes()).expect("escaped"),
            [0xff; 32]
        );
        for wrong in [&[9u8; 31][..], &[9; 33], &[9; 64], &[]] {
            let e = parse_plaintext(answer(wrong).as_bytes()).expect_err("wrong length");
            assert!(
                matches!(e, PlaintextError::Length(_)),
                "{} bytes: {e:?}",
                wrong.len()
            );
        }
        for garbage in [
            &b"not json"[..],
            br#"{"plaintext":"***"}"#,
            br#"{"ciphertext":"AA=="}"#,
        ] {
            let e = parse_plaintext(garbage).expect_err("garbage");
            assert!(matches!(e, PlaintextError::NotKes(_)), "{e:?}");
        }
    }

    #[test]
    fn encrypt_answers_need_a_ciphertext() {
        let ok = format!(r#"{{"ciphertext":"{}"}}"#, STANDARD.encode(b"sealed"));
        assert_eq!(parse_ciphertext(ok.as_bytes()).expect("ok"), b"sealed");
        assert!(parse_ciphertext(br#"{"ciphertext":""}"#).is_err());
        assert!(parse_ciphertext(br#"{"ciphertext":"!"}"#).is_err());
        assert!(parse_ciphertext(b"{}").is_err());
    }

    #[test]
    fn tls_advice_is_classified() {
        // The sentences kes_cluster writes for the two cases that are not transient.
        let refused = "the server refused the client certificate (BadCertificate); check that \
                       KES_CLIENT_CERT and KES_CLIENT_KEY name the right files";
        assert_eq!(tls_failure(refused), TlsFailure::ClientCertRefused);
        let untrusted = "the server's certificate is not issued by a trusted CA: point KES_CA";
        assert_eq!(tls_failure(untrusted), TlsFailure::ServerNotTrusted);
        assert_eq!(tls_failure("peer sent no certificates"), TlsFailure::Other);
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(500);
        assert_eq!(shorten(&long).chars().count(), MAX_MESSAGE + 3);
    }

    /// The example configs and the variables they need.
    fn examples() -> [(&'static str, Vec<(&'static str, &'static str)>); 2] {
        let vars = vec![
            (
                "KES_ADMIN_IDENTITY",
                "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22",
            ),
            (
                "MINIO_IDENTITY",
                "df7281ca3fed4ef7d06297eb7cb9d590a4edc863b4425f4762bb2afaebfd3258",
            ),
        ];
        [("file.yaml", vars.clone()), ("kes.yaml", vars)]
    }

    fn example_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples")
            .join(name)
    }

    fn check_example(name: &str, config: &Config) {
        assert_eq!(config.admin_identity.as_deref(), Some(examples()[0].1[0].1));
        let minio = &config.policies["minio"];
        assert_eq!(minio.identities, [examples()[0].1[1].1]);
        assert!(config.cluster.join.is_empty() && !config.cluster.bootstrap);
        let [provider] = config.seal.providers.as_slice() else {
            panic!("{name}: one seal provider expected: {:?}", config.seal);
        };
        match (name, provider) {
            ("file.yaml", SealProvider::File { path }) => {
                assert_eq!(path, Path::new("/etc/kes/root.key"));
            }
            (
                "kes.yaml",
                SealProvider::Kes {
                    endpoint, key_name, ..
                },
            ) => {
                assert_eq!(endpoint, "https://kes.example.net:7373");
                assert_eq!(key_name, "kes-cluster-root");
                assert_eq!(config.seal.recheck, Duration::from_secs(5 * 60));
                assert_eq!(config.seal.offline_grace, Duration::from_secs(60 * 60));
            }
            _ => panic!("{name}: unexpected provider {provider:?}"),
        }
    }

    /// `Config::load` reads `${NAME}` from the process environment. A test may not set it:
    /// edition 2024 makes `set_var` unsafe, this crate forbids unsafe code, and tests share the
    /// process. So the test runs itself again as a child with the variables set, and the child
    /// loads each example for real.
    #[test]
    fn examples_load_with_their_env_vars() {
        const CHILD: &str = "KES_NODE_TEST_LOAD_EXAMPLE";
        if let Ok(name) = std::env::var(CHILD) {
            let loaded = Config::load(example_path(&name))
                .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
            check_example(&name, &loaded.config);
            return;
        }
        let test = concat!(module_path!(), "::examples_load_with_their_env_vars");
        let test = test.split_once("::").map_or(test, |(_, rest)| rest);
        let exe = std::env::current_exe().expect("test binary");
        for (name, vars) in examples() {
            let out = std::process::Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, name)
                .envs(vars)
                .output()
                .expect("run the test binary");
            assert!(
                out.status.success(),
                "{name}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Guard against a filter that matched nothing, which also exits 0.
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{name}: the child ran no test:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    /// The same files through `Config::from_yaml`, in process: they parse to the expected
    /// providers with the variables, and without them fail on the key that needs one.
    #[test]
    fn examples_parse_and_name_their_missing_variables() {
        for (name, vars) in examples() {
            let text = std::fs::read_to_string(example_path(name)).expect("example");
            let env = |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            };
            let loaded = Config::from_yaml(&text, &env)
                .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
            check_example(name, &loaded.config);
            let e = Config::from_yaml(&text, &|_| None).expect_err("variables unset");
            assert!(e.to_string().contains("admin.identity"), "{name}: {e}");
        }
    }
}
