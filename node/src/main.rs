//! `kes-node`: one node of kes-cluster, serving the KES API over mTLS.

use clap::Parser;
use kes_node::config::Config;
use kes_node::obs::{ErrorLogLayer, EventBus};
use kes_node::server::{StartOptions, serve, start};
use kes_node::tls::{ServerTlsOptions, load_reloadable_server_config};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A KES-compatible key-management node.
#[derive(Parser, Debug)]
#[command(
    name = "kes-node",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Offline tools, run on a stopped node's data dir (without one: run the node).
    #[command(subcommand)]
    tool: Option<Tool>,
    /// The KES YAML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, ip:port (overrides `address`).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Where the node keeps its state (default ./kes-dev with --dev).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Try it out: certificates, an admin identity and a root key are made in the data dir.
    #[arg(long)]
    dev: bool,
    /// Server certificate (overrides `tls.cert`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Server private key (overrides `tls.key`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Verify client certificates against `tls.ca`: on or off (overrides `tls.auth`).
    #[arg(long, value_parser = ["on", "off"])]
    auth: Option<String>,
    /// The admin identity (overrides `admin.identity`).
    #[arg(long)]
    root: Option<String>,
    /// Create a new cluster with this node as its first member (only on an empty data dir;
    /// same as `cluster.bootstrap: true`).
    #[arg(long)]
    bootstrap: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// After the loss of a quorum for good: make this stopped member a cluster of one,
    /// keeping and committing every entry of its log, with the lost members' certificates
    /// tombstoned. The other nodes then join it with new data dirs and certificates.
    Recover(RecoverArgs),
}

#[derive(clap::Args, Debug)]
struct RecoverArgs {
    /// The stopped node's data dir.
    #[arg(long)]
    data_dir: PathBuf,
    /// The recovery to make: a new cluster of this node alone (the only one there is).
    #[arg(long)]
    force_new_cluster: bool,
    /// Carry it out; without it, print what it would do and change nothing.
    #[arg(long)]
    yes: bool,
}

/// `kes-node recover`: prints the plan, and carries it out with `--yes`.
async fn recover(args: RecoverArgs) -> Result<(), String> {
    use kes_node::raft::force_new_cluster;
    if !args.force_new_cluster {
        return Err(
            "recover rewrites the membership: pass --force-new-cluster to make this node a cluster of one"
                .into(),
        );
    }
    if !args.yes {
        let plan = force_new_cluster::plan(&args.data_dir).await?;
        println!("{plan}");
        return Err("nothing was changed: run again with --yes to carry this out".into());
    }
    let plan = force_new_cluster::force_new_cluster(&args.data_dir).await?;
    println!("{plan}");
    println!(
        "done: start the node; it leads a cluster of one with every entry above. Join the \
         other nodes with new data dirs and new node certificates."
    );
    Ok(())
}

/// jemalloc, not glibc's malloc: sled copies a page on every insert, and glibc's malloc and
/// free took some 11 % of the machine in a replicated-create run (with `malloc_consolidate` for
/// each large page copy), and kept the peak of a bulk load resident (a node that caught up
/// on a million keys by snapshot stayed at 1,076 MiB). Side by side on one machine
/// (docs/bench/analysis.md): creates +7 % at 16 connections and +14 % at 64, with a lower
/// p99; a million keys loaded 16 % faster, and that node ended at 939 MiB; decrypt within
/// the noise. mimalloc, tried earlier, had cost writes their tail latency.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args = Args::parse();
    let events = EventBus::new();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(ErrorLogLayer::new(events.clone()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => fail(format!("cannot start the runtime: {e}")),
    };
    let done = match args.tool {
        Some(Tool::Recover(recover_args)) => runtime.block_on(recover(recover_args)),
        None => runtime.block_on(run(args, events)),
    };
    if let Err(e) = done {
        fail(e);
    }
}

fn fail(msg: String) -> ! {
    eprintln!("Error: {msg}");
    std::process::exit(1);
}

async fn run(args: Args, events: EventBus) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => {
            let loaded = Config::load(path).map_err(|e| e.to_string())?;
            for w in &loaded.warnings {
                tracing::warn!("config: {w}");
            }
            loaded.config
        }
        None => Config::default(),
    };
    let data_dir = match (
        args.data_dir.as_ref().or(config.data_dir.as_ref()),
        args.dev,
    ) {
        (Some(d), _) => d.clone(),
        (None, true) => PathBuf::from("kes-dev"),
        (None, false) => {
            return Err(
                "no data dir: set data_dir in the config or pass --data-dir, the directory where the node keeps its state".into(),
            );
        }
    };
    let mut admin = args.root.clone().or(config.admin_identity.clone());
    let dev = if args.dev {
        let files = kes_node::dev::prepare(&data_dir)?;
        config.tls.cert.get_or_insert(files.server_cert.clone());
        config.tls.key.get_or_insert(files.server_key.clone());
        admin.get_or_insert(files.admin_identity.clone());
        Some(files)
    } else {
        None
    };
    if let Some(c) = args.cert {
        config.tls.cert = Some(c);
    }
    if let Some(k) = args.key {
        config.tls.key = Some(k);
    }
    if let Some(a) = &args.auth {
        config.tls.auth = a == "on";
    }
    let admin = admin
        .filter(|a| !a.is_empty())
        .ok_or("no admin identity: set admin.identity in the config or pass --root IDENTITY")?;
    let dev_root = if args.dev {
        Some(data_dir.join("root.key"))
    } else {
        None
    };
    let seals = kes_node::seal::build_seals(&config.seal, dev_root.as_deref(), &data_dir).await?;
    let (cert, key) = match (config.tls.cert.clone(), config.tls.key.clone()) {
        (Some(c), Some(k)) => (c, k),
        _ => return Err("tls.cert and tls.key are required (or --cert/--key, or --dev)".into()),
    };
    let (tls, server_cert) = load_reloadable_server_config(&ServerTlsOptions {
        cert,
        key,
        password: config.tls.password.clone(),
        verify_clients: config.tls.auth,
        ca: config.tls.ca.clone(),
        allow_anonymous: config.api.values().any(|r| r.skip_auth),
    })
    .map_err(|e| e.to_string())?;
    let addr = args.addr.or(config.address).unwrap_or(if args.dev {
        SocketAddr::from(([127, 0, 0, 1], 7373))
    } else {
        config.listen_address()
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let node = start(StartOptions {
        config,
        data_dir: data_dir.clone(),
        seals,
        admin: admin.clone(),
        events,
        http_addr: addr,
        bootstrap: args.bootstrap,
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(files) = dev {
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        println!(
            "export KES_SERVER=https://{addr} KES_CLIENT_CERT={} KES_CLIENT_KEY={} KES_CA={}",
            abs(&files.admin_cert).display(),
            abs(&files.admin_key).display(),
            abs(&files.server_cert).display()
        );
    }
    println!("admin identity: {admin}");
    server_cert.spawn_reloader();
    tracing::info!("serving the KES API on https://{addr}");
    let state = node.state.clone();
    serve(node, listener, Arc::new(tls), shutdown_signal()).await;
    // The log holds every acknowledged write; flushing the applied state as well spares the
    // next start replaying what was applied since sled last flushed on its own.
    if let Err(e) = state.make_durable().await {
        tracing::warn!(
            "the applied state was not flushed at shutdown: {e}; the next start replays it from the log"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
