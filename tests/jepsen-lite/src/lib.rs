//! jepsen-lite: real `kes-node` processes on loopback, and the faults we inject into them
//! (`kill -9`, `SIGSTOP`, restarts), for the cluster tests and benchmarks.
//!
//! A cluster is made by `kes-cluster dev` exactly as a user makes one (certificates, configs,
//! bootstrap and joins), then that supervisor is stopped and every node is run as its own
//! process from its `node.yaml`, so a test can kill, pause and restart nodes one by one.
//!
//! The linearizability checking lives in its own modules:
//! * [`history`]: the operations of a run (invoke, then ok / fail / info) on one clock, recorded
//!   by client tasks and saved as JSON lines;
//! * [`model`]: the sequential specifications (key lifecycle register, revocation);
//! * [`checker`]: the per-key Wing–Gong–Lowe checker, with a witness for each violation.
#![deny(missing_docs)]

pub mod checker;
pub mod history;
pub mod model;
pub mod net;
pub mod net_cluster;
pub mod proxy;
pub mod scenario;

use kes_cluster::{Client, ClientConfig, Method};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Multi-node tests share two cores: they run one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the serial lock (an earlier test's panic releases it: tokio's mutex does not poison).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `target/debug` (or release) next to this test executable.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// `target/jepsen-lite`, beside the profile directories: where the harness writes its reports.
pub fn report_dir() -> PathBuf {
    let mut dir = bin_dir();
    dir.pop();
    dir.join("jepsen-lite")
}

/// Where [`bin`] finds the node binaries when not in [`bin_dir`].
static NODE_BINARIES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs `kes-node` and `kes-cluster` from `dir` from now on, instead of from [`bin_dir`]: the
/// self-test runs the planted-bug build, made in its own target directory.
pub fn use_node_binaries_from(dir: PathBuf) {
    let _ = NODE_BINARIES.set(dir);
}

/// The path of the node binary `name` (`kes-node`, `kes-cluster`) the tests run.
pub fn bin(name: &str) -> PathBuf {
    let p = NODE_BINARIES
        .get()
        .cloned()
        .unwrap_or_else(bin_dir)
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Builds `kes-node` and `kes-cluster` in this executable's profile, so the harness (which
/// looks for them next to this executable) runs binaries that match the sources. Without
/// `build`, only checks that they are there.
pub fn ensure_node_binaries(build: bool) -> Result<(), String> {
    let dir = bin_dir();
    let release = dir.file_name().is_some_and(|n| n == "release");
    if build {
        println!(
            "building kes-node and kes-cluster ({}) into {} ...",
            if release { "release" } else { "debug" },
            dir.display()
        );
        let profile: &[&str] = if release { &["--release"] } else { &[] };
        cargo_build_nodes(profile).map_err(|e| {
            format!(
                "{e}; fix the build, or pass --no-build to use the binaries already in {}",
                dir.display()
            )
        })?;
    }
    for name in ["kes-node", "kes-cluster"] {
        if !dir.join(name).exists() {
            return Err(format!(
                "{} is missing: run `cargo build --release --workspace` (or drop --no-build)",
                dir.join(name).display()
            ));
        }
    }
    Ok(())
}

/// Builds the planted-bug variant of the node binaries (the `planted-bugs` feature, debug) in
/// its own target directory, so it never mixes with real builds; where they are.
pub fn build_planted_binaries() -> Result<PathBuf, String> {
    let target = report_dir().with_file_name("planted");
    println!(
        "building the planted-bug kes-node and kes-cluster into {} ...",
        target.display()
    );
    let target_arg = target.display().to_string();
    cargo_build_nodes(&[
        "--features",
        "kes-node/planted-bugs",
        "--target-dir",
        &target_arg,
    ])?;
    Ok(target.join("debug"))
}

/// `cargo build -p kes-node -p kes-cluster --bins` with `extra` arguments.
fn cargo_build_nodes(extra: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--manifest-path", manifest])
        .args(["-p", "kes-node", "-p", "kes-cluster", "--bins"])
        .args(extra);
    // `cargo run` gives this process the package's variables. Build scripts that track them
    // (ring's tracks CARGO_MANIFEST_DIR) would see them change and rebuild, here and again in
    // the next plain `cargo build`: the nested build must not inherit them.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(name.as_ref());
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("building kes-node/kes-cluster failed ({status})"))
    }
}

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// `n` consecutive free ports, and their +100 partners for gRPC.
///
/// They are taken below the kernel's ephemeral range (32768 and up by default): a node
/// killed and restarted on its port must find it free again, and an outgoing connection of
/// any test running beside it could take an ephemeral port in between. Each call starts its
/// scan elsewhere, so that tests of one binary do not race for the same range.
pub fn free_base(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let seed = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..400 {
        let step = NEXT.fetch_add(211, Ordering::Relaxed);
        let base = LOW + seed.wrapping_add(step) % SPAN;
        if (base..base + n)
            .chain(base + 100..base + 100 + n)
            .all(port_free)
        {
            return base;
        }
    }
    panic!("no free port range");
}

