//! Start-up: open the store, create or unseal the cluster, load config policies and keys.

use super::{KeyCache, Node};
use crate::api::{ApiError, Route, default_routes};
use crate::auth::Policy;
use crate::cluster::Writer;
use crate::config::Config;
use crate::obs::{EventBus, Metrics};
use crate::seal::{ClusterKey, FileRootKey, SealError, SealState};
use crate::state::{Command, DEFAULT_ENCLAVE, Op, Outcome, State, unix_nanos_now};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What start-up needs, resolved from config and flags.
#[derive(Debug)]
pub struct StartOptions {
    /// The parsed config.
    pub config: Config,
    /// Where sled keeps the state.
    pub data_dir: PathBuf,
    /// The file root key.
    pub root_key: PathBuf,
    /// Create the root key file when it is missing (dev mode only).
    pub create_root_key: bool,
    /// The admin identity.
    pub admin: String,
    /// The event bus the tracing layer already feeds.
    pub events: EventBus,
}

/// Why a node refuses to start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be used.
    #[error("data dir {0}: {1}")]
    DataDir(PathBuf, String),
    /// sled refused to open.
    #[error(
        "cannot open the state in {0}: {1}. If the directory is damaged, move it away and restore from a snapshot"
    )]
    Open(PathBuf, String),
    /// The configured admin differs from the cluster's.
    #[error(
        "the configured admin identity {configured} differs from this cluster's admin {stored}; configure the cluster's admin identity"
    )]
    AdminMismatch {
        /// From config or flags.
        configured: String,
        /// From the state.
        stored: String,
    },
    /// The root key file is unusable.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A config policy clashes with one made through the API, or similar.
    #[error("config: {0}")]
    Config(String),
    /// The store failed.
    #[error("state store: {0}")]
    State(String),
}

impl From<ApiError> for StartError {
    fn from(e: ApiError) -> Self {
        StartError::State(e.message)
    }
}

/// The route table with the `api:` settings of the config applied.
fn routes(config: &Config) -> Vec<Route> {
    let mut routes = default_routes();
    for r in &mut routes {
        if let Some(c) = config.api.get(r.config_key()) {
            r.skip_auth = c.skip_auth;
            if let Some(t) = c.timeout.filter(|t| !t.is_zero()) {
                r.timeout = Some(t);
            }
        }
    }
    routes
}

/// Opens the store and brings the node up, sealed or unsealed. A node whose root key cannot
/// unwrap the cluster key stays up sealed and keeps retrying, so an operator can fix the key
/// file without a restart.
pub async fn start(opts: StartOptions) -> Result<Arc<Node>, StartError> {
    let state_dir = opts.data_dir.join("state");
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| StartError::DataDir(opts.data_dir.clone(), e.to_string()))?;
    let state =
        State::open(&state_dir).map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    let cache = &opts.config.cache;
    let node = Arc::new(Node {
        writer: Writer::new(state.clone()),
        state,
        seal: SealState::new(),
        cache: KeyCache::new(cache.any, cache.unused),
        metrics: Metrics::new(),
        events: opts.events.clone(),
        routes: routes(&opts.config),
        audit_stdout: opts.config.log.audit,
    });
    let root = if opts.create_root_key && !opts.root_key.exists() {
        FileRootKey::create(&opts.root_key)?
    } else {
        FileRootKey::load(&opts.root_key)?
    };
    let meta = node
        .state
        .cluster_meta()
        .map_err(|e| StartError::State(e.to_string()))?;
    match meta {
        None => bootstrap(&node, &root, &opts.admin).await?,
        Some(m) => {
            if m.admin != opts.admin {
                return Err(StartError::AdminMismatch {
                    configured: opts.admin.clone(),
                    stored: m.admin,
                });
            }
            match ClusterKey::unwrap(&m.wrapped_cluster_key, root.key(), &m.cluster_id) {
                Ok(ck) => node.seal.unseal(ck.derive(m.storage_version)),
                Err(e) => {
                    tracing::error!(
                        "node stays sealed: {e} (root key {})",
                        opts.root_key.display()
                    );
                    node.seal.seal(e.to_string());
                    tokio::spawn(retry_unseal(node.clone(), opts.root_key.clone()));
                }
            }
        }
    }
    apply_config_policies(&node, &opts).await?;
    create_config_keys(&node, &opts).await?;
    tokio::spawn(sweep_cache(node.clone()));
    Ok(node)
}

