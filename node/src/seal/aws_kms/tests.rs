//! Tests against moto's server mode, an AWS EMULATOR, started per test on a free loopback
//! port from the venv that `scripts/moto-setup.sh` makes in `target/moto-venv`.
//!
//! AWS itself cannot be reached from here, so the emulator stands in for it. It is run with
//! `INITIAL_NO_AUTH_ACTION_COUNT`, which makes it check every request's SigV4 signature
//! (with botocore's signer, an implementation independent of ours) and its IAM policies
//! after the first few actions; those few create the IAM user whose keys the tests use.
//!
//! What moto 5 does not emulate, and where these tests check the mapping on canned answers
//! instead: Decrypt succeeds on a disabled key or one pending deletion (real KMS answers
//! `DisabledException` / `KMSInvalidStateException`), and a session token's value is not
//! compared with the one STS issued.

use super::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Actions the emulator serves before it starts checking signatures and policies:
/// CreateUser, CreateAccessKey and PutUserPolicy.
const UNCHECKED_ACTIONS: u32 = 3;

const REGION: &str = "us-east-1";

/// The policy of the test user: everything the tests do, in KMS, IAM and STS.
const ALLOW_ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:*","iam:*","sts:*"],"Resource":"*"}]}"#;

/// The `moto_server` executable, made by `scripts/moto-setup.sh` on first use. A missing
/// emulator fails the test with the script's output; it never skips it.
fn moto_server() -> &'static Path {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let venv = root.join("target/moto-venv");
        let out = Command::new("bash")
            .arg(root.join("scripts/moto-setup.sh"))
            .arg(&venv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/moto-setup.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/moto-setup.sh could not install the moto emulator into {}:\n{}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
        assert!(
            path.is_file(),
            "scripts/moto-setup.sh printed '{printed}', not the path of moto_server"
        );
        path
    })
}

/// One moto server process: the AWS KMS emulator. Killed when dropped.
struct Emulator {
    child: Option<Child>,
    endpoint: String,
    log: tempfile::NamedTempFile,
}

impl Emulator {
    fn start() -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let output = |log: &tempfile::NamedTempFile| Stdio::from(log.reopen().expect("log file"));
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                UNCHECKED_ACTIONS.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(output(&log))
            .stderr(output(&log))
            .spawn()
            .expect("start moto_server");
        let mut emulator = Emulator {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = emulator
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the moto emulator did not start ({exited:?}):\n{}",
                emulator.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        emulator
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn credentials(access_key_id: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: Zeroizing::new(secret.to_owned()),
        session_token: token.map(|t| Zeroizing::new(t.to_owned())),
    }
}

fn provider(emulator: &Emulator, key_id: &str, creds: Credentials) -> AwsKmsRootKey {
    AwsKmsRootKey::with_credentials(Some(&emulator.endpoint), REGION, key_id, creds)
        .expect("provider")
}

/// A query-protocol call (IAM, STS) through our own signer; panics unless it succeeds.
async fn query(client: &AwsKmsRootKey, service: &str, params: &[(&str, &str)]) -> String {
    let body: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    let response = client
        .send(
            service,
            "application/x-www-form-urlencoded; charset=utf-8",
            None,
            Zeroizing::new(body.join("&").into_bytes()),
        )
        .await
        .expect("emulator reachable");
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert_eq!(response.status, 200, "{service} {params:?}: {text}");
    text
}

/// A KMS call for setting up or changing a key; panics unless it succeeds.
async fn kms_admin(
    client: &AwsKmsRootKey,
    operation: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let target = format!("TrentService.{operation}");
    let response = client
        .send(
            "kms",
            JSON_1_1,
            Some(&target),
            Zeroizing::new(body.to_string().into_bytes()),
        )
        .await
        .expect("emulator reachable");
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert_eq!(response.status, 200, "{operation}: {text}");
    serde_json::from_str(&text).expect("JSON answer")
}

fn xml(text: &str, element: &str) -> String {
    xml_element(text, element).unwrap_or_else(|| panic!("no <{element}> in {text}"))
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running emulator with an IAM user allowed everything, and a KMS key made by that user.
struct Account {
    emulator: Emulator,
    user_arn: String,
    access_key_id: String,
    secret: String,
    key_id: String,
}

impl Account {
    async fn new() -> Self {
        let emulator = Emulator::start();
        // The emulator does not check these first actions, so any key pair signs them.
        let boot = provider(
            &emulator,
            "unused",
            credentials("AKIDBOOTSTRAP", "unchecked", None),
        );
        let v = ("Version", "2010-05-08");
        let user = query(
            &boot,
            "iam",
            &[("Action", "CreateUser"), ("UserName", "kes-node"), v],
        )
        .await;
        let keys = query(
            &boot,
            "iam",
            &[("Action", "CreateAccessKey"), ("UserName", "kes-node"), v],
        )
        .await;
        query(
            &boot,
            "iam",
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", "kes-node"),
                ("PolicyName", "allow-all"),
                ("PolicyDocument", ALLOW_ALL),
                v,
            ],
        )
        .await;
        let mut account = Account {
            emulator,
            user_arn: xml(&user, "Arn"),
            access_key_id: xml(&keys, "AccessKeyId"),
            secret: xml(&keys, "SecretAccessKey"),
            key_id: String::new(),
        };
        // From here on every request must carry a valid signature.
        let created = kms_admin(
            &account.client("unused"),
            "CreateKey",
            serde_json::json!({"Description": "kes-cluster test root key"}),
        )
        .await;
        account.key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("KeyId")
            .to_owned();
        account
    }

    /// A provider for `key_id` with the test user's credentials.
    fn client(&self, key_id: &str) -> AwsKmsRootKey {
        provider(
            &self.emulator,
            key_id,
            credentials(&self.access_key_id, &self.secret, None),
        )
    }

    fn seal(&self) -> AwsKmsRootKey {
        self.client(&self.key_id)
    }
}

fn cluster_key(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8))
}