/// One node process.
pub struct NodeProc {
    /// 1-based index, as `kes-cluster dev` numbers them.
    pub index: usize,
    /// Its KES URL.
    pub url: String,
    /// Its directory (`node.yaml`, `data/`, `node.log`).
    pub dir: PathBuf,
    /// Extra environment for the process (e.g. `SOFTHSM2_CONF`, `KES_HSM_PIN`).
    pub env: Vec<(String, String)>,
    /// The network namespace it runs in ([`net::Network`]); `None`: the harness's own.
    pub netns: Option<String>,
    child: Option<Child>,
}

impl NodeProc {
    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (or restarts) the process from its `node.yaml`.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "node {} is already running",
            self.index
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .expect("log");
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("kes-node"));
                c
            }
            None => Command::new(bin("kes-node")),
        };
        let child = command
            .arg("--config")
            .arg(self.dir.join("node.yaml"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kes-node");
        self.child = Some(child);
    }

    /// Whether the process is alive.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    self.child = None;
                    return s.code();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

/// The log indices of a node's snapshots, built or installed, in the order `log` shows them:
/// the node logs "snapshot at Some(N)" for each (`node/src/cluster/watch.rs`).
pub fn logged_snapshots(log: &str) -> Vec<u64> {
    log.split("snapshot at Some(")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect()
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
    }
}

/// A cluster of node processes.
pub struct Cluster {
    /// Holds every file; removed at the end.
    pub dir: tempfile::TempDir,
    /// The nodes, index 0 = node1.
    pub nodes: Vec<NodeProc>,
    /// Nodes made with the cluster but not started with it, to join it later.
    pub spares: Vec<NodeProc>,
    /// HTTPS port of node1.
    pub base: u16,
}

impl Cluster {
    /// Makes an `n`-node cluster with `kes-cluster dev`, then runs each node on its own with
    /// `extra` added to the `cluster:` section of every `node.yaml` (e.g. `snapshot_every: 50`).
    pub async fn start(n: usize, extra: &str) -> Cluster {
        Self::start_with_root(n, extra, None).await
    }