fn system_command(admin: &str, path: &str, op: Op) -> Command {
    Command {
        request_id: crate::api::new_request_id(),
        identity: admin.to_owned(),
        path: path.to_owned(),
        enclave: DEFAULT_ENCLAVE.to_owned(),
        time: unix_nanos_now(),
        op,
    }
}

async fn bootstrap(node: &Node, root: &FileRootKey, admin: &str) -> Result<(), StartError> {
    let cluster_id = format!("{:032x}", crate::api::new_request_id());
    let ck = ClusterKey::generate();
    let op = Op::Init {
        cluster_id: cluster_id.clone(),
        admin: admin.to_owned(),
        wrapped_cluster_key: ck.wrap(root.key(), &cluster_id),
    };
    let committed = node
        .writer
        .write(system_command(admin, "/v1/cluster/init", op))
        .await
        .map_err(|e| StartError::State(e.to_string()))?;
    if committed.outcome != Outcome::Done {
        return Err(StartError::State(format!(
            "cluster init refused: {:?}",
            committed.outcome
        )));
    }
    tracing::info!("created cluster {cluster_id}");
    node.seal.unseal(ck.derive(1));
    Ok(())
}

async fn apply_config_policies(node: &Node, opts: &StartOptions) -> Result<(), StartError> {
    let policies = opts
        .config
        .policies
        .iter()
        .map(|(name, p)| {
            let rules = Policy {
                allow: p.allow.clone(),
                deny: p.deny.clone(),
            };
            (name.clone(), rules, p.identities.clone())
        })
        .collect();
    let op = Op::SetConfigPolicies { policies };
    let committed = node
        .writer
        .write(system_command(&opts.admin, "/v1/policy/write/", op))
        .await
        .map_err(|e| StartError::State(e.to_string()))?;
    match committed.outcome {
        Outcome::Done => Ok(()),
        Outcome::ConfigClash(msg) => Err(StartError::Config(msg)),
        other => Err(StartError::Config(format!(
            "config policies refused: {other:?}"
        ))),
    }
}

async fn create_config_keys(node: &Arc<Node>, opts: &StartOptions) -> Result<(), StartError> {
    if opts.config.keys.is_empty() {
        return Ok(());
    }
    if node.seal.is_sealed() {
        tracing::warn!(
            "node is sealed: the keys listed in the config are created once it unseals and restarts"
        );
        return Ok(());
    }
    for name in &opts.config.keys {
        match crate::api::create_key_as(node.clone(), name, &opts.admin).await {
            Ok(()) => tracing::info!("created key '{name}' from the config"),
            Err(e) if e.message == "key already exists" => {}
            Err(e) => {
                return Err(StartError::Config(format!(
                    "cannot create key '{name}': {}",
                    e.message
                )));
            }
        }
    }
    Ok(())
}

/// Retries unsealing with backoff, re-reading the root key file each time.
async fn retry_unseal(node: Arc<Node>, root_key: PathBuf) {
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
        let attempt = FileRootKey::load(&root_key).and_then(|root| {
            let m = node
                .state
                .cluster_meta()
                .ok()
                .flatten()
                .ok_or(SealError::WrongRootKey)?;
            Ok((
                ClusterKey::unwrap(&m.wrapped_cluster_key, root.key(), &m.cluster_id)?,
                m,
            ))
        });
        match attempt {
            Ok((ck, m)) => {
                node.seal.unseal(ck.derive(m.storage_version));
                tracing::info!("node unsealed with {}", root_key.display());
                return;
            }
            Err(e) => {
                tracing::error!("still sealed: {e}; next attempt in {}s", wait.as_secs());
                node.seal.seal(e.to_string());
            }
        }
    }
}

async fn sweep_cache(node: Arc<Node>) {
    let every = node.cache.sweep_interval();
    loop {
        tokio::time::sleep(every).await;
        node.cache.sweep();
        if node.seal.is_sealed() {
            node.cache.clear();
        }
    }
}
