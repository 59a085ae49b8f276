//! The `aws-kms` root key: a KMS key in AWS (or an emulator of it) wraps the cluster key.
//!
//! ```text
//!  wrap(cluster key, aad)  ── POST TrentService.Encrypt {KeyId, Plaintext, EncryptionContext} ──▶ KMS
//!                          ◀─ CiphertextBlob: the wrapped copy kept in the replicated state
//!  unwrap(blob, aad)       ── POST TrentService.Decrypt {KeyId, CiphertextBlob, EncryptionContext} ─▶
//!                          ◀─ Plaintext: the 32-byte cluster key, straight into zeroized memory
//! ```
//!
//! Requests are AWS JSON 1.1 over HTTPS (plain HTTP only for an emulator endpoint), signed
//! with SigV4 for the service `kms`. The AAD travels as the encryption context
//! `{"kes-cluster": base64(aad)}`: KMS authenticates the context with the ciphertext, so a
//! copy opens only with the same AAD, as with AES-GCM.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary
//! credentials, `AWS_SESSION_TOKEN`, read once when the provider is made.
//!
//! Non-features: the AWS SDK (its compile time would dwarf this file), profile files, instance
//! metadata, web identity and credential refresh. A node with expiring credentials gets
//! `Auth` errors when they expire and must be restarted with fresh ones.

#[cfg(test)]
mod canned_tests;
mod http;
mod sigv4;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::{Zeroize, Zeroizing};

use super::provider::{ProviderError, ProviderFuture, RootKeyProvider};
use http::{Endpoint, Response};
use sigv4::Credentials;

/// Bound on one KMS call, connect to last byte. KMS answers in milliseconds; a call that
/// takes longer is treated as an outage, which the node tolerates for `seal.offline_grace`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// What an error answer without any AWS error type is called in messages.
const NO_ERROR_TYPE: &str = "no error type";

/// A root key held by AWS KMS: wraps with `Encrypt` and unwraps with `Decrypt`.
pub struct AwsKmsRootKey {
    region: String,
    key_id: String,
    endpoint: Endpoint,
    credentials: Credentials,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl std::fmt::Debug for AwsKmsRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are left out on purpose.
        f.debug_struct("AwsKmsRootKey")
            .field("id", &self.id())
            .field("endpoint", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl AwsKmsRootKey {
    /// Makes the provider from the `seal.aws-kms` settings and the process environment.
    ///
    /// `endpoint` defaults to `https://kms.<region>.amazonaws.com`; `http://` is accepted for
    /// a local emulator. An empty `region` falls back to `AWS_REGION`, then
    /// `AWS_DEFAULT_REGION`. Missing credentials or a malformed endpoint are a
    /// [`ProviderError::Config`] that names what to set. Nothing is sent until the first
    /// wrap or unwrap.
    pub fn new(endpoint: Option<&str>, region: &str, key_id: &str) -> Result<Self, ProviderError> {
        Self::from_env(endpoint, region, key_id, &|name| std::env::var(name).ok())
    }

    /// [`AwsKmsRootKey::new`] with the environment given as a lookup, so tests need not
    /// change the process environment.
    fn from_env(
        endpoint: Option<&str>,
        region: &str,
        key_id: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        // Each value is wrapped as soon as it is read: the secret must not linger in a plain
        // String, and a value that is only blanks counts as unset.
        let var = |name: &str| {
            let raw = Zeroizing::new(env(name)?);
            let trimmed = raw.trim();
            (!trimmed.is_empty()).then(|| Zeroizing::new(trimmed.to_owned()))
        };
        let region = match region.trim() {
            "" => var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .map(|r| r.as_str().to_owned())
                .ok_or_else(|| {
                    ProviderError::Config(
                        "aws-kms: no region; set seal.aws-kms.region (e.g. us-east-1) or AWS_REGION"
                            .to_owned(),
                    )
                })?,
            r => r.to_owned(),
        };
        let (Some(access_key_id), Some(secret_access_key)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(ProviderError::Config(
                "aws-kms: no AWS credentials; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN for temporary credentials) before starting the node"
                    .to_owned(),
            ));
        };
        let credentials = Credentials {
            access_key_id: access_key_id.as_str().to_owned(),
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
        };
        Self::with_credentials(endpoint, &region, key_id, credentials)
    }

    fn with_credentials(
        endpoint: Option<&str>,
        region: &str,
        key_id: &str,
        credentials: Credentials,
    ) -> Result<Self, ProviderError> {
        let config = |msg: String| ProviderError::Config(format!("aws-kms: {msg}"));
        // The region goes into the default host name and the signature's scope.
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(config(format!(
                "'{region}' is not an AWS region; write it like us-east-1"
            )));
        }
        let key_id = key_id.trim();
        if key_id.is_empty() || key_id.chars().any(char::is_control) {
            return Err(config(
                "key_id must be a key id, key ARN, alias name (alias/...) or alias ARN".to_owned(),
            ));
        }
        let endpoint = match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            Some(url) => Endpoint::parse(url),
            None => Endpoint::parse(&default_endpoint(region)),
        }
        .map_err(|e| config(format!("endpoint: {e}")))?;
        if !endpoint.is_tls() && !endpoint.is_loopback() {
            // Allowed because an emulator may run in another container, but the cluster key
            // crosses the network in the clear on every wrap and unwrap: say so loudly.
            tracing::warn!(
                endpoint = %endpoint.url,
                "aws-kms endpoint uses plain http to a host that is not loopback: the cluster key \
                 travels unencrypted; use https:// for anything but a local emulator"
            );
        }
        let tls = endpoint
            .is_tls()
            .then(tls_config)
            .transpose()
            .map_err(config)?;
        Ok(AwsKmsRootKey {
            region: region.to_owned(),
            key_id: key_id.to_owned(),
            endpoint,
            credentials,
            tls,
            timeout: CALL_TIMEOUT,
        })
    }

