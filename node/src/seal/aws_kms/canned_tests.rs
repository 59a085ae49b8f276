//! Tests that need no emulator: error mapping on canned KMS answers (over a real loopback
//! HTTP server and as a table), timeouts, configuration, and request bodies.

use super::tests::{REGION, credentials};
use super::*;

use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn silent_endpoint_times_out_as_unreachable() {
    // Accepts connections and never answers, like a KMS endpoint behind a black hole.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let mut seal = AwsKmsRootKey::with_credentials(
        Some(&url),
        REGION,
        "alias/kes",
        credentials("AKIDEXAMPLE", "secret", None),
    )
    .expect("provider");
    // The real bound is CALL_TIMEOUT (10 s); the test shortens it.
    seal.timeout = Duration::from_millis(300);
    let started = Instant::now();
    match seal.unwrap(b"blob", b"aad").await {
        Err(ProviderError::Unreachable(message)) => {
            assert!(message.contains("no answer"), "{message}")
        }
        other => panic!("silent endpoint: expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

/// A loopback HTTP server that answers each connection with the next canned answer, for what
/// the emulator cannot produce: real KMS's answers for disabled and deleted keys, a Decrypt
/// that returns the wrong length, and things that are not KMS at all.
async fn canned_server(answers: Vec<(u16, String)>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // Read the whole request (headers, then Content-Length bytes) before answering.
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = socket.read(&mut chunk).await {
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    if n == 0 {
                        break;
                    }
                    continue;
                };
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {JSON_1_1}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, server)
}

#[tokio::test]
async fn canned_kms_answers_over_http_map_like_real_kms() {
    let plaintext =
        |n: usize| serde_json::json!({"Plaintext": BASE64.encode(vec![7u8; n])}).to_string();
    let answers = vec![
        (
            400,
            json_error(
                "DisabledException",
                "arn:aws:kms:us-east-1:111122223333:key/k is disabled.",
            ),
        ),
        (
            400,
            json_error(
                "KMSInvalidStateException",
                "arn:aws:kms:us-east-1:111122223333:key/k is pending deletion.",
            ),
        ),
        (
            400,
            json_error(
                "AccessDeniedException",
                "User: arn:aws:iam::111122223333:user/kes is not authorized to perform: kms:Decrypt",
            ),
        ),
        (200, plaintext(16)),
        (200, plaintext(33)),
        (200, "<html>captive portal</html>".to_owned()),
        (500, json_error("KMSInternalException", "")),
        (200, plaintext(32)),
    ];
    let (url, server) = canned_server(answers).await;
    let seal = AwsKmsRootKey::with_credentials(
        Some(&url),
        REGION,
        "alias/kes",
        credentials("AKIDEXAMPLE", "secret", None),
    )
    .expect("provider");
    let mut results = Vec::new();
    for _ in 0..8 {
        results.push(seal.unwrap(b"blob", b"aad").await);
    }
    server.await.expect("canned server");
    let kinds: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(_) => "ok",
            Err(ProviderError::Refused(_)) => "refused",
            Err(ProviderError::Unreachable(_)) => "unreachable",
            Err(ProviderError::Auth(_)) => "auth",
            Err(ProviderError::Config(_)) => "config",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "refused",
            "refused",
            "refused",
            "refused",
            "refused",
            "unreachable",
            "unreachable",
            "ok"
        ],
        "{results:?}"
    );
    let Some(Ok(key)) = results.last() else {
        unreachable!("checked above")
    };
    assert_eq!(**key, [7u8; 32]);
}

fn canned(status: u16, error_type: Option<&str>, body: &str) -> ProviderError {
    let response = Response {
        status,
        error_type: error_type.map(str::to_owned),
        body: Zeroizing::new(body.as_bytes().to_vec()),
    };
    let (kind, message) = error_of(&response);
    classify(&kind, &message, status, |outcome, hint| {
        format!("{outcome} ({kind}: {message}); {hint}")
    })
}

fn json_error(kind: &str, message: &str) -> String {
    serde_json::json!({"__type": kind, "message": message}).to_string()
}