fn expect_refused<T: std::fmt::Debug>(result: Result<T, ProviderError>, what: &str) -> String {
    match result {
        Err(ProviderError::Refused(message)) => message,
        other => panic!("{what}: expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn emulator_wrap_unwrap_round_trip_through_an_alias() {
    let account = Account::new().await;
    kms_admin(
        &account.client("unused"),
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/kes-cluster", "TargetKeyId": account.key_id}),
    )
    .await;
    let seal = account.client("alias/kes-cluster");
    assert_eq!(seal.id(), "aws-kms:us-east-1/alias/kes-cluster");

    let key = cluster_key(7);
    let aad = b"kes-cluster cluster key v1\0cluster-a";
    let wrapped = seal.wrap(&key, aad).await.expect("wrap");
    assert!(
        !wrapped.windows(32).any(|w| w == key),
        "the wrapped copy must not contain the key"
    );
    let again = seal.wrap(&key, aad).await.expect("wrap");
    assert_ne!(wrapped, again, "KMS encrypts with a fresh IV each time");

    let unwrapped = seal.unwrap(&wrapped, aad).await.expect("unwrap");
    assert_eq!(*unwrapped, key);
    // The key id works as well as the alias, and a copy made through one opens with the other.
    let by_id = account
        .seal()
        .unwrap(&again, aad)
        .await
        .expect("unwrap by key id");
    assert_eq!(*by_id, key);

    // Unseal cost: one signed Decrypt on a fresh loopback connection.
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        seal.unwrap(&wrapped, aad).await.expect("unwrap");
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "aws-kms unwrap against the moto emulator: min {:?}, median {:?}, max {:?}",
        times[0], times[10], times[19]
    );
}

#[tokio::test]
async fn emulator_wrong_aad_is_refused() {
    let account = Account::new().await;
    let seal = account.seal();
    let wrapped = seal
        .wrap(&cluster_key(1), b"cluster-a")
        .await
        .expect("wrap");
    let message = expect_refused(seal.unwrap(&wrapped, b"cluster-b").await, "wrong aad");
    assert!(message.contains("InvalidCiphertextException"), "{message}");

    let mut altered = wrapped.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    expect_refused(seal.unwrap(&altered, b"cluster-a").await, "altered copy");
    expect_refused(seal.unwrap(&[], b"cluster-a").await, "empty copy");
}

#[tokio::test]
async fn emulator_unknown_or_other_key_is_refused() {
    let account = Account::new().await;
    let wrapped = account
        .seal()
        .wrap(&cluster_key(2), b"aad")
        .await
        .expect("wrap");

    // A key id that was never created, as after the key is gone for good.
    let missing = account.client("0b9f1c2a-1111-4222-8333-444455556666");
    let message = expect_refused(missing.unwrap(&wrapped, b"aad").await, "unknown key");
    assert!(message.contains("NotFoundException"), "{message}");
    expect_refused(
        missing.wrap(&cluster_key(2), b"aad").await,
        "wrap, unknown key",
    );
    expect_refused(
        account
            .client("alias/nowhere")
            .unwrap(&wrapped, b"aad")
            .await,
        "unknown alias",
    );

    // Another existing key: KMS will not decrypt a blob under a key that did not make it.
    let other = kms_admin(
        &account.client("unused"),
        "CreateKey",
        serde_json::json!({}),
    )
    .await;
    let other = account.client(other["KeyMetadata"]["KeyId"].as_str().expect("KeyId"));
    expect_refused(other.unwrap(&wrapped, b"aad").await, "other key");
}

#[tokio::test]
async fn emulator_revoked_access_is_refused() {
    let account = Account::new().await;
    let seal = account.seal();
    let wrapped = seal.wrap(&cluster_key(3), b"aad").await.expect("wrap");
    // Revoke Decrypt the way an operator would: an explicit Deny in the user's policies.
    query(
        &account.client("unused"),
        "iam",
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "kes-node"),
            ("PolicyName", "revoke-decrypt"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}]}"#,
            ),
            ("Version", "2010-05-08"),
        ],
    )
    .await;
    let message = expect_refused(seal.unwrap(&wrapped, b"aad").await, "revoked");
    assert!(message.contains("AccessDenied"), "{message}");
}