    async fn encrypt(&self, plaintext: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let mut plaintext_b64 = Zeroizing::new(String::with_capacity(44));
        BASE64.encode_string(plaintext, &mut plaintext_b64);
        let context = BASE64.encode(aad);
        let body = json_body(&KmsRequest {
            key_id: &self.key_id,
            plaintext: Some(&plaintext_b64),
            ciphertext_blob: None,
            encryption_context: Context { aad: &context },
        });
        let response = self.kms("Encrypt", body).await?;

        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "CiphertextBlob")]
            blob: String,
        }
        let answer: Answer = serde_json::from_slice(&response.body)
            .map_err(|_| self.not_kms("Encrypt", "no CiphertextBlob"))?;
        match BASE64.decode(answer.blob.as_bytes()) {
            Ok(blob) if !blob.is_empty() => Ok(blob),
            _ => Err(self.not_kms("Encrypt", "a CiphertextBlob that is not base64")),
        }
    }

    async fn decrypt(
        &self,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, ProviderError> {
        if wrapped.is_empty() {
            return Err(ProviderError::Refused(
                "aws-kms: the stored copy of the cluster key is empty".to_owned(),
            ));
        }
        let blob = BASE64.encode(wrapped);
        let context = BASE64.encode(aad);
        let body = json_body(&KmsRequest {
            key_id: &self.key_id,
            plaintext: None,
            ciphertext_blob: Some(&blob),
            encryption_context: Context { aad: &context },
        });
        let response = self.kms("Decrypt", body).await?;

        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            // Borrowed from the (wiped-on-drop) body whenever the JSON has no escapes in it,
            // which is how KMS writes base64; an owned copy is wiped below.
            #[serde(rename = "Plaintext", borrow)]
            plaintext: Cow<'a, str>,
        }
        let answer: Answer<'_> = serde_json::from_slice(&response.body)
            .map_err(|_| self.not_kms("Decrypt", "no Plaintext"))?;
        // Decoded into a fixed buffer, never a growing Vec, so no unwiped copy is left behind.
        let mut buf = Zeroizing::new([0u8; 64]);
        let decoded = BASE64.decode_slice(answer.plaintext.as_bytes(), buf.as_mut());
        if let Cow::Owned(mut copy) = answer.plaintext {
            copy.zeroize();
        }
        match decoded {
            Ok(32) => {
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(&buf[..32]);
                Ok(key)
            }
            _ => Err(ProviderError::Refused(format!(
                "aws-kms: key {} decrypted the stored copy to something that is not a 32-byte \
                 cluster key; the copy was not made by this seal",
                self.key_id
            ))),
        }
    }

    /// One KMS operation; a non-200 answer becomes the matching [`ProviderError`].
    async fn kms(
        &self,
        operation: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Response, ProviderError> {
        let target = format!("TrentService.{operation}");
        let started = Instant::now();
        let response = self.send("kms", JSON_1_1, Some(&target), body).await?;
        tracing::debug!(
            seal = %self.id(),
            operation,
            status = response.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "aws-kms call"
        );
        if response.status == 200 {
            return Ok(response);
        }
        let (kind, message) = error_of(&response);
        let detail = if message.is_empty() {
            kind.clone()
        } else {
            format!("{kind}: {message}")
        };
        Err(classify(
            &kind,
            &message,
            response.status,
            |outcome, hint| {
                format!(
                    "aws-kms: {operation} with key {} in {} {outcome} (HTTP {}, {detail}); {hint}",
                    self.key_id, self.region, response.status
                )
            },
        ))
    }

    /// Signs and sends one POST to the endpoint, for `service` (`kms`; tests also talk to the
    /// emulator's `iam` and `sts`). Only transport failures are errors here.
    async fn send(
        &self,
        service: &str,
        content_type: &str,
        target: Option<&str>,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Response, ProviderError> {
        let amz_date = amz_date(time::OffsetDateTime::now_utc());
        let mut headers: Vec<(&str, &str)> = vec![
            ("Host", &self.endpoint.authority),
            ("Content-Type", content_type),
            ("X-Amz-Date", &amz_date),
        ];
        if let Some(target) = target {
            headers.push(("X-Amz-Target", target));
        }
        if let Some(token) = &self.credentials.session_token {
            headers.push(("X-Amz-Security-Token", token.as_str()));
        }
        let authorization = sigv4::authorization(
            &self.credentials,
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: &body,
                amz_date: &amz_date,
                region: &self.region,
                service,
            },
        );
        headers.push(("Authorization", &authorization));

        let call = http::post(&self.endpoint, self.tls.as_ref(), &headers, body);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(ProviderError::Unreachable(format!(
                "aws-kms: cannot reach {}: {reason}",
                self.endpoint.url
            ))),
            Err(_) => Err(ProviderError::Unreachable(format!(
                "aws-kms: no answer from {} within {}s",
                self.endpoint.url,
                self.timeout.as_secs_f32()
            ))),
        }
    }

    /// A 200 answer that is not what KMS sends: something other than KMS is listening there
    /// (a proxy's page, a wrong endpoint). Not a refusal by the key holder, so not `Refused`.
    fn not_kms(&self, operation: &str, what: &str) -> ProviderError {
        ProviderError::Unreachable(format!(
            "aws-kms: {} answered {operation} with {what}; is the endpoint an AWS KMS endpoint?",
            self.endpoint.url
        ))
    }
}

