//! `kes-cluster dev`: a local cluster of N node processes on 127.0.0.1, in
//! one command, in the foreground.
//!
//! ```text
//!  files::prepare ─▶ node.yaml per node ─▶ Supervisor::spawn × N
//!     (CA, admin,                              │
//!      root key,      wait until every node ◀──┤  a node exiting before that
//!      node certs)    answers /v1/ready 200    │  stops everything, with its log
//!                            │                 │
//!       print `export …` and the status table  │  afterwards: report the exit,
//!                            │                 │  keep the others running
//!                 SIGINT / SIGTERM ─▶ stop all (SIGTERM, SIGKILL after 10 s), exit 0
//! ```

mod config;
mod files;
mod supervise;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Outcome;
use super::status::{leaderless, render_cluster};
use config::{Ports, node_yaml};
use files::ClusterFiles;
use kes_cluster::{Client, ClientConfig, Error, Result};
use supervise::{NodeCommand, Supervisor, log_tail};

/// How long the nodes may take to form the cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(300);

/// Log lines shown when a node fails to come up.
const TAIL_LINES: usize = 20;

#[derive(Debug, Args)]
#[command(after_help = "\
Node i listens for HTTPS on 127.0.0.1:P+i-1 and for gRPC on 127.0.0.1:P+100+i-1.

DIR holds one CA (ca.crt) that signs every node's certificates, one admin identity \
(admin.crt, admin.key), the root key every node seals with (root.key), and per node \
nodeN/node.yaml, nodeN/node.log and nodeN/data. Running it again with the same DIR brings \
back the same cluster with its data; `kes-node --config DIR/nodeN/node.yaml --data-dir \
DIR/nodeN/data` brings one node back by hand.

It stays in the foreground until Ctrl-C or SIGTERM, which stop every node. A node that dies \
is reported and the others keep running, so you can watch a failover.")]
pub(crate) struct DevArgs {
    /// How many nodes to run.
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: usize,
    /// Where the cluster keeps certificates, keys, configs, logs and data.
    #[arg(long, value_name = "DIR", default_value = "./kes-cluster-dev")]
    dir: PathBuf,
    /// HTTPS port of node 1.
    #[arg(long, value_name = "P", default_value_t = 7373)]
    base_port: u16,
    /// The kes-node binary [default: next to kes-cluster, else on PATH]
    #[arg(long, value_name = "PATH")]
    kes_node: Option<PathBuf>,
}