    /// Like [`Cluster::start`], with a given file root key (to restore another cluster's
    /// snapshot, both clusters must share the root key).
    pub async fn start_with_root(n: usize, extra: &str, root_key: Option<&[u8]>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(k) = root_key {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.path().join("root.key"))
                .expect("root key");
            f.write_all(k).expect("root key");
        }
        let base = free_base(n as u16);
        let log = std::fs::File::create(dir.path().join("dev.log")).expect("log");
        let mut dev = Command::new(bin("kes-cluster"))
            .args([
                "dev",
                "--nodes",
                &n.to_string(),
                "--base-port",
                &base.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kes-cluster dev");
        let mut c = Cluster {
            nodes: (1..=n)
                .map(|i| NodeProc {
                    index: i,
                    url: format!("https://127.0.0.1:{}", base + i as u16 - 1),
                    dir: dir.path().join(format!("node{i}")),
                    env: Vec::new(),
                    netns: None,
                    child: None,
                })
                .collect(),
            spares: Vec::new(),
            dir,
            base,
        };
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(c.dir.path().join("dev.log")).unwrap_or_default();
            if text.contains("export KES_SERVER") {
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) || matches!(dev.try_wait(), Ok(Some(_))) {
                let _ = dev.kill();
                panic!(
                    "kes-cluster dev did not form the cluster:\n{text}\n{}",
                    c.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = Command::new("kill").arg(dev.id().to_string()).status();
        let _ = dev.wait();
        for node in &c.nodes {
            let yaml = node.dir.join("node.yaml");
            let text = std::fs::read_to_string(&yaml).expect("node.yaml");
            let patched = text.replacen("cluster:\n", &format!("cluster:\n{extra}"), 1);
            std::fs::write(&yaml, patched).expect("write node.yaml");
        }
        for node in &mut c.nodes {
            node.start();
        }
        c.wait_all_ready(Duration::from_secs(60)).await;
        c
    }

    /// Gives node `i` a new node certificate (a new key, so a new SPKI) from the cluster CA,
    /// as the rejoin runbook asks after a node was removed.
    pub fn reissue_node_certificate(&self, i: usize) {
        self.issue_node_certificate(&self.nodes[i].dir, &format!("node{}", i + 1));
    }

    /// Writes `node.crt` and `node.key` into `dir`: a fresh key, certified by the cluster CA
    /// for 127.0.0.1 and localhost under `common_name`.
    pub fn issue_node_certificate(&self, dir: &Path, common_name: &str) {
        let d = self.dir.path();
        let ca_cert = std::fs::read_to_string(d.join("ca.crt")).expect("ca.crt");
        let ca_key = std::fs::read_to_string(d.join("ca.key")).expect("ca.key");
        let ca = kes_cluster::pki::CertificateAuthority::load(&ca_cert, &ca_key).expect("CA");
        let issued = ca
            .issue(
                &kes_cluster::pki::LeafRequest {
                    common_name: common_name.to_owned(),
                    dns: vec!["localhost".into()],
                    ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
                    client_auth: true,
                },
                None,
            )
            .expect("issue");
        std::fs::write(dir.join("node.crt"), issued.cert_pem).expect("write cert");
        std::fs::write(dir.join("node.key"), issued.key_pem).expect("write key");
    }

    /// Adds a node configured as `kes-cluster dev` configures a joiner (its own node
    /// certificate, new ports, `cluster.join` naming every current node) and starts it; its
    /// 0-based index.
    pub fn add_joining_node(&mut self) -> usize {
        let index = self.nodes.len() + 1;
        let template = &self.nodes[1];
        let dir = self.dir.path().join(format!("node{index}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        self.issue_node_certificate(&dir, &format!("node{index}"));
        for f in ["server.crt", "server.key"] {
            std::fs::copy(template.dir.join(f), dir.join(f)).expect("server certificate");
        }
        let old: u16 = template
            .url
            .trim_start_matches("https://127.0.0.1:")
            .parse()
            .expect("port");
        let port = free_base(1);
        let yaml = std::fs::read_to_string(template.dir.join("node.yaml"))
            .expect("node.yaml")
            .replace(
                &template.dir.display().to_string(),
                &dir.display().to_string(),
            )
            .replace(
                &format!("127.0.0.1:{}", old + 100),
                &format!("127.0.0.1:{}", port + 100),
            )
            .replace(
                &format!("address: 127.0.0.1:{old}"),
                &format!("address: 127.0.0.1:{port}"),
            )
            .replacen(
                "  join:\n",
                &format!("  join:\n    - {}\n", template.url),
                1,
            );
        std::fs::write(dir.join("node.yaml"), yaml).expect("write node.yaml");
        self.nodes.push(NodeProc {
            index,
            url: format!("https://127.0.0.1:{port}"),
            dir,
            env: Vec::new(),
            netns: None,
            child: None,
        });
        self.nodes[index - 1].start();
        index - 1
    }

    /// Rewrites node `i`'s `seal:` section (everything from `seal:` up to the next top-level
    /// key) with `seal_yaml`, which starts with `seal:`.
    pub fn set_seal(&self, i: usize, seal_yaml: &str) {
        let path = self.nodes[i].dir.join("node.yaml");
        let text = std::fs::read_to_string(&path).expect("node.yaml");
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.starts_with("seal:") {
                skipping = true;
                out.push_str(seal_yaml);
                if !seal_yaml.ends_with('\n') {
                    out.push('\n');
                }
                continue;
            }
            if skipping && (line.starts_with(' ') || line.is_empty()) {
                continue;
            }
            skipping = false;
            out.push_str(line);
            out.push('\n');
        }
        std::fs::write(&path, out).expect("write node.yaml");
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node{} ---\n{}", n.index, tail(&n.log(), 40)))
            .collect()
    }

    /// The admin client of node `i` (0-based).
    pub fn admin(&self, i: usize) -> Client {
        self.client_for(&self.nodes[i].url)
    }

    /// An admin client for any URL of this cluster.
    pub fn client_for(&self, url: &str) -> Client {
        Client::new(&ClientConfig {
            server: url.to_owned(),
            cert: Some(self.dir.path().join("admin.crt")),
            key: Some(self.dir.path().join("admin.key")),
            ca: Some(self.dir.path().join("ca.crt")),
            insecure: false,
        })
        .expect("client")
        .with_timeout(Duration::from_secs(20))
    }

    /// A client of node `i` presenting the certificate of `name`, issued by the cluster's CA
    /// on first use (so it is not the admin); with its identity. The same name is the same
    /// identity on every node.
    pub fn client_identity(&self, name: &str, i: usize) -> (Client, String) {
        let d = self.dir.path();
        let (cert, key) = (d.join(format!("{name}.crt")), d.join(format!("{name}.key")));
        if !cert.exists() {
            let ca_cert = std::fs::read_to_string(d.join("ca.crt")).expect("ca.crt");
            let ca_key = std::fs::read_to_string(d.join("ca.key")).expect("ca.key");
            let ca = kes_cluster::pki::CertificateAuthority::load(&ca_cert, &ca_key).expect("CA");
            let request = kes_cluster::pki::LeafRequest {
                common_name: name.into(),
                ..Default::default()
            };
            let issued = ca.issue(&request, None).expect("issue");
            std::fs::write(&key, &issued.key_pem).expect("write key");
            std::fs::write(&cert, &issued.cert_pem).expect("write cert");
        }
        let pem = std::fs::read(&cert).expect("read cert");
        let id = kes_cluster::identity_of_cert_pem(&pem).expect("identity");
        let client = Client::new(&ClientConfig {
            server: self.nodes[i].url.clone(),
            cert: Some(cert),
            key: Some(key),
            ca: Some(d.join("ca.crt")),
            insecure: false,
        })
        .expect("client")
        .with_timeout(Duration::from_secs(60));
        (client, id)
    }

    /// Node `i`'s `cluster` status object, or `None` when it does not answer.
    pub async fn status(&self, i: usize) -> Option<serde_json::Value> {
        let c = self.admin(i).with_timeout(Duration::from_secs(2));
        let r = c.request(Method::GET, "/v1/status", &[], "").await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        Some(v["cluster"].clone())
    }

    /// The members as node `i` reports them (`nodes` of `/v1/cluster/status`): id, role (a
    /// voter that does not answer is `unknown`, not `learner`), reachability.
    pub async fn members(&self, i: usize) -> Vec<serde_json::Value> {
        let st: serde_json::Value = self
            .call(i, Method::GET, "/v1/cluster/status", "")
            .await
            .expect("cluster status")
            .json()
            .expect("cluster status JSON");
        st["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// Node `i`'s role.
    pub async fn role(&self, i: usize) -> String {
        match self.status(i).await {
            Some(s) => s["role"].as_str().unwrap_or("").to_owned(),
            None => "down".into(),
        }
    }

    /// Waits until some node in `among` reports itself leader; its index.
    pub async fn leader_among(&self, among: &[usize], within: Duration) -> Option<usize> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            for &i in among {
                if self.role(i).await == "leader" {
                    return Some(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The leader among all nodes.
    pub async fn leader(&self) -> usize {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        match self.leader_among(&all, Duration::from_secs(30)).await {
            Some(l) => l,
            None => panic!("no leader:\n{}", self.logs()),
        }
    }

    /// Whether node `i` answers `/v1/ready` (or `?write=true`) with 200.
    pub async fn ready(&self, i: usize, write: bool) -> bool {
        let path = if write {
            "/v1/ready?write=true"
        } else {
            "/v1/ready"
        };
        let c = self.admin(i).with_timeout(Duration::from_secs(2));
        matches!(c.request(Method::GET, path, &[], "").await, Ok(r) if r.status == 200)
    }

    /// Waits until node `i` is ready.
    pub async fn wait_ready(&self, i: usize, within: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.ready(i, false).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Waits until every running node is ready.
    pub async fn wait_all_ready(&mut self, within: Duration) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].running() && !self.wait_ready(i, within).await {
                panic!("node{} never became ready:\n{}", i + 1, self.logs());
            }
        }
    }

    /// Stops node `i` (SIGTERM), starts it again with exactly `env` added to its environment
    /// (the debug-build failpoints, e.g. `KES_TEST_NEVER_CAMPAIGN`), and waits until it is
    /// ready.
    pub async fn restart_with(&mut self, i: usize, env: &[(&str, &str)]) {
        self.nodes[i].stop();
        self.nodes[i].env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.nodes[i].start();
        if !self.wait_ready(i, Duration::from_secs(60)).await {
            panic!("node{} did not come back:\n{}", i + 1, self.logs());
        }
    }

    /// Restarts every node with failpoints and keeps `leader` leading: first each follower,
    /// with `follower_env` and `KES_TEST_NEVER_CAMPAIGN`; then the leader with `leader_env`.
    /// As nobody else campaigns, the leader comes back as leader of its own term.
    pub async fn restart_keeping_leader(
        &mut self,
        leader: usize,
        leader_env: &[(&str, &str)],
        follower_env: &[(&str, &str)],
    ) {
        let mut env = vec![("KES_TEST_NEVER_CAMPAIGN", "1")];
        env.extend_from_slice(follower_env);
        for i in (0..self.nodes.len()).filter(|&i| i != leader) {
            self.restart_with(i, &env).await;
        }
        self.restart_with(leader, leader_env).await;
        let now = self.leader().await;
        assert_eq!(now, leader, "the leader changed:\n{}", self.logs());
    }

    /// Sends a request to node `i`.
    pub async fn call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<kes_cluster::Response, kes_cluster::Error> {
        self.admin(i)
            .request(method, path, &[], body.to_owned())
            .await
    }

    /// A data key of key `name` from node `i`, with context `Y3R4`: the JSON answer
    /// (`plaintext`, `ciphertext`, `version`). Panics unless the node answers 200.
    pub async fn generate(&self, i: usize, name: &str) -> serde_json::Value {
        let path = format!("/v1/key/generate/{name}");
        let r = self.call(i, Method::PUT, &path, r#"{"context":"Y3R4"}"#);
        let r = r.await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json().expect("a data key")
    }

    /// Asserts that node `i` decrypts `dek` (from [`Cluster::generate`]) with key `name` to
    /// the plaintext it was handed out with.
    pub async fn assert_decrypts(&self, i: usize, name: &str, dek: &serde_json::Value) {
        let body = serde_json::json!({ "ciphertext": dek["ciphertext"], "context": "Y3R4" });
        let (path, body) = (format!("/v1/key/decrypt/{name}"), body.to_string());
        let r = self.call(i, Method::PUT, &path, &body);
        let r = r.await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.status, 200, "node{} {path}: {}", i + 1, r.text());
        let plaintext = r.json::<serde_json::Value>().expect("a plaintext")["plaintext"].clone();
        assert_eq!(plaintext, dek["plaintext"], "node{} {path}", i + 1);
    }

    /// The "became leader" lines of every node's log, as (term, node index).
    pub fn leader_terms(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            for line in n.log().lines() {
                if let Some(rest) = line.split("became leader in term ").nth(1) {
                    if let Ok(term) = rest.split_whitespace().next().unwrap_or("").parse() {
                        out.push((term, n.index));
                    }
                }
            }
        }
        out
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