#[test]
fn kms_errors_map_to_what_the_unseal_loop_does() {
    use ProviderError::{Auth, Refused, Unreachable};
    let kind = |e: &ProviderError| match e {
        Auth(_) => "auth",
        Refused(_) => "refused",
        Unreachable(_) => "unreachable",
        ProviderError::Config(_) => "config",
    };
    let policy_denied = "User: arn:aws:iam::111122223333:user/kes is not authorized to perform: \
                         kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/k \
                         because no identity-based policy allows the kms:Decrypt action";
    let cases: &[(u16, Option<&str>, String, &str)] = &[
        (400, None, json_error("UnrecognizedClientException", "The security token included in the request is invalid."), "auth"),
        (400, None, json_error("InvalidSignatureException", "Signature expired"), "auth"),
        (400, None, json_error("ExpiredTokenException", "The security token included in the request is expired"), "auth"),
        (400, None, json_error("AccessDeniedException", "The security token included in the request is invalid"), "auth"),
        (400, None, json_error("AccessDeniedException", policy_denied), "refused"),
        (400, None, json_error("NotFoundException", "Key 'arn:...' does not exist"), "refused"),
        (400, None, json_error("DisabledException", "arn:... is disabled."), "refused"),
        (400, None, json_error("KMSInvalidStateException", "arn:... is pending deletion."), "refused"),
        (400, None, json_error("InvalidCiphertextException", ""), "refused"),
        (400, None, json_error("IncorrectKeyException", ""), "refused"),
        (400, None, json_error("KeyUnavailableException", ""), "refused"),
        (400, None, json_error("com.amazonaws.kms#NotFoundException", ""), "refused"),
        (500, None, json_error("KMSInternalException", ""), "unreachable"),
        (400, None, json_error("ThrottlingException", "Rate exceeded"), "unreachable"),
        (503, None, "<html>Service Unavailable</html>".to_owned(), "unreachable"),
        (502, None, String::new(), "unreachable"),
        (404, None, "<html>not found</html>".to_owned(), "unreachable"),
        // The emulator's signature check: XML with the code, and the type in a header.
        (
            403,
            Some("SignatureDoesNotMatch"),
            "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></Errors></ErrorResponse>".to_owned(),
            "auth",
        ),
        (403, None, "<Error><Code>InvalidClientTokenId</Code></Error>".to_owned(), "auth"),
        (400, Some("UnrecognizedClientException:http://internal.amazon.com/coral/"), String::new(), "auth"),
    ];
    for (status, header, body, expected) in cases {
        let error = canned(*status, *header, body);
        assert_eq!(
            kind(&error),
            *expected,
            "{status} {header:?} {body}: {error}"
        );
    }

    // What reaches the message is bounded and printable.
    let error = canned(
        400,
        None,
        &json_error("NotFoundException", &"x\n".repeat(1000)),
    );
    assert!(!error.to_string().contains('\n'));
    assert!(error.to_string().len() < 800, "{error}");
}

#[test]
fn credentials_region_and_endpoint_come_from_config_and_env() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    const CREDS: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n",
        ),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
    ];
    let seal = AwsKmsRootKey::from_env(None, "", "alias/kes", &env(CREDS)).expect("valid");
    assert_eq!(seal.id(), "aws-kms:eu-west-1/alias/kes");
    assert_eq!(seal.endpoint.url, "https://kms.eu-west-1.amazonaws.com");
    assert!(seal.tls.is_some());
    assert_eq!(
        seal.credentials.secret_access_key.as_str(),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "trailing whitespace is trimmed"
    );
    assert!(seal.credentials.session_token.is_none());
    let shown = format!("{seal:?}");
    assert!(
        !shown.contains("EXAMPLEKEY") && !shown.contains("AKIDEXAMPLE"),
        "{shown}"
    );

    let seal =
        AwsKmsRootKey::from_env(Some("http://127.0.0.1:5000"), "us-east-1", "k", &env(CREDS))
            .expect("valid");
    assert_eq!(seal.id(), "aws-kms:us-east-1/k");
    assert!(seal.tls.is_none(), "plain http for an emulator");
    let seal = AwsKmsRootKey::from_env(None, "cn-north-1", "k", &env(CREDS)).expect("valid");
    assert_eq!(seal.endpoint.url, "https://kms.cn-north-1.amazonaws.com.cn");

    const DEFAULT_REGION_ONLY: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
    ];
    let seal = AwsKmsRootKey::from_env(None, " ", "k", &env(DEFAULT_REGION_ONLY)).expect("valid");
    assert_eq!(seal.id(), "aws-kms:us-west-2/k");
    assert!(seal.credentials.session_token.is_some());

    let config_error = |result: Result<AwsKmsRootKey, ProviderError>| match result {
        Err(ProviderError::Config(message)) => message,
        other => panic!("expected a Config error, got {other:?}"),
    };
    const NO_SECRET: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")];
    let message = config_error(AwsKmsRootKey::from_env(
        None,
        "us-east-1",
        "k",
        &env(NO_SECRET),
    ));
    assert!(
        message.contains("AWS_ACCESS_KEY_ID") && message.contains("AWS_SECRET_ACCESS_KEY"),
        "{message}"
    );
    const NO_REGION: &[(&str, &str)] =
        &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")];
    let message = config_error(AwsKmsRootKey::from_env(None, "", "k", &env(NO_REGION)));
    assert!(message.contains("AWS_REGION"), "{message}");
    config_error(AwsKmsRootKey::from_env(None, "US East", "k", &env(CREDS)));
    config_error(AwsKmsRootKey::from_env(None, "us-east-1", " ", &env(CREDS)));
    config_error(AwsKmsRootKey::from_env(
        Some("kms.local"),
        "us-east-1",
        "k",
        &env(CREDS),
    ));
    let message = config_error(AwsKmsRootKey::from_env(
        Some("https://AKID:topsecret@kms.local"),
        "us-east-1",
        "k",
        &env(CREDS),
    ));
    assert!(!message.contains("topsecret"), "{message}");
}