pub(crate) async fn run(args: DevArgs) -> Result<Outcome> {
    let ports = Ports::new(args.base_port, args.nodes).map_err(Error::Config)?;
    let program = find_kes_node(args.kes_node.as_deref())?;
    // Installed before any node starts, so an early Ctrl-C still stops them all.
    let mut signals = Signals::install()?;
    let files = files::prepare(&args.dir, args.nodes, &mut |note| eprintln!("{note}"))?;
    let mut nodes = Vec::new();
    for index in 1..=args.nodes {
        let node_dir = files.node_dir(index);
        let config = node_dir.join("node.yaml");
        std::fs::write(&config, node_yaml(&files, ports, index))
            .map_err(|e| Error::file("write", &config, e))?;
        nodes.push(NodeCommand {
            index,
            program: program.clone(),
            config,
            data_dir: node_dir.join("data"),
            log: node_dir.join("node.log"),
        });
    }
    ports_are_free(ports)?;

    let mut supervisor = Supervisor::new();
    eprintln!(
        "Starting {} from {} ({}):",
        plural(args.nodes, "node"),
        files.dir.display(),
        program.display()
    );
    for node in &nodes {
        match supervisor.spawn(node) {
            Ok(pid) => eprintln!(
                "  node{}  https://127.0.0.1:{}  grpc 127.0.0.1:{}  pid {pid}  log {}",
                node.index,
                ports.https(node.index),
                ports.grpc(node.index),
                node.log.display()
            ),
            Err(e) => {
                supervisor.stop(signals.next()).await;
                return Err(e);
            }
        }
    }

    let clients = node_clients(&files, ports)?;
    // A node killed from outside (`kill -9`) while the others start is an operator's test of
    // failover, not a failed start: the others are waited for. A node that fails on its own
    // (an exit code, a crash) stops the start.
    let mut killed = Vec::new();
    let started = loop {
        tokio::select! {
            ready = wait_ready(&clients, &nodes, &killed) => break ready,
            exit = supervisor.next_exit() => match exit {
                Some(exit) if exit.killed && killed.len() + 1 < nodes.len() => {
                    eprintln!(
                        "  node{} was killed ({}) while the cluster started; waiting for the others",
                        exit.index, exit.status
                    );
                    killed.push(exit.index);
                }
                Some(exit) => break Err(format!(
                    "node{} exited with {} before the cluster was ready. The end of {}:\n{}",
                    exit.index,
                    exit.status,
                    nodes[exit.index - 1].log.display(),
                    log_tail(&nodes[exit.index - 1].log, TAIL_LINES)
                )),
                None => break Err("every node exited before the cluster was ready".to_string()),
            },
            name = signals.next_named() => {
                eprintln!("{name}: stopping the nodes.");
                supervisor.stop(signals.next()).await;
                return Ok(Outcome::default());
            }
        }
    };
    if let Err(reason) = started {
        eprintln!("Stopping the nodes.");
        supervisor.stop(signals.next()).await;
        return Err(Error::Config(reason));
    }

    println!("{}", export_line(&files, ports));
    match first_status(&clients).await {
        Ok(cluster) => {
            print!("{}", render_cluster(&cluster));
            if let Some((_, message)) = leaderless(&cluster) {
                eprintln!("Warning: {message}");
            }
        }
        Err(e) => eprintln!("Warning: cannot show the cluster status: {e}"),
    }
    eprintln!("The cluster runs until Ctrl-C or SIGTERM.");

    let mut running = args.nodes - killed.len();
    loop {
        tokio::select! {
            exit = supervisor.next_exit() => {
                let Some(exit) = exit else { break };
                running -= 1;
                eprintln!(
                    "node{} (pid {}) exited with {}; {running} of {} nodes keep running. Its log: {}",
                    exit.index,
                    exit.pid,
                    exit.status,
                    args.nodes,
                    nodes[exit.index - 1].log.display()
                );
                if running == 0 {
                    break;
                }
            }
            name = signals.next_named() => {
                eprintln!("{name}: stopping {}.", plural(running, "node"));
                supervisor.stop(signals.next()).await;
                eprintln!("Stopped.");
                return Ok(Outcome::default());
            }
        }
    }
    Err(Error::Config(format!(
        "every node has exited; see the node.log files in {}",
        files.dir.display()
    )))
}

/// `1 node`, `3 nodes`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// SIGINT and SIGTERM, handled instead of ending the process.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::Io {
                context: "cannot handle signals".into(),
                reason: e.to_string(),
            })
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    /// The name of the next signal.
    async fn next_named(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    /// The next signal (a second Ctrl-C while stopping: kill now).
    async fn next(&mut self) {
        self.next_named().await;
    }
}

/// The binary named by `--kes-node`, else the one beside this executable
/// (how both are built and installed), else the first on PATH.
pub(super) fn find_kes_node(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        return if path.is_file() {
            std::path::absolute(path).map_err(|e| Error::file("resolve", path, e))
        } else {
            Err(Error::Config(format!(
                "--kes-node {}: no such file",
                path.display()
            )))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("kes-node")));
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("kes-node"));
    beside
        .into_iter()
        .chain(on_path)
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            Error::Config(
                "cannot find the kes-node binary next to kes-cluster or on PATH: build it \
                 (cargo build --release) or pass --kes-node PATH"
                    .into(),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails early, and clearly, when a port is taken: a node would otherwise
/// exit with a bind error a moment later.
fn ports_are_free(ports: Ports) -> Result<()> {
    for index in 1..=ports.nodes {
        for port in [ports.https(index), ports.grpc(index)] {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(Error::Config(format!(
                    "port 127.0.0.1:{port} is not free ({e}); is another cluster running? Stop \
                     it, or pick other ports with --base-port"
                )));
            }
        }
    }
    Ok(())
}

