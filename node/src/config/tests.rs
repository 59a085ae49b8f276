//! Whole-file tests: the KES sample loads, every refusal of the contract §10 is a clear error,
//! `${ENV}` behaves as the KES page promises, and the defaults are the documented ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(yaml: &str) -> Result<Loaded, ConfigError> {
    Config::from_yaml(yaml, &no_env)
}

fn load_with(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_yaml(yaml, &move |name| vars.get(name).cloned())
}

fn refused(yaml: &str) -> ConfigError {
    match load(yaml) {
        Ok(loaded) => panic!("accepted: {yaml}\n{:?}", loaded.config),
        Err(e) => e,
    }
}

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kes-sample-config.yml")
}

#[test]
fn the_kes_sample_config_loads() {
    let loaded = Config::load(sample_path()).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.address, Some("0.0.0.0:7373".parse().expect("literal")));
    assert_eq!(
        c.admin_identity.as_deref(),
        Some("c84cc9b91ae2399b043da7eca616048d4b4200edf2ff418d8af3835911db945d")
    );
    assert_eq!(c.tls.key.as_deref(), Some(Path::new("./server.key")));
    assert_eq!(c.tls.cert.as_deref(), Some(Path::new("./server.cert")));
    assert_eq!(
        (c.tls.password.as_deref(), c.tls.auth, c.tls.ca.as_deref()),
        (None, false, None)
    );
    assert_eq!(
        c.api["/v1/ready"],
        ApiRouteConfig {
            skip_auth: false,
            timeout: Some(Duration::from_secs(15))
        }
    );
    let my_app = &c.policies["my-app"];
    assert_eq!(my_app.allow.len(), 3);
    assert_eq!(my_app.deny[0], "/v1/key/generate/my-app-internal*");
    assert_eq!(my_app.identities.len(), 2);
    assert_eq!(c.policies["my-app-ops"].identities.len(), 1);
    assert_eq!(
        c.policies["my-app-ops"].allow[2],
        "/v1/identity/assign/my-app/*"
    );
    assert_eq!(
        c.cache,
        CacheConfig {
            any: Duration::from_secs(300),
            unused: Duration::from_secs(20),
            offline: Duration::ZERO
        }
    );
    assert_eq!(
        c.log,
        LogConfig {
            error: true,
            audit: false,
            ..LogConfig::default()
        }
    );
    assert_eq!(c.keys, ["some-key-name", "another-key-name"]);
    assert_eq!(c.cluster, ClusterConfig::default());
    // The sample's keystore skeleton is all empty: ignored, with a warning pointing at seal.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("configure `seal:` instead"));
}

#[test]
fn defaults_are_a_dev_baseline() {
    let c = Config::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.listen_address(), "0.0.0.0:7373".parse().expect("literal"));
    assert_eq!(c.cache.any, Duration::from_secs(300));
    assert_eq!(c.cache.unused, Duration::from_secs(30));
    assert_eq!(c.cache.offline, Duration::ZERO);
    assert!(c.log.error && !c.log.audit);
    assert_eq!(c.limits, LimitsConfig::default());
    assert_eq!(c.limits.max_connections, 4096);
    assert_eq!(c.limits.body_timeout, Duration::from_secs(30));
    let k = &c.cluster;
    assert_eq!(k.heartbeat, Duration::from_millis(250));
    assert_eq!(
        (k.election_timeout.min, k.election_timeout.max),
        (Duration::from_secs(1), Duration::from_millis(1500))
    );
    assert_eq!(k.lease, Duration::from_millis(800));
    assert_eq!(k.read_index_wait, Duration::from_secs(5));
    assert_eq!(k.write_wait, Duration::from_secs(10));
    assert_eq!(k.snapshot_every, 10_000);
    assert_eq!(k.grpc.listen, "0.0.0.0:7473".parse().expect("literal"));
    assert!(!k.bootstrap && k.join.is_empty());
    assert_eq!(c.seal.recheck, Duration::from_secs(300));
    assert_eq!(c.seal.offline_grace, Duration::from_secs(3600));
    assert!(c.seal.providers.is_empty());
    // An empty file is the same baseline; a file with only comments too.
    assert_eq!(load("").expect("empty file").config, c);
    assert_eq!(load("# nothing\n").expect("comments").config, c);
    // ... but it is not enough to serve in production.
    assert!(matches!(
        c.check_required(),
        Err(ConfigError::Missing { .. })
    ));
}

