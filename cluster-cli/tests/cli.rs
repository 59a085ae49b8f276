//! The `kes-cluster` binary against the mock server, driven through the
//! environment the way the kes CLI is (KES_SERVER, KES_CLIENT_CERT, ...).

mod support;

use std::path::Path;
use std::process::Output;

use support::{MockKes, ServerCert};
use tokio::process::Command;

fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kes-cluster"));
    for var in [
        "MINIO_KES_SERVER",
        "MINIO_KMS_KES_ENDPOINT",
        "KES_API_KEY",
        "KES_ENCLAVE",
    ] {
        command.env_remove(var);
    }
    command
}

async fn run(mock: &MockKes, args: &[&str]) -> Output {
    cli()
        .args(args)
        .env("KES_SERVER", &mock.url)
        .env("KES_CLIENT_CERT", &mock.admin_cert)
        .env("KES_CLIENT_KEY", &mock.admin_key)
        .env("KES_CA", &mock.server_cert)
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_commands_round_trip() {
    let mock = support::start(ServerCert::SelfSignedCa).await;
    let o = run(&mock, &["key", "create", "cli-key"]).await;
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&mock, &["key", "create", "cli-key"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "Error: key already exists\n");

    let o = run(&mock, &["key", "dek", "cli-key"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(values.len(), 2, "{text}");
    let (plaintext, ciphertext) = (values[0], values[1]);
    assert_eq!(plaintext.len(), 44);

    let o = run(&mock, &["key", "decrypt", "cli-key", ciphertext]).await;
    assert_eq!(stdout(&o).trim(), plaintext, "{}", stderr(&o));

    let o = run(&mock, &["key", "dek", "cli-key", "--json"]).await;
    let dek: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(dek["plaintext"], plaintext);

    let o = run(&mock, &["key", "ls"]).await;
    assert_eq!(stdout(&o), "cli-key\n");

    let o = run(&mock, &["key", "decrypt", "cli-key", "not base64!"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Error: the ciphertext must be base64"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_status_commands() {
    let mock = support::start(ServerCert::SelfSignedLeaf).await;
    let o = run(&mock, &["identity", "ls"]).await;
    assert_eq!(stdout(&o).trim(), mock.admin_identity, "{}", stderr(&o));
    let o = run(&mock, &["identity", "info"]).await;
    assert!(stdout(&o).contains(&mock.admin_identity), "{}", stderr(&o));
    let o = run(&mock, &["status"]).await;
    assert!(stdout(&o).contains("mock"), "{}", stderr(&o));
    let o = run(&mock, &["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["uptime"], 61);

    let dir = tempfile::tempdir().unwrap();
    let o = cli()
        .args(["identity", "new", "app"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64);
    assert!(Path::new(&dir.path().join("app.key")).exists());
    let crt = dir.path().join("app.crt");
    let o = cli()
        .args(["identity", "of"])
        .arg(&crt)
        .output()
        .await
        .unwrap();
    assert_eq!(stdout(&o).trim(), id);
    // A second `new` must not clobber the key silently.
    let o = cli()
        .args(["identity", "new", "app"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_clearly() {
    let o = cli()
        .args(["key", "ls"])
        .env("KES_SERVER", "https://127.0.0.1:1")
        .env("KES_CLIENT_CERT", "/nonexistent.crt")
        .env("KES_CLIENT_KEY", "/nonexistent.key")
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    // Files are checked before the network: the first problem is reported.
    assert!(
        stderr(&o).starts_with("Error: cannot read certificate /nonexistent.crt"),
        "{}",
        stderr(&o)
    );

    let o = cli()
        .args(["key", "ls", "-k"])
        .env("KES_SERVER", "https://127.0.0.1:1")
        .env_remove("KES_CLIENT_CERT")
        .env_remove("KES_CLIENT_KEY")
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .starts_with("Error: cannot reach KES server https://127.0.0.1:1: connection refused"),
        "{}",
        stderr(&o)
    );
}