#[test]
fn amz_date_is_utc_basic_format() {
    let t = time::OffsetDateTime::from_unix_timestamp(1_440_938_160).expect("valid time");
    assert_eq!(amz_date(t), "20150830T123600Z");
    let east = t.to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("offset"));
    assert_eq!(amz_date(east), "20150830T123600Z");
}

#[test]
fn request_bodies_carry_the_context_and_no_extra_fields() {
    let body = json_body(&KmsRequest {
        key_id: "alias/kes",
        plaintext: None,
        ciphertext_blob: Some("AQID"),
        encryption_context: Context { aad: "YWFk" },
    });
    let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({
            "KeyId": "alias/kes",
            "CiphertextBlob": "AQID",
            "EncryptionContext": {"kes-cluster": "YWFk"},
        })
    );
}

/// The example config and the variables it needs, exported as its header says.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    (
        "KES_ADMIN_IDENTITY",
        "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22",
    ),
    (
        "MINIO_IDENTITY",
        "df7281ca3fed4ef7d06297eb7cb9d590a4edc863b4425f4762bb2afaebfd3258",
    ),
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    ),
];

/// `Config::load` and [`AwsKmsRootKey::new`] read the process environment, which a test may
/// not change (edition 2024 makes `set_var` unsafe, and tests share the process). So the test
/// runs itself again as a child with the variables set, and the child does it for real.
#[test]
fn example_config_loads_with_its_env_vars() {
    const CHILD: &str = "KES_NODE_TEST_AWS_KMS_EXAMPLE";
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/aws-kms.yaml");
    if std::env::var_os(CHILD).is_some() {
        let loaded = crate::config::Config::load(&example)
            .unwrap_or_else(|e| panic!("aws-kms.yaml does not load: {e}"));
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let config = loaded.config;
        assert_eq!(config.admin_identity.as_deref(), Some(EXAMPLE_ENV[0].1));
        let [
            crate::config::SealProvider::AwsKms {
                endpoint,
                region,
                key_id,
            },
        ] = config.seal.providers.as_slice()
        else {
            panic!("one aws-kms provider expected: {:?}", config.seal);
        };
        assert_eq!(
            (endpoint.as_deref(), region.as_str(), key_id.as_str()),
            (None, "us-east-1", "alias/kes-cluster")
        );
        let seal = AwsKmsRootKey::new(endpoint.as_deref(), region, key_id).expect("provider");
        assert_eq!(seal.id(), "aws-kms:us-east-1/alias/kes-cluster");
        assert_eq!(seal.endpoint.url, "https://kms.us-east-1.amazonaws.com");
        return;
    }
    let test = concat!(module_path!(), "::example_config_loads_with_its_env_vars");
    let test = test.split_once("::").map_or(test, |(_, rest)| rest);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .envs(EXAMPLE_ENV.iter().copied())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A filter that matched nothing also exits 0.
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}