impl RootKeyProvider for AwsKmsRootKey {
    fn id(&self) -> String {
        format!("aws-kms:{}/{}", self.region, self.key_id)
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8; 32], aad: &'a [u8]) -> ProviderFuture<'a, Vec<u8>> {
        Box::pin(self.encrypt(plaintext, aad))
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        aad: &'a [u8],
    ) -> ProviderFuture<'a, Zeroizing<[u8; 32]>> {
        Box::pin(self.decrypt(wrapped, aad))
    }
}

fn default_endpoint(region: &str) -> String {
    // The China partition has its own domain.
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://kms.{region}.{domain}")
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // ring only: the workspace builds rustls without aws-lc, and no process-wide default
    // provider is assumed.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The body of Encrypt and Decrypt. It borrows every value, so the plaintext is never copied
/// into a `serde_json::Value` that would be freed unwiped.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct KmsRequest<'a> {
    key_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_blob: Option<&'a str>,
    encryption_context: Context<'a>,
}

#[derive(serde::Serialize)]
struct Context<'a> {
    #[serde(rename = "kes-cluster")]
    aad: &'a str,
}

impl KmsRequest<'_> {
    fn len_hint(&self) -> usize {
        self.key_id.len()
            + self.plaintext.map_or(0, str::len)
            + self.ciphertext_blob.map_or(0, str::len)
            + self.encryption_context.aad.len()
    }
}

/// Serializes a request into memory that is wiped on drop, sized up front so that growing
/// the buffer never leaves an unwiped copy of the plaintext behind.
fn json_body(request: &KmsRequest<'_>) -> Zeroizing<Vec<u8>> {
    // Escaping can at most sextuple a character (`\u00XX`); 256 covers the field names.
    let mut body = Zeroizing::new(Vec::with_capacity(6 * request.len_hint() + 256));
    // Serializing strings into a Vec cannot fail.
    serde_json::to_writer(&mut *body, request).expect("JSON into memory");
    body
}

