//! `kes-cluster dev` with one real node: it forms, prints what to export
//! (and what it exports works), stops cleanly on SIGTERM, and a second run
//! on the same directory brings the same cluster back with its data.
//! The three-node runs live with the cluster tests of the node crate.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kes-cluster"));
    for var in ["KES_SERVER", "KES_CLIENT_CERT", "KES_CLIENT_KEY", "KES_CA"] {
        command.env_remove(var);
    }
    command
}

/// A base port P whose `nodes` HTTPS ports (P..) and gRPC ports (P+100..) are all free.
///
/// The ports are taken below the kernel's ephemeral range (32768 and up here), so the
/// outgoing connections of tests running beside this one cannot take them between this
/// check and the node's bind, and each test of this binary starts its scan somewhere else.
fn free_base_port(nodes: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let seed = (std::process::id() % u32::from(SPAN)) as u16;
    loop {
        let step = NEXT.fetch_add(250, Ordering::Relaxed);
        let base = LOW + seed.wrapping_add(step) % SPAN;
        let all_free = (0..nodes).all(|i| {
            [base + i, base + 100 + i]
                .iter()
                .all(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if all_free {
            return base;
        }
    }
}

/// Starts `kes-cluster dev --nodes 1` and returns it with the variables of
/// the `export` line it prints once the node is ready.
async fn start_dev(dir: &Path, base: u16) -> (Child, HashMap<String, String>) {
    let mut child = cli()
        .args([
            "dev",
            "--nodes",
            "1",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension("stderr")).unwrap())
        // A failing test must not leave the supervisor (and so its node) behind.
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let export = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(vars) = line.strip_prefix("export ") {
                return vars.to_string();
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    assert!(
        !export.is_empty(),
        "no export line; stderr:\n{}",
        std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default()
    );
    // The rest of stdout (the status table) must not block the supervisor.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let vars = export
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (child, vars)
}

async fn run_with(vars: &HashMap<String, String>, args: &[&str]) -> Output {
    cli().args(args).envs(vars).output().await.unwrap()
}

/// SIGTERM, as `kill` or a service manager sends it; the supervisor must stop
/// its node and exit 0 within the grace period.
async fn stop(mut child: Child) {
    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on our own, not yet reaped child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("kes-cluster dev did not stop within 15 s")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_forms_stops_and_comes_back() {
    support::kes_node_binary(); // next to kes-cluster, where `dev` looks first
    let dir = support::node_dir().join("cluster");
    let base = free_base_port(1);
    let (child, vars) = start_dev(&dir, base).await;
    assert_eq!(vars["KES_SERVER"], format!("https://127.0.0.1:{base}"));
    assert_eq!(Path::new(&vars["KES_CA"]), dir.join("ca.crt"));
    // The exported variables work as they are: the client trusts the CA
    // that signed the node's certificate.
    let o = run_with(&vars, &["key", "create", "dev-key"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = std::fs::read_to_string(dir.join("node1/node.yaml")).unwrap();
    assert!(config.contains("  bootstrap: true\n"), "{config}");
    assert!(config.contains(&format!("    listen: 127.0.0.1:{}\n", base + 100)));
    stop(child).await;
    // The node has stopped too: its port is free again.
    assert!(std::net::TcpListener::bind(("127.0.0.1", base)).is_ok());

    let (child, again) = start_dev(&dir, base).await;
    assert_eq!(again, vars);
    let o = run_with(&again, &["key", "ls", "dev-*"]).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout), "dev-key\n");
    stop(child).await;
    let log = std::fs::read_to_string(dir.join("node1/node.log")).unwrap();
    assert_eq!(
        log.matches("=== kes-cluster dev: starting node1").count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_fail_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--nodes", "0"], "--nodes must be between 1 and 100"),
        (&["--base-port", "65500"], "pick a lower one"),
        (&["--kes-node", "/nonexistent/kes-node"], "no such file"),
    ];
    for (args, want) in cases {
        let o = cli()
            .arg("dev")
            .args(args)
            .arg("--dir")
            .arg(dir.path())
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    if port < 65000 {
        let o = cli()
            .args([
                "dev",
                "--nodes",
                "1",
                "--base-port",
                &port.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("is not free"), "{err}");
    }
}

/// An operator who kills a node with `kill -9` while the cluster starts is testing failover:
/// the others are still waited for and the cluster comes up. Before, the whole cluster was
/// torn down whenever a node exited before every node was ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_the_cluster_starts_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let base = free_base_port(3);
    let mut child = cli()
        .args([
            "dev",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    // node3 joins through the others, so nodes 1 and 2 form without it.
    let pid = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = err.next_line().await.unwrap() {
            said.push(line.clone());
            if line.trim_start().starts_with("node3 ") {
                let pid = line.split("pid ").nth(1).unwrap().split_whitespace().next();
                return pid.unwrap().parse::<i32>().unwrap();
            }
        }
        panic!("no pid for node3: {said:?}")
    })
    .await
    .expect("node3 started");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let export = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = out.next_line().await.unwrap() {
            if line.starts_with("export ") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the cluster came up without node3");
    assert!(export.contains("KES_SERVER="), "{export}");
    // The supervisor said why it went on.
    let note = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = err.next_line().await.unwrap() {
            if line.contains("node3 was killed") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(note, "no note about node3");
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}
