//! The `kes` seal provider against a real upstream: a second `kes-node --dev` process holding
//! the root key `root-key`, reached over mTLS exactly as a production node would reach MinIO
//! KES or another kes-cluster.
//!
//! Each test starts at most one upstream, on its own port and in its own directory, so the
//! tests may run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kes_cluster::{Client, ClientConfig, Method};
use kes_node::seal::{KesRootKey, ProviderError, RootKeyProvider};

const KEY: &str = "root-key";

/// A `kes-node --dev` process; killed when dropped.
struct Upstream {
    dir: tempfile::TempDir,
    data: PathBuf,
    url: String,
    child: Option<Child>,
}

impl Upstream {
    /// A ready upstream with the key `root-key`.
    async fn with_root_key() -> Upstream {
        let up = Upstream::spawn(&[]);
        up.wait_ready().await;
        up.admin().create_key(KEY).await.expect("create root-key");
        up
    }

    /// Starts `kes-node --dev` with `extra` arguments; does not wait.
    fn spawn(extra: &[&str]) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Bind and drop: free a moment ago. Parallel tests each pick their own.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("upstream.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kes-node"))
            .args([
                "--dev",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            .args(extra)
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kes-node");
        Upstream {
            dir,
            data,
            url: format!("https://127.0.0.1:{port}"),
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("upstream.log")).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))))
    }

    /// Waits for the dev certificates, then for `GET /v1/ready` 200.
    async fn wait_ready(&self) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if self.data.join("admin.key").exists() && self.data.join("server.crt").exists() {
                let ready = self
                    .admin()
                    .request(Method::GET, "/v1/ready", &[], "")
                    .await;
                if ready.is_ok_and(|r| r.status == 200) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the upstream never became ready:\n{}", self.log());
    }

    fn client(&self, cert: &Path, key: &Path) -> Client {
        Client::new(&ClientConfig {
            server: self.url.clone(),
            cert: Some(cert.to_owned()),
            key: Some(key.to_owned()),
            ca: Some(self.data.join("server.crt")),
            insecure: false,
        })
        .expect("client")
    }

    fn admin(&self) -> Client {
        self.client(&self.data.join("admin.crt"), &self.data.join("admin.key"))
    }

    /// The seal as a node would configure it, with the given client certificate.
    fn seal_as(&self, cert: &Path, key: &Path) -> KesRootKey {
        KesRootKey::new(
            &self.url,
            cert,
            key,
            Some(&self.data.join("server.crt")),
            KEY,
        )
        .expect("provider")
    }

    /// The seal with the upstream's admin certificate (allowed everything).
    fn seal(&self) -> KesRootKey {
        self.seal_as(&self.data.join("admin.crt"), &self.data.join("admin.key"))
    }

    /// A fresh client certificate that no policy on the upstream names.
    fn stranger(&self) -> (PathBuf, PathBuf) {
        let (cert, key, _) =
            kes_cluster::new_identity("stranger", self.dir.path()).expect("identity");
        (cert, key)
    }

    /// Kills the process (by its id) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cluster_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    k
}

const AAD: &[u8] = b"kes-cluster cluster key v1\0cluster-1";

fn is_refused(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Refused(_))
}

fn is_unreachable(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Unreachable(_))
}

/// Mean and the slowest of `n` unwraps.
async fn time_unwraps(seal: &KesRootKey, wrapped: &[u8], n: u32) -> (Duration, Duration) {
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let key = seal.unwrap(wrapped, AAD).await.expect("unwrap");
        let took = t.elapsed();
        assert_eq!(*key, cluster_key());
        total += took;
        worst = worst.max(took);
    }
    (total / n, worst)
}