#[tokio::test]
async fn emulator_disable_and_schedule_deletion() {
    let account = Account::new().await;
    let seal = account.seal();
    let wrapped = seal.wrap(&cluster_key(4), b"aad").await.expect("wrap");
    let admin = account.client("unused");
    kms_admin(
        &admin,
        "DisableKey",
        serde_json::json!({"KeyId": account.key_id}),
    )
    .await;
    let after_disable = seal.unwrap(&wrapped, b"aad").await;
    kms_admin(
        &admin,
        "ScheduleKeyDeletion",
        serde_json::json!({"KeyId": account.key_id, "PendingWindowInDays": 7}),
    )
    .await;
    let after_deletion = seal.unwrap(&wrapped, b"aad").await;
    // Real KMS refuses both (DisabledException, KMSInvalidStateException); those answers are
    // checked in `kms_errors_map_to_what_the_unseal_loop_does`. moto 5 ignores the key state
    // on Decrypt, so all that can be asserted here is that neither answer is mistaken for an
    // outage or a credential problem. The key states themselves were set, as this shows:
    let described = kms_admin(
        &admin,
        "DescribeKey",
        serde_json::json!({"KeyId": account.key_id}),
    )
    .await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "PendingDeletion");
    for (what, result) in [
        ("disabled", after_disable),
        ("pending deletion", after_deletion),
    ] {
        match result {
            Ok(key) => {
                assert_eq!(*key, cluster_key(4));
                eprintln!("note: the moto emulator still decrypts with a {what} key (a known gap)");
            }
            Err(e) => {
                expect_refused::<()>(Err(e), what);
            }
        }
    }
}

#[tokio::test]
async fn emulator_bad_credentials_are_auth_errors() {
    let account = Account::new().await;
    let wrapped = account
        .seal()
        .wrap(&cluster_key(5), b"aad")
        .await
        .expect("wrap");

    let wrong_secret = provider(
        &account.emulator,
        &account.key_id,
        credentials(&account.access_key_id, "not-the-secret", None),
    );
    match wrong_secret.unwrap(&wrapped, b"aad").await {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("SignatureDoesNotMatch"), "{message}");
            assert!(!message.contains("not-the-secret"), "{message}");
        }
        other => panic!("wrong secret: expected Auth, got {other:?}"),
    }

    let unknown_key = provider(
        &account.emulator,
        &account.key_id,
        credentials("AKIAUNKNOWNUNKNOWN00", &account.secret, None),
    );
    match unknown_key.wrap(&cluster_key(5), b"aad").await {
        Err(ProviderError::Auth(message)) => {
            assert!(message.contains("InvalidClientTokenId"), "{message}")
        }
        other => panic!("unknown access key: expected Auth, got {other:?}"),
    }
}

#[tokio::test]
async fn emulator_session_credentials_from_assume_role() {
    let account = Account::new().await;
    let admin = account.client("unused");
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"sts:AssumeRole"}}]}}"#,
        account.user_arn
    );
    let v = ("Version", "2010-05-08");
    let role = query(
        &admin,
        "iam",
        &[
            ("Action", "CreateRole"),
            ("RoleName", "kes-seal"),
            ("AssumeRolePolicyDocument", &trust),
            v,
        ],
    )
    .await;
    query(
        &admin,
        "iam",
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", "kes-seal"),
            ("PolicyName", "kms"),
            ("PolicyDocument", ALLOW_ALL),
            v,
        ],
    )
    .await;
    let assumed = query(
        &admin,
        "sts",
        &[
            ("Action", "AssumeRole"),
            ("RoleArn", &xml(&role, "Arn")),
            ("RoleSessionName", "kes-node"),
            ("Version", "2011-06-15"),
        ],
    )
    .await;
    let (id, secret, token) = (
        xml(&assumed, "AccessKeyId"),
        xml(&assumed, "SecretAccessKey"),
        xml(&assumed, "SessionToken"),
    );

    // The token goes out as a signed X-Amz-Security-Token header.
    let seal = provider(
        &account.emulator,
        &account.key_id,
        credentials(&id, &secret, Some(&token)),
    );
    let wrapped = seal
        .wrap(&cluster_key(6), b"aad")
        .await
        .expect("wrap with a session");
    assert_eq!(
        *seal.unwrap(&wrapped, b"aad").await.expect("unwrap"),
        cluster_key(6)
    );

    // Without it, the temporary key id means nothing to the emulator.
    let tokenless = provider(
        &account.emulator,
        &account.key_id,
        credentials(&id, &secret, None),
    );
    assert!(matches!(
        tokenless.unwrap(&wrapped, b"aad").await,
        Err(ProviderError::Auth(_))
    ));
}

#[tokio::test]
async fn emulator_stopped_is_unreachable() {
    let mut account = Account::new().await;
    let seal = account.seal();
    let wrapped = seal.wrap(&cluster_key(8), b"aad").await.expect("wrap");
    account.emulator.stop();
    match seal.unwrap(&wrapped, b"aad").await {
        Err(ProviderError::Unreachable(message)) => {
            assert!(message.contains(&account.emulator.endpoint), "{message}")
        }
        other => panic!("stopped emulator: expected Unreachable, got {other:?}"),
    }
}

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