#[test]
fn keystore_is_refused() {
    let err = refused("keystore:\n  vault:\n    endpoint: https://127.0.0.1:8200\n");
    assert!(matches!(err, ConfigError::Keystore { ref key } if key == "keystore.vault.endpoint"));
    assert!(
        err.to_string()
            .contains("kes-cluster keeps keys itself: configure `seal:` instead"),
        "{err}"
    );
    let err = refused("keystore: {fs: {path: ./keys}}");
    assert!(matches!(err, ConfigError::Keystore { .. }));
}

#[test]
fn unknown_keys_name_their_full_path() {
    let err = refused("adress: 0.0.0.0:7373\n");
    assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "adress"));
    assert!(
        err.to_string().contains("address"),
        "lists allowed keys: {err}"
    );

    let err = refused("policy:\n  my-app:\n    alow: [/v1/key/create/*]\n");
    match &err {
        ConfigError::UnknownKey { key, allowed } => {
            assert_eq!(key, "policy.my-app.alow");
            assert_eq!(allowed, "allow, deny, identities");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("remove it or correct its spelling")
    );

    for (yaml, path) in [
        ("tls: {cert: a, key: b, crt: c}", "tls.crt"),
        ("cache: {expiry: {unsused: 5s}}", "cache.expiry.unsused"),
        (
            "cluster: {grpc: {listen: \":7473\", advertize: a:1}}",
            "cluster.grpc.advertize",
        ),
        ("seal: {file: {path: /k, mode: 600}}", "seal.file.mode"),
        ("seal: {vault: {}}", "seal.vault"),
        ("keys: [{name: a, cipher: aes}]", "keys[0].cipher"),
        ("log: {eror: on}", "log.eror"),
    ] {
        let err = refused(yaml);
        assert!(
            matches!(err, ConfigError::UnknownKey { ref key, .. } if key == path),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn old_kes_spellings_get_advice() {
    let err = refused("root: abc\n");
    assert!(err.to_string().contains("write `admin:`"), "{err}");
    let err = refused("policy: {p: {paths: [/v1/status]}}");
    assert!(err.to_string().contains("write `allow:`"), "{err}");
}

#[test]
fn skip_auth_on_a_key_route_is_refused() {
    let err = refused("api:\n  /v1/key/create/:\n    skip_auth: true\n");
    assert!(
        matches!(err, ConfigError::SkipAuthNotAllowed { ref route } if route == "/v1/key/create/")
    );
    assert!(
        err.to_string()
            .contains("/v1/ready, /v1/status, /v1/metrics and /v1/api")
    );
    assert!(load("api: {/v1/metrics: {skip_auth: true}}").is_ok());
}

#[test]
fn bad_durations_are_refused() {
    for yaml in [
        "cache: {expiry: {any: 5 minutes}}",
        "cache: {expiry: {unused: 30}}",
        "api: {/v1/status: {timeout: -1s}}",
        "cluster: {heartbeat: 1d}",
        "seal: {recheck: soon}",
    ] {
        let err = refused(yaml);
        assert!(matches!(err, ConfigError::Duration { .. }), "{yaml}: {err}");
        assert!(err.to_string().contains("write it like"), "{err}");
    }
    let err = refused("cache: {expiry: {any: 5M}}");
    assert!(err.to_string().contains("`cache.expiry.any`"), "{err}");
}

#[test]
fn a_source_address_that_is_not_an_ip_is_refused() {
    let err = refused("cluster: {grpc: {source: node1}}");
    let text = err.to_string();
    assert!(text.contains("`cluster.grpc.source`"), "{text}");
    assert!(text.contains("'node1' is not an IP address"), "{text}");
}

#[test]
fn duration_forms() {
    let c = load(
        "cache: {expiry: {any: 1h30m, unused: 5m0s, offline: 0}}\ncluster: {heartbeat: 100ms, election_timeout: [1.5s, 3s], lease: 1s}\n",
    )
    .expect("valid")
    .config;
    assert_eq!(c.cache.any, Duration::from_secs(5400));
    assert_eq!(c.cache.unused, Duration::from_secs(300));
    assert_eq!(c.cluster.heartbeat, Duration::from_millis(100));
    assert_eq!(c.cluster.election_timeout.min, Duration::from_millis(1500));
    assert_eq!(c.cluster.lease, Duration::from_secs(1));
}

#[test]
fn bad_policy_names_are_refused() {
    for name in ["-app", "app-", "_", "my app", "a.b", "\"\""] {
        let err = refused(&format!("policy:\n  {name}:\n    allow: [/v1/status]\n"));
        assert!(
            matches!(err, ConfigError::PolicyName { .. }),
            "{name}: {err}"
        );
    }
    let long = "p".repeat(81);
    assert!(matches!(
        refused(&format!("policy: {{{long}: {{}}}}")),
        ConfigError::PolicyName { .. }
    ));
}

#[test]
fn bracket_and_escape_patterns_are_refused() {
    let err = refused("policy:\n  my-app:\n    deny: [\"/v1/key/[ab]*\"]\n");
    match &err {
        ConfigError::PolicyPattern {
            policy, pattern, ..
        } => {
            assert_eq!(policy, "my-app");
            assert_eq!(pattern, "/v1/key/[ab]*");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .contains("'*' and '?' are the only wildcards")
    );
    assert!(matches!(
        refused("policy: {p: {allow: ['/v1/key/create/\\*']}}"),
        ConfigError::PolicyPattern { .. }
    ));
}

#[test]
fn an_identity_in_two_policies_is_refused() {
    let err = refused(
        "policy:\n  a:\n    allow: [/v1/status]\n    identities: [id1]\n  b:\n    allow: [/v1/ready]\n    identities: [id2, id1]\n",
    );
    assert!(matches!(
        err,
        ConfigError::IdentityInTwoPolicies { ref identity, ref first, ref second }
            if identity == "id1" && first == "a" && second == "b"
    ));
}

#[test]
fn the_admin_in_a_policy_is_refused() {
    let err =
        refused("admin: {identity: boss}\npolicy: {p: {allow: [/v1/status], identities: [boss]}}");
    assert!(matches!(err, ConfigError::AdminInPolicy { ref policy, .. } if policy == "p"));
    // The rule holds when the admin comes from a flag after loading, too.
    let mut c = load("policy: {p: {identities: [boss]}}")
        .expect("valid")
        .config;
    c.admin_identity = Some("boss".into());
    assert!(matches!(
        c.validate(),
        Err(ConfigError::AdminInPolicy { .. })
    ));
}

#[test]
fn env_references_are_expanded() {
    let yaml = "address: ${ADDR}\nadmin: {identity: \"${ADMIN}\"}\ntls: {auth: \"${AUTH}\"}\napi: {/v1/ready: {skip_auth: \"${SKIP}\"}}\npolicy: {p: {allow: [\"${NOT_EXPANDED}\"], identities: [\"${APP}\"]}}\ncluster: {heartbeat: \"${HB}\"}\n";
    let loaded = load_with(
        &yaml.replace("[\"${NOT_EXPANDED}\"]", "[\"/v1/${X}\"]"),
        &[
            ("ADDR", "127.0.0.1:7000"),
            ("ADMIN", "boss"),
            ("AUTH", "on"),
            ("SKIP", "true"),
            ("APP", "app-id"),
            ("HB", "100ms"),
            ("X", "never-used"),
        ],
    )
    .expect("valid");
    let c = loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(c.address, Some("127.0.0.1:7000".parse().expect("literal")));
    assert_eq!(c.admin_identity.as_deref(), Some("boss"));
    assert!(c.tls.auth);
    assert!(c.api["/v1/ready"].skip_auth);
    assert_eq!(c.policies["p"].allow, ["/v1/${X}"]);
    assert_eq!(c.policies["p"].identities, ["app-id"]);
    assert_eq!(c.cluster.heartbeat, Duration::from_millis(100));
    // Partial references stay literal; `version` is never expanded.
    let c = load_with("tls: {ca: \"/etc/${CA}.pem\"}", &[("CA", "x")]).expect("valid");
    assert_eq!(
        c.config.tls.ca.as_deref(),
        Some(Path::new("/etc/${CA}.pem"))
    );
    let err = load_with("version: ${V}", &[("V", "v1")]).expect_err("not expanded");
    assert!(err.to_string().contains("`version`"), "{err}");
}

#[test]
fn unset_env_leaves_empty_values_with_warnings() {
    // An unset identity assigns nobody, and the node still starts (the KES page's promise).
    let loaded = load(
        "policy: {p: {allow: [/v1/status], identities: [\"${APP_ID}\"]}}\ntls: {ca: \"${CA}\"}",
    )
    .expect("valid");
    assert!(loaded.config.policies["p"].identities.is_empty());
    assert_eq!(loaded.config.tls.ca, None);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("`policy.p.identities[0]`")
            || loaded.warnings[1].contains("`policy.p.identities[0]`")
    );
    assert!(loaded.warnings.iter().any(|w| w.contains("APP_ID")));

    // A required value left empty is an error that names the variable.
    let err = refused("admin:\n  identity: ${ADMIN_IDENTITY}\n");
    match &err {
        ConfigError::Empty { key, cause, .. } => {
            assert_eq!(key, "admin.identity");
            assert!(cause.contains("ADMIN_IDENTITY"), "{cause}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        refused("tls: {key: \"${K}\", cert: c}"),
        ConfigError::Empty { .. }
    ));
    assert!(matches!(
        refused("seal: {file: {path: \"${ROOT_KEY}\"}}"),
        ConfigError::Empty { .. }
    ));
}

#[test]
fn file_errors_carry_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("node.yaml");
    std::fs::write(&path, "policy:\n  my-app:\n    alow: []\n").expect("write");
    let err = Config::load(&path).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("policy.my-app.alow"),
        "{msg}"
    );
    assert!(matches!(err.kind(), ConfigError::UnknownKey { .. }));
    let err = Config::load(dir.path().join("missing.yaml")).expect_err("refused");
    assert!(matches!(err, ConfigError::Read { .. }) && err.to_string().contains("--config"));
}

#[test]
fn other_values_are_checked() {
    for (yaml, key) in [
        ("address: localhost:7373", "address"),
        ("address: 0.0.0.0", "address"),
        ("version: v2", "version"),
        ("log: {audit: loud}", "log.audit"),
        ("tls: {auth: yes}", "tls.auth"),
        ("tls: {cert: c}", "tls"),
        ("keys: [{name: a}, {name: a}]", "keys[1].name"),
        ("keys: [{name: \"a/b\"}]", "keys[0].name"),
        (
            "policy: {p: {identities: [x, x]}}",
            "policy.p.identities[1]",
        ),
        ("cluster: {lease: 1s}", "cluster.lease"),
        ("cluster: {lease: 100ms}", "cluster.lease"),
        (
            "cluster: {election_timeout: [2s, 1s]}",
            "cluster.election_timeout",
        ),
        (
            "cluster: {election_timeout: 1s}",
            "cluster.election_timeout",
        ),
        ("cluster: {snapshot_every: 0}", "cluster.snapshot_every"),
        (
            "cluster: {cleanup_dead_after: 5s}",
            "cluster.cleanup_dead_after",
        ),
        ("cluster: {min_voters: 0}", "cluster.min_voters"),
        ("cluster: {join: [node1:7373]}", "cluster.join[0]"),
        ("cluster: {tls: {cert: a}}", "cluster.tls"),
        ("cluster: {bootstrap: maybe}", "cluster.bootstrap"),
        ("seal: {pkcs11: {module: m, key_label: k}}", "seal.pkcs11"),
        (
            "seal: {kes: {endpoint: http://a:1, cert: c, key: k, key_name: n}}",
            "seal.kes.endpoint",
        ),
    ] {
        let err = refused(yaml);
        let named = match &err {
            ConfigError::Invalid { key: k, .. } => k == key,
            ConfigError::Empty { key: k, .. } => k == key,
            _ => false,
        };
        assert!(named, "{yaml}: expected an error on `{key}`, got: {err}");
    }
}

#[test]
fn log_levels_mean_on() {
    let c = load("log: {error: OFF, audit: INFO+2}")
        .expect("valid")
        .config;
    assert_eq!(
        c.log,
        LogConfig {
            error: false,
            audit: true,
            ..LogConfig::default()
        }
    );
    let c = load("log: {error: \"\", audit: \"\"}")
        .expect("valid")
        .config;
    assert_eq!(c.log, LogConfig::default());
}

#[test]
fn the_data_dir_can_be_named_in_the_config() {
    let c = load("data_dir: /var/lib/kes").expect("valid").config;
    assert_eq!(c.data_dir, Some(PathBuf::from("/var/lib/kes")));
    assert_eq!(load("address: 0.0.0.0:7373").unwrap().config.data_dir, None);
    let err = load("data_dir: ''").expect_err("empty").to_string();
    assert!(err.contains("data_dir"), "{err}");
}

#[test]
fn audit_file_and_failure_mode_read_with_defaults() {
    let c = load("log: {audit_file: {path: /var/log/kes/audit.log}, audit_failure: closed}")
        .expect("valid")
        .config;
    assert_eq!(
        c.log.audit_file,
        Some(AuditFileConfig {
            path: "/var/log/kes/audit.log".into(),
            max_size: 100 << 20,
            keep: 5
        })
    );
    assert_eq!(c.log.audit_failure, AuditFailure::Closed);
    for (yaml, key) in [
        ("log: {audit_failure: maybe}", "log.audit_failure"),
        ("log: {audit_failure: closed}", "log.audit_failure"),
        ("log: {audit_file: {max_size: 5000}}", "log.audit_file"),
        (
            "log: {audit_file: {path: a, max_size: 10}}",
            "log.audit_file.max_size",
        ),
        (
            "log: {audit_file: {path: a, kept: 3}}",
            "log.audit_file.kept",
        ),
    ] {
        let err = load(yaml).expect_err(yaml).to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }
}

#[test]
fn cluster_and_seal_sections() {
    let yaml = r#"
cluster:
  grpc: {listen: 0.0.0.0:7473, advertise: node2:7473, source: 10.0.0.2}
  tls: {cert: node.crt, key: node.key, ca: node-ca.crt}
  join: [https://node1:7373, "${EXTRA_MEMBER}"]
  snapshot_every: 500
  cleanup_dead_after: 10m
  min_voters: 5
seal:
  pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: kes-cluster, key_label: kes-root}
  file: {path: /etc/kes/root.key}
  recheck: 1m
  offline_grace: 0s
"#;
    let loaded = load(yaml).expect("valid");
    let c = loaded.config;
    assert_eq!(c.cluster.grpc.advertise.as_deref(), Some("node2:7473"));
    assert_eq!(c.cluster.grpc.source, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(c.cluster.join, ["https://node1:7373"]);
    assert_eq!(
        loaded.warnings.len(),
        1,
        "the unset member: {:?}",
        loaded.warnings
    );
    assert_eq!(c.cluster.snapshot_every, 500);
    assert_eq!(c.cluster.cleanup_dead_after, Some(Duration::from_secs(600)));
    assert_eq!(c.cluster.min_voters, 5);
    assert_eq!(
        ClusterConfig::default().cleanup_dead_after,
        None,
        "off by default"
    );
    let kinds: Vec<_> = c.seal.providers.iter().map(SealProvider::kind).collect();
    assert_eq!(kinds, ["pkcs11", "file"], "file order is kept");
    assert_eq!(
        c.seal.providers[0],
        SealProvider::Pkcs11 {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: Pkcs11Token::Label("kes-cluster".into()),
            pin_env: "KES_HSM_PIN".into(),
            key_label: "kes-root".into(),
        }
    );
    assert_eq!(
        (c.seal.recheck, c.seal.offline_grace),
        (Duration::from_secs(60), Duration::ZERO)
    );

    let c = load(
        "seal:\n  providers:\n    - file: {path: /a}\n    - file: {path: /b}\n    - kes: {endpoint: https://kes:7373, cert: c, key: k, key_name: root}\n    - aws-kms: {endpoint: http://127.0.0.1:5000, region: us-east-1, key_id: alias/kes}\n",
    )
    .expect("valid")
    .config;
    assert_eq!(c.seal.providers.len(), 4);
    assert!(matches!(
        refused("seal: {providers: [{file: {path: /a}}], file: {path: /b}}"),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        refused("seal: {providers: [{file: {path: /a}, kes: {}}]}"),
        ConfigError::Invalid { .. }
    ));
    assert!(
        refused("seal: {providers: [{file: {path: /a}}, {file: {path: /a}}]}")
            .to_string()
            .contains("twice")
    );
    assert!(matches!(
        refused("seal: {file: {}}"),
        ConfigError::Missing { .. }
    ));
    assert!(matches!(
        refused("seal: {providers: [{hsm: {}}]}"),
        ConfigError::UnknownKey { .. }
    ));
}

#[test]
fn ignored_settings_warn() {
    let loaded = load("tls: {proxy: {identities: [p1]}}\ncache: {expiry: {offline: 5m, any: 0s}}")
        .expect("valid");
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains("tls.proxy")
            && w.contains("cache.expiry.offline")
            && w.contains("cache.expiry.any"),
        "{w}"
    );
    assert_eq!(loaded.config.cache.any, Duration::from_secs(300));
}

#[test]
fn malformed_yaml_and_shapes() {
    assert!(matches!(refused("tls: [a"), ConfigError::Yaml { .. }));
    assert!(matches!(refused("- a\n- b\n"), ConfigError::Yaml { .. }));
    // A policy written twice would otherwise lose one of its halves silently.
    assert!(matches!(
        refused("policy:\n  a: {allow: [/v1/status]}\n  a: {allow: [/v1/ready]}\n"),
        ConfigError::Yaml { .. }
    ));
    let err = refused("policy: {p: {allow: /v1/status}}");
    assert!(
        matches!(err, ConfigError::WrongType { ref key, .. } if key == "policy.p.allow"),
        "{err}"
    );
    assert!(matches!(refused("tls: on"), ConfigError::WrongType { .. }));
    assert!(matches!(
        refused("admin: {identity: [a]}"),
        ConfigError::WrongType { .. }
    ));
}
