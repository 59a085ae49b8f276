//! Tests of the PKCS#11 seal against real SoftHSM2 tokens.
//! Against a real SoftHSM2 token, made by `scripts/softhsm-setup.sh` for each test.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the library is initialised, and this crate forbids
//! the `unsafe` that `set_var` needs. So each test re-runs itself in a child process whose
//! environment points at a token made for it alone: the parent makes the token and checks
//! that the child ran and passed. Tokens, logins and environments stay apart that way,
//! with no lock between the tests.

use super::*;
use crate::config::{Config, SealProvider};
use std::process::Command;
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Marks the child process, which runs the test body.
const CHILD: &str = "KES_PKCS11_TEST_CHILD";
/// The token's PIN, in the variable the example config and the setup script use.
const PIN_ENV: &str = "KES_HSM_PIN";
const PIN: &str = "test-pin-7319";
/// A PIN the token does not accept.
const WRONG_PIN_ENV: &str = "KES_TEST_WRONG_HSM_PIN";
const WRONG_PIN: &str = "wrong-pin-0000";
const ADMIN: &str = "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// Runs `body` in a child process against a fresh token (see the module doc).
fn with_token(test: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    assert!(
        Path::new(MODULE).exists() && installed("softhsm2-util") && installed("pkcs11-tool"),
        "SoftHSM2 is not installed: run `KES_HSM_PIN=1234 scripts/softhsm-setup.sh /tmp/hsm` \
         (it installs Debian's softhsm2 and opensc), or scripts/test.sh, which installs them"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Command::new("bash")
        .arg(repo().join("scripts/softhsm-setup.sh"))
        .arg(dir.path())
        .env(PIN_ENV, PIN)
        .output()
        .expect("run scripts/softhsm-setup.sh");
    let stdout = String::from_utf8_lossy(&setup.stdout);
    assert!(
        setup.status.success(),
        "softhsm-setup.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let conf = dir.path().join("softhsm2.conf");
    assert_eq!(
        stdout.lines().last(),
        Some(format!("export SOFTHSM2_CONF={}", conf.display()).as_str())
    );
    let (_, in_crate) = module_path!().split_once("::").expect("crate::path");
    let name = format!("{in_crate}::{test}");
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("SOFTHSM2_CONF", &conf)
        .env(PIN_ENV, PIN)
        .env(WRONG_PIN_ENV, WRONG_PIN)
        .env("KES_ADMIN_IDENTITY", ADMIN)
        .output()
        .expect("run the test in a child process");
    let out = String::from_utf8_lossy(&child.stdout);
    let err = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success() && out.contains("1 passed"),
        "{name} failed in its child process:\n{out}\n{err}"
    );
    // Measurements the child printed, for `cargo test -- --nocapture`.
    for line in out.lines().chain(err.lines()) {
        if let Some(at) = line.find("pkcs11 timing") {
            eprintln!("{}", &line[at..]);
        }
    }
}

fn open(pin_env: &str) -> Pkcs11RootKey {
    Pkcs11RootKey::open(
        Path::new(MODULE),
        &Pkcs11Token::Label("kes-cluster".into()),
        pin_env,
        "kes-root",
    )
    .expect("open the token made by softhsm-setup.sh")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn delete_root_key() {
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            "kes-cluster",
            "--login",
        ])
        .args(["--pin", PIN, "--delete-object", "--type", "secrkey"])
        .args(["--label", "kes-root"])
        .output()
        .expect("run pkcs11-tool");
    assert!(
        out.status.success(),
        "pkcs11-tool --delete-object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn wraps_and_unwraps_inside_the_token() {
    with_token("wraps_and_unwraps_inside_the_token", || {
        let rt = runtime();
        let cluster_key = [0x5au8; 32];
        let aad = b"cluster 7f3e";
        let started = Instant::now();
        let key = open(PIN_ENV);
        let opened = started.elapsed();
        assert_eq!(key.id(), "pkcs11:kes-cluster/kes-root");
        assert!(!format!("{key:?}").contains(PIN));

        let wrapped = rt.block_on(key.wrap(&cluster_key, aad)).expect("wrap");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(wrapped[0], WRAP_FORMAT);
        assert!(!wrapped.windows(32).any(|w| w == cluster_key));
        let again = rt.block_on(key.wrap(&cluster_key, aad)).expect("wrap");
        assert_ne!(
            wrapped[1..1 + IV_LEN],
            again[1..1 + IV_LEN],
            "fresh IV per wrap"
        );
        drop(key);

        // What a node does at start: open the token, then one unwrap (with the login).
        let started = Instant::now();
        let key = open(PIN_ENV);
        let got = rt.block_on(key.unwrap(&wrapped, aad)).expect("unwrap");
        let unseal = started.elapsed();
        assert_eq!(*got, cluster_key);
        let warm = Instant::now();
        for _ in 0..50 {
            rt.block_on(key.unwrap(&again, aad)).expect("unwrap");
        }
        let warm = warm.elapsed() / 50;
        println!(
            "pkcs11 timing: open {opened:?}; unseal (open + login + unwrap) {unseal:?}; warm unwrap {warm:?}"
        );
        assert!(unseal < Duration::from_secs(5), "unseal took {unseal:?}");

        // The same token by slot number opens the same copies, on the shared library.
        let slot = match key.inner.find_slot() {
            Ok(slot) => slot.id(),
            Err(_) => panic!("the token has a slot"),
        };
        let by_slot = Pkcs11RootKey::open(
            Path::new(MODULE),
            &Pkcs11Token::Slot(slot),
            PIN_ENV,
            "kes-root",
        )
        .expect("open by slot");
        assert_eq!(by_slot.id(), format!("pkcs11:slot-{slot}/kes-root"));
        let got = rt
            .block_on(by_slot.unwrap(&wrapped, aad))
            .expect("unwrap by slot");
        assert_eq!(*got, cluster_key);
    });
}

#[test]
fn altered_copies_and_other_aad_are_refused() {
    with_token("altered_copies_and_other_aad_are_refused", || {
        let rt = runtime();
        let key = open(PIN_ENV);
        let wrapped = rt.block_on(key.wrap(&[7u8; 32], b"aad")).expect("wrap");
        let refused = |bytes: &[u8], aad: &[u8]| match rt.block_on(key.unwrap(bytes, aad)) {
            Err(ProviderError::Refused(msg)) => msg,
            other => panic!("expected Refused, got {other:?}"),
        };
        let msg = refused(&wrapped, b"other aad");
        assert!(msg.contains("altered"), "{msg}");
        // Every region: format byte, IV, ciphertext, tag.
        for at in [0, 1, 12, 13, 44, 45, WRAPPED_LEN - 1] {
            let mut bad = wrapped.clone();
            bad[at] ^= 0x01;
            refused(&bad, b"aad");
        }
        refused(&wrapped[..WRAPPED_LEN - 1], b"aad");
        refused(b"", b"aad");
        // A refusal leaves the session usable.
        let got = rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap");
        assert_eq!(*got, [7u8; 32]);
    });
}

#[test]
fn a_wrong_pin_is_an_auth_error_and_is_not_presented_again() {
    with_token(
        "a_wrong_pin_is_an_auth_error_and_is_not_presented_again",
        || {
            let rt = runtime();
            let wrapped = rt
                .block_on(open(PIN_ENV).wrap(&[1u8; 32], b"aad"))
                .expect("wrap");
            let key = open(WRONG_PIN_ENV);
            for _ in 0..3 {
                match rt.block_on(key.unwrap(&wrapped, b"aad")) {
                    Err(ProviderError::Auth(msg)) => {
                        assert!(msg.contains(WRONG_PIN_ENV), "{msg}");
                        assert!(!msg.contains(WRONG_PIN) && !msg.contains(PIN), "{msg}");
                    }
                    other => panic!("expected Auth, got {other:?}"),
                }
            }
            assert!(matches!(
                rt.block_on(key.wrap(&[1u8; 32], b"aad")),
                Err(ProviderError::Auth(_))
            ));
            assert_eq!(
                key.inner.logins.load(Ordering::Relaxed),
                1,
                "a rejected PIN must not be presented again"
            );
            // The token is not locked by it: the right PIN still unseals.
            let got = rt.block_on(open(PIN_ENV).unwrap(&wrapped, b"aad"));
            assert_eq!(*got.expect("unwrap"), [1u8; 32]);
        },
    );
}

#[test]
fn a_key_deleted_from_the_token_is_refused_at_the_next_call() {
    with_token(
        "a_key_deleted_from_the_token_is_refused_at_the_next_call",
        || {
            let rt = runtime();
            let key = open(PIN_ENV);
            let wrapped = rt.block_on(key.wrap(&[2u8; 32], b"aad")).expect("wrap");
            rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap");
            // Deleted by another process, as an operator would, while our session stays open.
            delete_root_key();
            match rt.block_on(key.unwrap(&wrapped, b"aad")) {
                Err(ProviderError::Refused(msg)) => assert!(msg.contains("kes-root"), "{msg}"),
                other => panic!("expected Refused, got {other:?}"),
            }
            assert!(matches!(
                rt.block_on(key.wrap(&[2u8; 32], b"aad")),
                Err(ProviderError::Refused(_))
            ));
        },
    );
}

#[test]
fn the_root_key_is_sensitive_and_never_extractable() {
    with_token("the_root_key_is_sensitive_and_never_extractable", || {
        let key = open(PIN_ENV);
        let attrs = key
            .inner
            .with_key(&mut |session, handle| {
                session
                    .get_attributes(
                        handle,
                        &[
                            AttributeType::Token,
                            AttributeType::Private,
                            AttributeType::Sensitive,
                            AttributeType::AlwaysSensitive,
                            AttributeType::Extractable,
                            AttributeType::NeverExtractable,
                            AttributeType::Encrypt,
                            AttributeType::Decrypt,
                            AttributeType::ValueLen,
                            AttributeType::AllowedMechanisms,
                        ],
                    )
                    .map_err(|e| key.inner.failure(Step::Attributes, e))
            })
            .expect("read attributes");
        let flag = |want: AttributeType| {
            attrs.iter().find_map(|a| match (a, want) {
                (Attribute::Token(v), AttributeType::Token)
                | (Attribute::Private(v), AttributeType::Private)
                | (Attribute::Sensitive(v), AttributeType::Sensitive)
                | (Attribute::AlwaysSensitive(v), AttributeType::AlwaysSensitive)
                | (Attribute::Extractable(v), AttributeType::Extractable)
                | (Attribute::NeverExtractable(v), AttributeType::NeverExtractable)
                | (Attribute::Encrypt(v), AttributeType::Encrypt)
                | (Attribute::Decrypt(v), AttributeType::Decrypt) => Some(*v),
                _ => None,
            })
        };
        assert_eq!(flag(AttributeType::Token), Some(true), "{attrs:?}");
        assert_eq!(flag(AttributeType::Private), Some(true), "{attrs:?}");
        assert_eq!(flag(AttributeType::Sensitive), Some(true), "{attrs:?}");
        assert_eq!(
            flag(AttributeType::AlwaysSensitive),
            Some(true),
            "{attrs:?}"
        );
        assert_eq!(flag(AttributeType::Extractable), Some(false), "{attrs:?}");
        assert_eq!(
            flag(AttributeType::NeverExtractable),
            Some(true),
            "{attrs:?}"
        );
        assert_eq!(flag(AttributeType::Encrypt), Some(true), "{attrs:?}");
        assert_eq!(flag(AttributeType::Decrypt), Some(true), "{attrs:?}");
        assert!(attrs.contains(&Attribute::ValueLen(32.into())), "{attrs:?}");
        assert!(
            attrs.contains(&Attribute::AllowedMechanisms(vec![
                cryptoki::mechanism::MechanismType::AES_GCM
            ])),
            "{attrs:?}"
        );
        // And the token will not hand out the value itself.
        let value = key.inner.with_key(&mut |session, handle| {
            session
                .get_attributes(handle, &[AttributeType::Value])
                .map_err(|e| key.inner.failure(Step::Attributes, e))
        });
        match value {
            Ok(attrs) => assert!(
                !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
                "the key value was readable"
            ),
            Err(e) => assert!(e.to_string().contains("AttributeSensitive"), "{e}"),
        }
    });
}

#[test]
fn an_unknown_token_or_key_is_reported() {
    with_token("an_unknown_token_or_key_is_reported", || {
        let err = Pkcs11RootKey::open(
            Path::new(MODULE),
            &Pkcs11Token::Label("no-such-token".into()),
            PIN_ENV,
            "kes-root",
        )
        .expect_err("unknown token");
        match err {
            ProviderError::Config(msg) => {
                assert!(
                    msg.contains("no-such-token") && msg.contains("'kes-cluster'"),
                    "{msg}"
                )
            }
            other => panic!("expected Config, got {other:?}"),
        }
        assert!(matches!(
            Pkcs11RootKey::open(Path::new(MODULE), &Pkcs11Token::Slot(999_999), PIN_ENV, "k"),
            Err(ProviderError::Config(_))
        ));
        let key = Pkcs11RootKey::open(
            Path::new(MODULE),
            &Pkcs11Token::Label("kes-cluster".into()),
            PIN_ENV,
            "no-such-key",
        )
        .expect("the token exists");
        assert!(matches!(
            runtime().block_on(key.wrap(&[0u8; 32], b"")),
            Err(ProviderError::Refused(_))
        ));
    });
}

#[test]
fn the_example_config_loads_and_unseals_with_the_setup_token() {
    with_token(
        "the_example_config_loads_and_unseals_with_the_setup_token",
        || {
            let loaded = Config::load(repo().join("deploy/examples/pkcs11.yaml"))
                .expect("deploy/examples/pkcs11.yaml loads");
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
            let config = loaded.config;
            assert_eq!(config.admin_identity.as_deref(), Some(ADMIN));
            let [
                SealProvider::Pkcs11 {
                    module,
                    token,
                    pin_env,
                    key_label,
                },
            ] = config.seal.providers.as_slice()
            else {
                panic!("one pkcs11 provider: {:?}", config.seal.providers);
            };
            let key = Pkcs11RootKey::open(module, token, pin_env, key_label).expect("open");
            let rt = runtime();
            let wrapped = rt.block_on(key.wrap(&[3u8; 32], b"aad")).expect("wrap");
            assert_eq!(
                *rt.block_on(key.unwrap(&wrapped, b"aad")).expect("unwrap"),
                [3u8; 32]
            );
        },
    );
}

#[test]
fn the_example_config_parses_without_a_token() {
    let text = std::fs::read_to_string(repo().join("deploy/examples/pkcs11.yaml"))
        .expect("read the example");
    let env = |name: &str| (name == "KES_ADMIN_IDENTITY").then(|| ADMIN.to_owned());
    let config = Config::from_yaml(&text, &env).expect("parses").config;
    assert_eq!(
        config.listen_address(),
        "0.0.0.0:7373".parse().expect("address")
    );
    assert_eq!(
        config.seal.providers,
        vec![SealProvider::Pkcs11 {
            module: MODULE.into(),
            token: Pkcs11Token::Label("kes-cluster".into()),
            pin_env: "KES_HSM_PIN".into(),
            key_label: "kes-root".into(),
        }]
    );
    config
        .check_required()
        .expect("a complete production config");
}

#[test]
fn an_unset_pin_variable_or_missing_module_is_a_config_error() {
    let err = Pkcs11RootKey::open(
        Path::new(MODULE),
        &Pkcs11Token::Label("kes-cluster".into()),
        "KES_TEST_PIN_THAT_IS_NEVER_SET",
        "kes-root",
    )
    .expect_err("no PIN");
    match err {
        ProviderError::Config(msg) => {
            assert!(msg.contains("KES_TEST_PIN_THAT_IS_NEVER_SET"), "{msg}")
        }
        other => panic!("expected Config, got {other:?}"),
    }
    // PATH is set in any test environment; it stands in for a PIN here.
    let err = Pkcs11RootKey::open(
        Path::new("/nonexistent/libpkcs11.so"),
        &Pkcs11Token::Label("kes-cluster".into()),
        "PATH",
        "kes-root",
    )
    .expect_err("no module");
    match err {
        ProviderError::Config(msg) => {
            assert!(msg.contains("/nonexistent/libpkcs11.so"), "{msg}")
        }
        other => panic!("expected Config, got {other:?}"),
    }
}