/// `YYYYMMDDTHHMMSSZ` in UTC, for `X-Amz-Date`.
fn amz_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// The error type and message of a failed call. KMS sends JSON `{"__type", "message"}`;
/// front ends that check signatures before KMS sees the request (and the emulator) may send
/// only the `X-Amzn-ErrorType` header or an XML `<Code>`. Both are cut to a sane length and
/// stripped of control characters before they go into an error message.
fn error_of(response: &Response) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct JsonError {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let json: Option<JsonError> = serde_json::from_slice(&response.body).ok();
    let text = String::from_utf8_lossy(&response.body);
    let kind = json
        .as_ref()
        .and_then(|j| j.kind.clone())
        .or_else(|| response.error_type.clone())
        .or_else(|| xml_element(&text, "Code"))
        .unwrap_or_default();
    // `com.amazonaws.kms#NotFoundException`, `UnrecognizedClientException:http://...`
    let kind = kind.rsplit('#').next().unwrap_or_default();
    let kind = kind.split(':').next().unwrap_or_default();
    let message = json
        .and_then(|j| j.message)
        .or_else(|| xml_element(&text, "Message"))
        .unwrap_or_default();
    let kind = if kind.is_empty() {
        "no error type"
    } else {
        kind
    };
    (clip(kind), clip(&message))
}

fn xml_element(text: &str, name: &str) -> Option<String> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let len = text[start..].find(&format!("</{name}>"))?;
    Some(text[start..start + len].to_owned())
}

fn clip(s: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// Sorts a KMS error into what the unseal loop must do about it. `describe(outcome, hint)`
/// makes the full message: what happened, then what the operator can do.
fn classify(
    kind: &str,
    message: &str,
    status: u16,
    describe: impl Fn(&str, &str) -> String,
) -> ProviderError {
    const AUTH: &[&str] = &[
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        // The codes that query-protocol front ends and the emulator's signature check send.
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    ];
    const TRANSIENT: &[&str] = &[
        "KMSInternalException",
        "ThrottlingException",
        "Throttling",
        "DependencyTimeoutException",
        "ServiceUnavailableException",
        "InternalFailure",
        "RequestTimeout",
    ];
    let access_denied = matches!(kind, "AccessDeniedException" | "AccessDenied");
    if AUTH.contains(&kind) || (access_denied && about_credentials(message)) {
        return ProviderError::Auth(describe(
            "was rejected: AWS does not accept the credentials",
            "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and this host's \
             clock, then restart the node; this is not retried automatically",
        ));
    }
    if TRANSIENT.contains(&kind) || status >= 500 || status == 429 {
        return ProviderError::Unreachable(describe(
            "failed for now",
            "KMS is down or throttling; the node tries again",
        ));
    }
    if kind == NO_ERROR_TYPE {
        // A 4xx with no KMS error in it came from something in front of KMS.
        return ProviderError::Unreachable(describe(
            "got an answer that is not from KMS",
            "check the endpoint and any proxy in front of it",
        ));
    }
    let hint = match kind {
        "NotFoundException" => "check key_id and region: no such key or alias there",
        "DisabledException" => "the key is disabled; enable it to unseal",
        "KMSInvalidStateException" => {
            "the key is pending deletion or not usable; cancel the deletion and enable it to unseal"
        }
        "InvalidCiphertextException" => {
            "the stored copy does not open under this cluster's context: it belongs to another \
             cluster, or was altered"
        }
        "IncorrectKeyException" => "the stored copy was made by another KMS key than key_id",
        "KeyUnavailableException" => "the key's custom key store is disconnected; reconnect it",
        _ if access_denied => {
            "these credentials may not use the key (IAM policy, key policy or grant), or the \
             stored copy was made by a key they cannot see"
        }
        _ => "KMS refused the request; see its message",
    };
    ProviderError::Refused(describe("was refused", hint))
}

/// Whether an AccessDenied is about who is calling rather than what the key policy allows.
fn about_credentials(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "security token",
        "credential",
        "signature",
        "access key",
        "token has expired",
    ]
    .iter()
    .any(|hint| m.contains(hint))
}
