//! Starting real `kes-node` processes and talking to them over real mTLS.

use kes_cluster::{Client, ClientConfig, Method, Response};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `kes-node` process on an ephemeral port, with its data dir.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub url: String,
    pub port: u16,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn node_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kes-node")
}

impl TestNode {
    /// `kes-node --dev` in a fresh directory, waited for until ready.
    pub async fn dev() -> TestNode {
        Self::dev_with_config(None).await
    }

    /// `kes-node --dev` with `yaml` as its `--config` file (written next to the data dir),
    /// waited for until ready.
    pub async fn dev_with_config(yaml: Option<&str>) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let port = free_port();
        let mut args = vec![
            "--dev".to_owned(),
            "--addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        if let Some(yaml) = yaml {
            let cfg = dir.path().join("node.yaml");
            std::fs::write(&cfg, yaml).expect("write config");
            args.extend(["--config".to_owned(), cfg.display().to_string()]);
        }
        let mut n = TestNode {
            dir,
            data,
            url: format!("https://127.0.0.1:{port}"),
            port,
            args,
            env: Vec::new(),
            child: None,
        };
        n.start().await;
        n
    }

    /// A node started with `args` (ports and paths already in them); not waited for.
    pub fn with_args(
        dir: tempfile::TempDir,
        data: PathBuf,
        port: u16,
        args: Vec<String>,
    ) -> TestNode {
        TestNode {
            dir,
            data,
            url: format!("https://127.0.0.1:{port}"),
            port,
            args,
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts the process and waits until `/v1/ready` answers 200.
    pub async fn start(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts the process without waiting.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .expect("log file");
        let child = Command::new(node_bin())
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kes-node");
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Waits for `/v1/ready` 200 with the admin client.
    pub async fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            // The node writes its dev certificates at start, so look for them each time.
            if !self.file("admin.key").exists() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let admin = self.admin();
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("kes-node exited with {status}:\n{}", self.log());
                }
            }
            if let Ok(r) = admin.request(Method::GET, "/v1/ready", &[], "").await {
                if r.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("kes-node never became ready:\n{}", self.log());
    }

    /// Waits until the process exits, returning its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t0 = Instant::now();
        let child = self.child.as_mut()?;
        while t0.elapsed() < within {
            if let Ok(Some(s)) = child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends `signal` (a `kill` signal name, e.g. "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then wait.
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

    pub async fn restart(&mut self) {
        self.stop();
        self.start().await;
    }

    /// Rewrites record `key` of sled tree `tree` in this stopped node's data dir, as someone
    /// who can write the data dir would.
    pub fn alter_record<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        tree: &str,
        key: &[u8],
        change: impl FnOnce(&mut T),
    ) {
        let config = kes_node::state::State::sled_config(&self.data.join("state")).expect("config");
        let db = config.open().expect("open sled");
        let tree = db.open_tree(tree).expect("tree");
        let raw = tree.get(key).expect("get").expect("the record exists");
        let mut record: T = rmp_serde::from_slice(&raw).expect("decode");
        change(&mut record);
        tree.insert(key, kes_node::state::encode_record(&record))
            .expect("insert");
        db.flush().expect("flush");
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }

    /// A client with the given certificate files.
    pub fn client_with(&self, cert: Option<&Path>, key: Option<&Path>) -> Client {
        Client::new(&ClientConfig {
            server: self.url.clone(),
            cert: cert.map(Path::to_owned),
            key: key.map(Path::to_owned),
            ca: None,
            insecure: true,
        })
        .expect("client")
    }

    /// The admin client of a dev node.
    pub fn admin(&self) -> Client {
        self.client_with(Some(&self.file("admin.crt")), Some(&self.file("admin.key")))
    }

    /// A fresh identity (cert, key, identity), made in the test's temp dir.
    pub fn new_identity(&self, name: &str) -> (PathBuf, PathBuf, String) {
        kes_cluster::new_identity(name, self.dir.path()).expect("identity")
    }

    /// A client for a fresh identity, and the identity.
    pub fn new_client(&self, name: &str) -> (Client, String) {
        let (cert, key, id) = self.new_identity(name);
        (self.client_with(Some(&cert), Some(&key)), id)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends a request with a JSON body and returns the response.
pub async fn call(c: &Client, method: Method, path: &str, body: &str) -> Response {
    c.request(method, path, &[], body.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes a policy as the admin.
pub async fn write_policy(admin: &Client, name: &str, allow: &[&str], deny: &[&str]) {
    let body = serde_json::json!({ "allow": allow, "deny": deny }).to_string();
    let r = call(
        admin,
        Method::POST,
        &format!("/v1/policy/write/{name}"),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Assigns an identity to a policy as the admin.
pub async fn assign(admin: &Client, policy: &str, id: &str) {
    let body = serde_json::json!({ "identity": id }).to_string();
    let r = call(
        admin,
        Method::POST,
        &format!("/v1/policy/assign/{policy}"),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Asserts status and exact KES error message.
pub fn assert_error(r: &Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()));
    assert_eq!(v["message"], message, "body: {}", r.text());
}

pub fn json(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "body: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

pub fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