/// One admin client per node, trusting the cluster CA.
fn node_clients(files: &ClusterFiles, ports: Ports) -> Result<Vec<Client>> {
    (1..=ports.nodes)
        .map(|index| {
            let client = Client::new(&ClientConfig {
                server: ports.url(index),
                cert: Some(files.admin_cert.clone()),
                key: Some(files.admin_key.clone()),
                ca: Some(files.ca_cert.clone()),
                insecure: false,
            })?;
            // Probes are quick or useless: a stuck node is tried again.
            Ok(client.with_timeout(Duration::from_secs(3)))
        })
        .collect()
}

/// Polls `/v1/ready` until every node answers 200, or explains who did not.
/// Waits until every node but the `killed` ones (1-based) answers ready.
async fn wait_ready(
    clients: &[Client],
    nodes: &[NodeCommand],
    killed: &[usize],
) -> Result<(), String> {
    let started = Instant::now();
    let mut last_error: Vec<Option<String>> = (1..=clients.len())
        .map(|i| (!killed.contains(&i)).then(|| "not asked yet".to_owned()))
        .collect();
    eprintln!(
        "Waiting for every node to be ready (up to {}s)…",
        READY_TIMEOUT.as_secs()
    );
    loop {
        for (i, client) in clients.iter().enumerate() {
            if last_error[i].is_none() {
                continue;
            }
            match client.ready().await {
                Ok(()) => {
                    last_error[i] = None;
                    eprintln!(
                        "  node{} is ready after {:.1}s",
                        i + 1,
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(e) => last_error[i] = Some(e.to_string()),
            }
        }
        if last_error.iter().all(Option::is_none) {
            return Ok(());
        }
        if started.elapsed() >= READY_TIMEOUT {
            let waiting: Vec<String> = last_error
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|e| format!("node{}: {e}", i + 1)))
                .collect();
            let logs: Vec<String> = last_error
                .iter()
                .zip(nodes)
                .filter(|(e, _)| e.is_some())
                .map(|(_, n)| n.log.display().to_string())
                .collect();
            return Err(format!(
                "not every node was ready within {}s ({}); see {}",
                READY_TIMEOUT.as_secs(),
                waiting.join("; "),
                logs.join(", ")
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// The cluster status from the first node that answers.
async fn first_status(clients: &[Client]) -> Result<kes_cluster::client::ClusterStatus> {
    let mut last = Error::Config("no nodes".into());
    for client in clients {
        match client.cluster_status().await {
            Ok(status) => return Ok(status),
            Err(e) => last = kes_cluster::client::explain_not_a_cluster(e),
        }
    }
    Err(last)
}

/// `export KES_SERVER=… KES_CLIENT_CERT=… KES_CLIENT_KEY=… KES_CA=…`, quoted
/// for a POSIX shell where a path needs it.
fn export_line(files: &ClusterFiles, ports: Ports) -> String {
    let path = |p: &Path| shell_word(&p.to_string_lossy());
    format!(
        "export KES_SERVER={} KES_CLIENT_CERT={} KES_CLIENT_KEY={} KES_CA={}",
        ports.url(1),
        path(&files.admin_cert),
        path(&files.admin_key),
        path(&files.ca_cert)
    )
}

fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_line_is_shell_safe() {
        let dir = PathBuf::from("/tmp/it's here");
        let files = ClusterFiles {
            ca_cert: dir.join("ca.crt"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            root_key: dir.join("root.key"),
            admin_identity: String::new(),
            dir,
        };
        assert_eq!(
            export_line(&files, Ports::new(7000, 1).unwrap()),
            r"export KES_SERVER=https://127.0.0.1:7000 KES_CLIENT_CERT='/tmp/it'\''s here/admin.crt' KES_CLIENT_KEY='/tmp/it'\''s here/admin.key' KES_CA='/tmp/it'\''s here/ca.crt'"
        );
        assert_eq!(shell_word("/a/b-c.crt"), "/a/b-c.crt");
    }

    #[test]
    fn a_missing_kes_node_is_explained() {
        let err = find_kes_node(Some(Path::new("/nonexistent/kes-node")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn taken_ports_are_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let Ok(ports) = Ports::new(port, 1) else {
            return; // too high to host a gRPC port: nothing to test
        };
        let err = ports_are_free(ports).unwrap_err().to_string();
        assert!(
            err.contains(&format!("127.0.0.1:{port} is not free")),
            "{err}"
        );
    }
}
