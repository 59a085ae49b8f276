//! Real `kes-node` processes for the integration tests, and a TCP relay to
//! put in front of one.
//!
//! * [`start_node`] runs `kes-node --dev --addr 127.0.0.1:PORT --data-dir DIR`
//!   (plus extra flags) and waits until `/v1/ready` answers 200 for the admin
//!   certificate `--dev` wrote. A test file starts one node and shares it.
//!   Nodes die with the test process (Linux parent-death signal), and data
//!   directories of finished runs are removed by the next run.
//! * [`Relay`] forwards TCP to a node unchanged (TLS stays end to end) and
//!   can count, drop and stall connections: what a real server does not do
//!   on request, but a client must survive.

#![allow(dead_code)] // each test binary uses a different part of it

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kes_cluster::identity::identity_of_cert_pem;
use kes_cluster::{Client, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running node and the files `--dev` made for it.
#[derive(Debug)]
pub struct Node {
    pub url: String,
    pub port: u16,
    pub dir: PathBuf,
    /// The certificate the node serves (`--dev`: self-signed).
    pub server_cert: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub admin_identity: String,
    pub pid: u32,
}

impl Node {
    /// An admin client. It skips server verification, because a test may
    /// have replaced the certificate `--dev` made (trust has its own tests).
    pub fn client(&self) -> Client {
        Client::new(&ClientConfig {
            server: self.url.clone(),
            cert: Some(self.admin_cert.clone()),
            key: Some(self.admin_key.clone()),
            ca: None,
            insecure: true,
        })
        .unwrap()
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

/// The `kes-node` binary of this build, built first if it is missing.
pub fn kes_node_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // The test runs as target/<profile>/deps/<test>-<hash>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let binary = profile_dir.join("kes-node");
        if !binary.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "-p", "kes-node", "--bin", "kes-node"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cannot run cargo to build kes-node");
            assert!(status.success(), "building kes-node failed");
        }
        assert!(binary.exists(), "no kes-node at {}", binary.display());
        binary
    })
}

/// A fresh directory for one node under the build's temporary directory.
/// Directories of test processes that have ended are removed first.
pub fn node_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kes-cluster-tests");
    std::fs::create_dir_all(&root).unwrap();
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = root.join(format!("node-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `kes-node --dev` in a new directory with `extra` flags (which may
/// name files that `prepare` writes into the directory first) and waits
/// until it is ready.
pub fn start_node(prepare: impl Fn(&Path) -> Vec<String>) -> Node {
    let dir = node_dir();
    let extra = prepare(&dir);
    let port = free_port();
    let pid = spawn_for_life(
        Command::new(kes_node_binary())
            .arg("--dev")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&dir)
            .args(&extra),
        &dir.join("node.log"),
    );
    let admin_cert = dir.join("admin.crt");
    let node = Node {
        url: format!("https://127.0.0.1:{port}"),
        port,
        server_cert: dir.join("server.crt"),
        admin_key: dir.join("admin.key"),
        admin_identity: String::new(),
        admin_cert,
        dir,
        pid,
    };
    wait_ready(&node);
    let pem = std::fs::read(&node.admin_cert).unwrap();
    Node {
        admin_identity: identity_of_cert_pem(&pem).unwrap(),
        ..node
    }
}

/// Spawns `command` with output to `log`, from a thread that lives as long
/// as the test process: the child gets SIGKILL when that thread (and so the
/// process) ends, since libtest has no hook to stop shared servers.
fn spawn_for_life(command: &mut Command, log: &Path) -> u32 {
    let out = std::fs::File::create(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // SAFETY: runs in the forked child before exec and only makes the
    // async-signal-safe prctl call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut command = std::mem::replace(command, Command::new("true"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = command.spawn().expect("cannot start kes-node");
        tx.send(child.id()).unwrap();
        let _ = child.wait();
    });
    rx.recv().unwrap()
}

/// Polls `/v1/ready` with the admin certificate for up to a minute.
fn wait_ready(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.admin_cert.exists() || !node.server_cert.exists() {
        assert!(
            Instant::now() < deadline,
            "kes-node wrote no certificates:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its own runtime on its own thread: callers may already run inside one.
    let (url, cert, key, ca) = (
        node.url.clone(),
        node.admin_cert.clone(),
        node.admin_key.clone(),
        node.server_cert.clone(),
    );
    let ready = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = Client::new(&ClientConfig {
                server: url,
                cert: Some(cert),
                key: Some(key),
                ca: Some(ca),
                // --cert may replace the self-signed certificate; trust is
                // tested elsewhere, readiness here.
                insecure: true,
            })
            .unwrap()
            .with_timeout(Duration::from_secs(2));
            let mut last = String::new();
            while Instant::now() < deadline {
                match client.ready().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(last)
        })
    })
    .join()
    .unwrap();
    if let Err(last) = ready {
        panic!("kes-node never became ready ({last}):\n{}", node.log());
    }
}

/// A TCP relay in front of a node, on 127.0.0.1 (the node's certificate
/// names that address, so TLS verification still passes).
pub struct Relay {
    pub url: String,
    accepted: Arc<AtomicUsize>,
    control: watch::Sender<RelayState>,
}

#[derive(Debug, Clone, Copy, Default)]
struct RelayState {
    /// Bumped to close every relayed connection.
    generation: u64,
    /// While set, no bytes are forwarded.
    stalled: bool,
}

impl Relay {
    /// Starts relaying to `127.0.0.1:target` on the current runtime.
    pub async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let accepted = Arc::new(AtomicUsize::new(0));
        let control = watch::Sender::new(RelayState::default());
        let (count, states) = (accepted.clone(), control.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let generation = states.borrow().generation;
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    states.subscribe(),
                    generation,
                ));
                tokio::spawn(pump(
                    server_read,
                    client_write,
                    states.subscribe(),
                    generation,
                ));
            }
        });
        Relay {
            url,
            accepted,
            control,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every relayed connection, as a server restart would.
    pub fn drop_all(&self) {
        self.control.send_modify(|s| s.generation += 1);
    }

    /// Stops (or resumes) forwarding bytes, as a hung server would.
    pub fn stall(&self, stalled: bool) {
        self.control.send_modify(|s| s.stalled = stalled);
    }
}

/// Copies one direction until EOF or until the connection is dropped.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut control: watch::Receiver<RelayState>,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = control.wait_for(|s| s.generation != generation) => break,
        };
        let state = match control
            .wait_for(|s| !s.stalled || s.generation != generation)
            .await
        {
            Ok(state) => *state,
            Err(_) => break,
        };
        if state.generation != generation || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
