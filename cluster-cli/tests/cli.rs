//! The `kes-cluster` binary against a real `kes-node --dev`, driven through
//! the environment the way the kes CLI is (KES_SERVER, KES_CLIENT_CERT, ...).

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;

use support::Node;
use tokio::process::Command;

/// One node for this file.
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| support::start_node(|_| Vec::new()))
}

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

async fn run(args: &[&str]) -> Output {
    let node = node();
    cli()
        .args(args)
        .env("KES_SERVER", &node.url)
        .env("KES_CLIENT_CERT", &node.admin_cert)
        .env("KES_CLIENT_KEY", &node.admin_key)
        .env("KES_CA", &node.server_cert)
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
    let o = run(&["key", "create", "cli-key"]).await;
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&["key", "create", "cli-key"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "Error: key already exists\n");

    let o = run(&["key", "dek", "cli-key"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(values.len(), 2, "{text}");
    let (plaintext, ciphertext) = (values[0], values[1]);
    assert_eq!(plaintext.len(), 44);

    let o = run(&["key", "decrypt", "cli-key", ciphertext]).await;
    assert_eq!(stdout(&o).trim(), plaintext, "{}", stderr(&o));

    let o = run(&["key", "dek", "cli-key", "--json"]).await;
    let dek: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(dek["plaintext"].as_str().map(str::len), Some(44));

    let o = run(&["key", "ls", "cli-*"]).await;
    assert_eq!(stdout(&o), "cli-key\n");

    let o = run(&["key", "decrypt", "cli-key", "not base64!"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Error: the ciphertext must be base64"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_version_commands() {
    assert!(
        run(&["key", "create", "rotated-by-cli"])
            .await
            .status
            .success()
    );
    let o = run(&["key", "encrypt", "rotated-by-cli", "before"]).await;
    let old = stdout(&o).trim().to_owned();
    let o = run(&["key", "rotate", "rotated-by-cli"]).await;
    assert_eq!(stdout(&o), "rotated-by-cli: version 2\n", "{}", stderr(&o));
    // --to N: a retry leaves a key already at N as it is; any other version is refused.
    for _retry in 0..2 {
        let o = run(&["key", "rotate", "rotated-by-cli", "--to", "3"]).await;
        assert_eq!(stdout(&o), "rotated-by-cli: version 3\n", "{}", stderr(&o));
    }
    let o = run(&["key", "rotate", "rotated-by-cli", "--to", "5"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the key's newest version is 3: it cannot be rotated to version 5"),
        "{}",
        stderr(&o)
    );
    let o = run(&["key", "info", "rotated-by-cli"]).await;
    assert!(stdout(&o).contains("Version"), "{}", stdout(&o));
    let o = run(&["key", "rewrap", "rotated-by-cli", &old]).await;
    let rewrapped = stdout(&o).trim().to_owned();
    assert!(o.status.success() && rewrapped != old, "{}", stderr(&o));
    let o = run(&["key", "retire", "rotated-by-cli", "--below", "2"]).await;
    assert_eq!(o.status.code(), Some(1), "retire without --yes");
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let o = run(&["key", "retire", "rotated-by-cli", "--below", "2", "--yes"]).await;
    assert_eq!(
        stdout(&o),
        "rotated-by-cli: versions kept: 2, 3\n",
        "{}",
        stderr(&o)
    );
    let o = run(&["key", "decrypt", "rotated-by-cli", &old]).await;
    assert_eq!(o.status.code(), Some(1), "a retired version decrypted");
    let o = run(&["key", "decrypt", "rotated-by-cli", &rewrapped]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["key", "min-version", "rotated-by-cli", "2"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["key", "rotation", "rotated-by-cli", "720h"]).await;
    assert_eq!(
        stdout(&o),
        "rotated-by-cli: rotated every 30days\n",
        "{}",
        stderr(&o)
    );
    let o = run(&["key", "rotation", "rotated-by-cli", "off"]).await;
    assert_eq!(
        stdout(&o),
        "rotated-by-cli: automatic rotation off\n",
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_node_status_commands() {
    let node = node();
    let o = run(&["identity", "info"]).await;
    assert!(stdout(&o).contains(&node.admin_identity), "{}", stderr(&o));
    let o = run(&["status", "--node"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&node.url), "{}", stdout(&o));
    assert!(stdout(&o).contains("Uptime"), "{}", stdout(&o));
    let o = run(&["status", "--node", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(status["uptime"].is_u64(), "{status}");

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

/// `status` on a one-node cluster: the node leads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_of_a_single_node() {
    let o = run(&["status"]).await;
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("leader"), "{text}");
    assert!(text.contains("LAST CONTACT"), "{text}");
    let o = run(&["status", "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let leader = status["leader"].as_u64().expect("a leader");
    assert!(text.contains(&leader.to_string()), "{text}");
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
}

/// Snapshot save writes a private file and never clobbers one; restore
/// refuses a cluster that already has state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.bin");
    let path = file.to_str().unwrap();
    let o = run(&["snapshot", "save", path]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Wrote a snapshot of "),
        "{}",
        stdout(&o)
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert!(meta.len() > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let o = run(&["snapshot", "save", path]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = run(&["snapshot", "save", "-f", path]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // The node has keys: a restore must be refused, with a reason.
    let o = run(&["snapshot", "restore", path]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).starts_with("Error: "), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_commands_report_errors() {
    let node = node();
    // Joining through oneself is caught before anything is sent.
    let o = run(&["join", &node.url]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("name another member"), "{}", stderr(&o));
    let o = run(&["remove", "12345"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).starts_with("Error: "), "{}", stderr(&o));
    // A --dev node cannot join another cluster; the server says why.
    let o = run(&["join", "https://127.0.0.1:1"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("Asking "), "{err}");
    assert!(
        err.lines().last().unwrap_or("").starts_with("Error: "),
        "{err}"
    );
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
