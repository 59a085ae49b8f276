//! Start-up from a KES config file: the seed's sample, refusals, read-only config policies.

use crate::support::*;
use kes_cluster::Method;
use std::path::Path;
use std::time::Duration;

/// Certificates and a root key outside the data dir, as a production setup has them.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) admin_id: String,
}

pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = kes_node::dev::server_certificate().unwrap();
    std::fs::write(dir.path().join("server.crt"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    let (_, _, admin_id) = kes_cluster::new_identity("admin", dir.path()).unwrap();
    kes_node::seal::FileRootKey::create(&dir.path().join("root.key")).unwrap();
    Setup { dir, admin_id }
}

pub(crate) fn node_with(s: Setup, yaml: &str) -> TestNode {
    let p = s.dir.path();
    let cfg = p.join("node.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let port = free_port();
    let data = p.join("data");
    let args = vec![
        "--config".into(),
        cfg.display().to_string(),
        "--addr".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    TestNode::with_args(s.dir, data, port, args)
}

fn base_yaml(p: &Path, admin: &str) -> String {
    format!(
        "admin:\n  identity: {admin}\ntls:\n  key: {0}/server.key\n  cert: {0}/server.crt\nseal:\n  file:\n    path: {0}/root.key\n",
        p.display()
    )
}

#[tokio::test]
async fn seed_sample_config_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/kes-sample-config.yml"
    ))
    .unwrap();
    let env = |_: &str| Some(String::new());
    let loaded = kes_node::config::Config::from_yaml(&text, &env);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[tokio::test]
async fn config_policies_are_loaded_and_read_only() {
    let s = setup();
    let (app_cert, app_key, app_id) = kes_cluster::new_identity("app", s.dir.path()).unwrap();
    let yaml = format!(
        "{}policy:\n  minio:\n    allow:\n    - /v1/key/create/minio-*\n    - /v1/key/generate/minio-*\n    identities:\n    - {app_id}\nkeys:\n  - name: minio-default\n",
        base_yaml(s.dir.path(), &s.admin_id)
    );
    let mut n = node_with(s, &yaml);
    n.spawn();
    let admin = n.client_with(
        Some(&n.dir.path().join("admin.crt")),
        Some(&n.dir.path().join("admin.key")),
    );
    let app = n.client_with(Some(&app_cert), Some(&app_key));
    wait_ready_with(&admin).await;
    assert_eq!(
        call(&app, Method::PUT, "/v1/key/generate/minio-default", "{}")
            .await
            .status,
        200,
        "key from keys: exists"
    );
    assert_eq!(
        call(&app, Method::PUT, "/v1/key/create/minio-x", "")
            .await
            .status,
        200
    );
    assert_eq!(
        call(&app, Method::PUT, "/v1/key/create/other", "")
            .await
            .status,
        403
    );
    let r = call(
        &admin,
        Method::POST,
        "/v1/policy/write/minio",
        r#"{"allow":["/v1/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 403, "config policies are read-only: {}", r.text());
    assert!(r.text().contains("config file"));
    let r = call(
        &admin,
        Method::DELETE,
        &format!("/v1/identity/delete/{app_id}"),
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

pub(crate) async fn wait_ready_with(c: &kes_cluster::Client) {
    for _ in 0..200 {
        if let Ok(r) = c.request(Method::GET, "/v1/ready", &[], "").await {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node never ready");
}

fn start_fails(yaml_of: impl FnOnce(&Path, &str) -> String) -> String {
    let s = setup();
    let yaml = yaml_of(s.dir.path(), &s.admin_id);
    let mut n = node_with(s, &yaml);
    n.spawn();
    let code = n.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "start-up must fail:\n{}", n.log());
    n.log()
}

#[test]
fn bad_configs_stop_start_up_with_a_clear_error() {
    let log = start_fails(|p, a| format!("{}bogus: 1\n", base_yaml(p, a)));
    assert!(log.contains("bogus"), "{log}");
    let log =
        start_fails(|p, a| format!("{}keystore:\n  fs:\n    path: /tmp/x\n", base_yaml(p, a)));
    assert!(log.contains("configure `seal:` instead"), "{log}");
    let log = start_fails(|p, a| {
        format!(
            "{}api:\n  /v1/key/create/:\n    skip_auth: true\n",
            base_yaml(p, a)
        )
    });
    assert!(log.contains("skip_auth"), "{log}");
    let log = start_fails(|p, a| {
        format!(
            "admin:\n  identity: {a}\ntls:\n  key: {0}/server.key\n  cert: {0}/server.crt\nseal:\n  file:\n    path: {0}/data/root.key\n",
            p.display()
        )
    });
    assert!(log.contains("inside the data dir"), "{log}");
}

#[tokio::test]
async fn a_different_admin_refuses_to_start_on_existing_data() {
    let s = setup();
    let yaml = base_yaml(s.dir.path(), &s.admin_id);
    let mut n = node_with(s, &yaml);
    n.spawn();
    let admin = n.client_with(
        Some(&n.dir.path().join("admin.crt")),
        Some(&n.dir.path().join("admin.key")),
    );
    wait_ready_with(&admin).await;
    n.stop();
    let other = "a".repeat(64);
    let cfg = n.dir.path().join("node.yaml");
    std::fs::write(&cfg, base_yaml(n.dir.path(), &other)).unwrap();
    n.spawn();
    assert_eq!(n.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        n.log().contains("differs from this cluster's admin"),
        "{}",
        n.log()
    );
}

/// `data_dir:` in the config names the data dir, so `kes-node --config FILE` alone starts the
/// node the file describes; `--data-dir` still overrides it.
#[tokio::test]
async fn the_config_names_the_data_dir_and_the_flag_overrides_it() {
    let s = setup();
    let p = s.dir.path().to_owned();
    let port = free_port();
    let named = p.join("named-in-config");
    let yaml = format!(
        "{}data_dir: {}\naddress: 127.0.0.1:{port}\n",
        base_yaml(&p, &s.admin_id),
        named.display()
    );
    std::fs::write(p.join("node.yaml"), yaml).unwrap();
    let config_only = vec!["--config".into(), p.join("node.yaml").display().to_string()];
    let mut n = TestNode::with_args(s.dir, named.clone(), port, config_only.clone());
    n.spawn();
    wait_for_state_in(&n, &named, "no state in the config's data dir").await;
    n.stop();
    let flag = p.join("from-the-flag");
    n.args = config_only;
    n.args
        .extend(["--data-dir".into(), flag.display().to_string()]);
    n.spawn();
    wait_for_state_in(&n, &flag, "--data-dir did not override the config").await;
}

/// Waits until the node has made its state in `data_dir`; else fails with `why`.
async fn wait_for_state_in(n: &TestNode, data_dir: &Path, why: &str) {
    let t0 = std::time::Instant::now();
    while !data_dir.join("state").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{why}:\n{}",
            n.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