#[tokio::test]
async fn wraps_and_unwraps_bound_to_the_aad() {
    let up = Upstream::with_root_key().await;
    let seal = up.seal();
    let wrapped = seal.wrap(&cluster_key(), AAD).await.expect("wrap");
    assert!(
        !wrapped.windows(32).any(|w| w == cluster_key()),
        "the wrapped copy must not contain the cluster key"
    );

    // A fresh provider pays for the TCP and TLS handshakes on its first unwrap, as a node
    // does at start; later unwraps (the re-checks) reuse the connection.
    let cold = KesRootKey::new(
        &up.url,
        &up.data.join("admin.crt"),
        &up.data.join("admin.key"),
        Some(&up.data.join("server.crt")),
        KEY,
    )
    .expect("provider");
    let t = Instant::now();
    assert_eq!(
        *cold.unwrap(&wrapped, AAD).await.expect("unwrap"),
        cluster_key()
    );
    let first = t.elapsed();
    let (mean, worst) = time_unwraps(&cold, &wrapped, 50).await;
    eprintln!(
        "kes seal unwrap latency (upstream kes-node --dev on loopback): first, with TLS handshake: \
         {first:?}; then over 50 on a kept connection: mean {mean:?}, slowest {worst:?}"
    );

    let e = seal
        .unwrap(&wrapped, b"kes-cluster cluster key v1\0cluster-2")
        .await
        .expect_err("another aad");
    assert!(is_refused(&e), "{e:?}");
    assert!(e.to_string().contains("not authentic"), "{e}");
    let e = seal.unwrap(&wrapped, b"").await.expect_err("no aad");
    assert!(is_refused(&e), "{e:?}");

    let mut tampered = wrapped.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let e = seal.unwrap(&tampered, AAD).await.expect_err("tampered");
    assert!(is_refused(&e), "{e:?}");

    // Something the upstream opens, but that is not a 32-byte cluster key.
    let short = up
        .admin()
        .encrypt(KEY, b"sixteen bytes!!!", Some(AAD))
        .await
        .expect("encrypt");
    let e = seal.unwrap(&short, AAD).await.expect_err("16 bytes");
    assert!(is_refused(&e), "{e:?}");

    // A CA that did not issue the upstream's certificate is a configuration mistake.
    let wrong_ca = KesRootKey::new(
        &up.url,
        &up.data.join("admin.crt"),
        &up.data.join("admin.key"),
        Some(&up.data.join("admin.crt")),
        KEY,
    )
    .expect("provider");
    let e = wrong_ca.unwrap(&wrapped, AAD).await.expect_err("untrusted");
    assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("admin.crt"), "{e}");

    // No error carries key material.
    for e in [e, seal.unwrap(&wrapped, b"x").await.expect_err("x")] {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(&hex(&cluster_key())), "{text}");
    }
    assert!(!format!("{seal:?}").contains("BEGIN"), "{seal:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_deleted_key_is_refused() {
    let up = Upstream::with_root_key().await;
    let seal = up.seal();
    let wrapped = seal.wrap(&cluster_key(), AAD).await.expect("wrap");
    up.admin()
        .request(Method::DELETE, &format!("/v1/key/delete/{KEY}"), &[], "")
        .await
        .expect("delete")
        .error_for_status()
        .expect("deleted");
    let e = seal.unwrap(&wrapped, AAD).await.expect_err("deleted");
    assert!(is_refused(&e), "{e:?}");
    assert!(e.to_string().contains("key does not exist"), "{e}");
    let e = seal.wrap(&cluster_key(), AAD).await.expect_err("deleted");
    assert!(is_refused(&e), "{e:?}");
}

#[tokio::test]
async fn a_stopped_upstream_is_unreachable() {
    let mut up = Upstream::with_root_key().await;
    let seal = up.seal();
    let wrapped = seal.wrap(&cluster_key(), AAD).await.expect("wrap");
    up.stop();
    let t = Instant::now();
    let e = seal.unwrap(&wrapped, AAD).await.expect_err("stopped");
    assert!(is_unreachable(&e), "{e:?}");
    let e = seal.wrap(&cluster_key(), AAD).await.expect_err("stopped");
    assert!(is_unreachable(&e), "{e:?}");
    // A refused connection is reported at once, not after the 10 s timeout.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn an_identity_without_a_policy_is_refused() {
    let up = Upstream::with_root_key().await;
    let wrapped = up.seal().wrap(&cluster_key(), AAD).await.expect("wrap");
    let (cert, key) = up.stranger();
    let seal = up.seal_as(&cert, &key);
    let e = seal.unwrap(&wrapped, AAD).await.expect_err("no policy");
    assert!(is_refused(&e), "{e:?}");
    assert!(e.to_string().contains("403"), "{e}");
    let e = seal.wrap(&cluster_key(), AAD).await.expect_err("no policy");
    assert!(is_refused(&e), "{e:?}");
}

/// An upstream with `tls.auth: on` refuses, in the handshake, a client certificate its CA did
/// not issue. That is an authentication failure, which the unseal loop never retries.
#[tokio::test]
async fn a_client_certificate_refused_in_the_handshake_is_auth() {
    let setup = tempfile::tempdir().expect("tempdir");
    // Any certificate will do as the upstream's client CA, as long as it did not issue ours.
    let (ca, _, _) = kes_cluster::new_identity("client-ca", setup.path()).expect("ca");
    let config = setup.path().join("upstream.yaml");
    std::fs::write(
        &config,
        format!("tls:\n  auth: \"on\"\n  ca: {}\n", ca.display()),
    )
    .expect("config");
    let mut up = Upstream::spawn(&["--config", &config.display().to_string()]);
    let (cert, key, _) = kes_cluster::new_identity("outsider", setup.path()).expect("identity");
    // The upstream's certificate appears when it starts; then retry until it listens.
    let t0 = Instant::now();
    while !up.data.join("server.crt").exists() {
        assert!(!up.exited(), "the upstream exited:\n{}", up.log());
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", up.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seal = up.seal_as(&cert, &key);
    let e = loop {
        match seal.unwrap(&[0u8; 60], AAD).await {
            Err(e) if is_unreachable(&e) && t0.elapsed() < Duration::from_secs(60) => {
                assert!(!up.exited(), "the upstream exited:\n{}", up.log());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.expect_err("refused certificate"),
        }
    };
    assert!(matches!(e, ProviderError::Auth(_)), "{e:?}\n{}", up.log());
    assert!(e.to_string().contains("outsider.crt"), "{e}");
}

/// A server that takes the connection and never answers: the seal gives up after 10 s instead
/// of hanging the unseal loop, and reports the upstream as unreachable.
#[tokio::test]
async fn a_silent_upstream_times_out_as_unreachable() {
    let setup = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = kes_cluster::new_identity("seal", setup.path()).expect("identity");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let seal =
        KesRootKey::new(&format!("https://{addr}"), &cert, &key, None, KEY).expect("provider");
    let t = Instant::now();
    let e = seal.unwrap(&[0u8; 60], AAD).await.expect_err("silent");
    let took = t.elapsed();
    silent.abort();
    assert!(is_unreachable(&e), "{e:?}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}"
    );
}
