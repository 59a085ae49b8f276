//! Start-up: open the store, start Raft and the gRPC service, then bootstrap, join, or
//! simply resume; unseal as soon as the cluster key is in the state.

use super::{KeyCache, Node};
use crate::api::{ApiError, Route, default_routes};
use crate::auth::Policy;
use crate::cluster::transport::{NodeTls, PeerChannels, serve_grpc};
use crate::cluster::{
    Cluster, ClusterService, Lease, Settings, load_or_create_node_id, node_status,
};
use crate::config::Config;
use crate::obs::{EventBus, Metrics};
use crate::raft::{
    LogStore, MAX_PAYLOAD_ENTRIES, NetworkFactory, NodeInfo, Raft, SNAPSHOT_CHUNK, StateMachine,
};
use crate::seal::{ClusterKey, SealError, SealState, Seals};
use crate::state::{Command, DEFAULT_ENCLAVE, Op, Outcome, State};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What start-up needs, resolved from config and flags.
#[derive(Debug)]
pub struct StartOptions {
    /// The parsed config.
    pub config: Config,
    /// Where sled keeps the state.
    pub data_dir: PathBuf,
    /// This node's seals, in the order it tries them.
    pub seals: Seals,
    /// The admin identity.
    pub admin: String,
    /// The event bus the tracing layer already feeds.
    pub events: EventBus,
    /// The KES listen address (the advertised address is derived from it).
    pub http_addr: SocketAddr,
    /// `--bootstrap`.
    pub bootstrap: bool,
}

/// Why a node refuses to start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be used.
    #[error("data dir {0}: {1}")]
    DataDir(PathBuf, String),
    /// sled refused to open, or the state is half-installed.
    #[error("cannot use the state in {0}: {1}. {RUNBOOK}")]
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
    /// A config problem found at start.
    #[error("config: {0}")]
    Config(String),
    /// Raft, gRPC or the store failed.
    #[error("{0}")]
    Cluster(String),
}

/// What to do when a node's data dir is damaged; also in the README.
pub const RUNBOOK: &str = "To recover: `kes-cluster remove <this node id>` on a healthy member, move this data dir away, and start the node again with `cluster.join` (it rejoins as a new learner and catches up from a snapshot)";

impl From<ApiError> for StartError {
    fn from(e: ApiError) -> Self {
        StartError::Cluster(e.message)
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

fn raft_config(cfg: &crate::config::ClusterConfig) -> Result<openraft::Config, StartError> {
    let c = openraft::Config {
        cluster_name: "kes-cluster".into(),
        heartbeat_interval: cfg.heartbeat.as_millis() as u64,
        // openraft's own election timer is off (below); its `election_timeout_max` is then
        // only the leader lease during which it refuses votes, which must match what the
        // pre-vote waits for. Were it `election_timeout.max`, a follower whose timer fired
        // earlier would find its pre-vote refused and try again later: failover took 2 to 4 s.
        election_timeout_min: cfg.election_timeout.min.as_millis() as u64,
        election_timeout_max: cfg.election_timeout.vote_refusal().as_millis() as u64,
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        // Snapshots are built in turn (cluster::snapshot_schedule), each voter at its own
        // offset into `snapshot_every`; openraft's own policy is only the backstop.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
            cfg.snapshot_every.max(1).saturating_mul(2),
        ),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK,
        max_in_snapshot_log_to_keep: 1000,
        install_snapshot_timeout: 10_000,
        // Elections start from this node's own timer, after a pre-vote (cluster::pre_vote).
        enable_elect: false,
        ..Default::default()
    };
    c.validate()
        .map_err(|e| StartError::Config(format!("cluster timing: {e}")))
}

/// How peers reach this node: the configured addresses, with an unspecified listen IP
/// replaced by the gRPC advertise host.
fn advertised(opts: &StartOptions, tls: &Option<NodeTls>) -> NodeInfo {
    let grpc = opts
        .config
        .cluster
        .grpc
        .advertise
        .clone()
        .unwrap_or_else(|| opts.config.cluster.grpc.listen.to_string());
    let host = if opts.http_addr.ip().is_unspecified() {
        grpc.rsplit_once(':')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_else(|| "127.0.0.1".into())
    } else {
        opts.http_addr.ip().to_string()
    };
    NodeInfo {
        http: format!("https://{host}:{}", opts.http_addr.port()),
        grpc: if tls.is_some() { grpc } else { String::new() },
        spki: tls.as_ref().map(|t| t.spki.clone()).unwrap_or_default(),
        next_spki: String::new(),
    }
}

/// Removes the dedup records an older version left without a sweep (`state/apply/dedup.rs`),
/// off the startup path: it reads every record once, and lookups ignore those records anyway.
fn forget_expired_requests_in_background(state: &State) {
    let state = state.clone();
    tokio::task::spawn_blocking(move || match state.forget_expired_requests() {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} expired request records"),
        Err(e) => tracing::warn!("cannot remove expired request records: {e}"),
    });
}

/// Opens the store and brings the node up. A node whose root key cannot unwrap the cluster key
/// stays up sealed and keeps retrying, so an operator can fix the key file without a restart.
pub async fn start(opts: StartOptions) -> Result<Arc<Node>, StartError> {
    let state_dir = opts.data_dir.join("state");
    super::data_dir::create_private_dir(&opts.data_dir)
        .and_then(|()| super::data_dir::create_private_dir(&state_dir))
        .map_err(|e| StartError::DataDir(opts.data_dir.clone(), e.to_string()))?;
    let state =
        State::open(&state_dir).map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    crate::raft::recover_snapshot_install(&state, &opts.data_dir.join("snapshot.bin"))
        .await
        .map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    forget_expired_requests_in_background(&state);
    let node_id = load_or_create_node_id(&opts.data_dir)
        .map_err(|e| StartError::DataDir(opts.data_dir.clone(), e))?;
    if let Some(meta) = state
        .cluster_meta()
        .map_err(|e| StartError::Cluster(e.to_string()))?
    {
        if meta.admin != opts.admin {
            return Err(StartError::AdminMismatch {
                configured: opts.admin.clone(),
                stored: meta.admin,
            });
        }
    }
    let ccfg = &opts.config.cluster;
    let tls = match ccfg.tls.cert {
        Some(_) => Some(NodeTls::load(&ccfg.tls).map_err(StartError::Config)?),
        None => None,
    };
    let me = advertised(&opts, &tls);
    let cache = Arc::new(KeyCache::new(
        opts.config.cache.any,
        opts.config.cache.unused,
    ));
    let rotation_schedule = Arc::new(super::RotationSchedule::default());
    let proposals = crate::cluster::GroupCommit::default();
    let (hook_cache, hook_schedule, hook_state, hook_proposals) = (
        cache.clone(),
        rotation_schedule.clone(),
        state.clone(),
        proposals.clone(),
    );
    let hook: crate::raft::AppliedHook = Arc::new(move |applied, phase| match phase {
        crate::raft::ApplyPhase::Committed => hook_proposals.committed(applied),
        crate::raft::ApplyPhase::About => hook_cache.hold_for(applied),
        crate::raft::ApplyPhase::Done => {
            hook_cache.forget_applied(applied);
            hook_schedule.follow(&hook_state, applied);
        }
    });
    // Off the start path: a million keys take a second or two to read.
    rotation_schedule.rebuild_in_background(&state);
    let cluster_id = Arc::new(RwLock::new(String::new()));
    let channels = PeerChannels::new(tls.clone()).from_source(opts.config.cluster.grpc.source);
    let mut log = LogStore::open(&state)
        .await
        .map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    let restored = log
        .restored(node_id)
        .await
        .map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    if let Some(last) = restored.last_index {
        tracing::info!(
            "the Raft log holds entries up to {last} (commit index written down: {:?}){}",
            restored.committed_index,
            restored
                .led_term
                .map(|t| format!("; this node led term {t} and resumes leading it"))
                .unwrap_or_default()
        );
    }
    let last_appended = crate::raft::LastAppended::default();
    let log = log
        .publishing_last_appended(last_appended.clone())
        .await
        .map_err(|e| StartError::Open(state_dir.clone(), e.to_string()))?;
    let read_leases = crate::raft::ReadLeases::default();
    let metrics = Metrics::new();
    let audit = crate::obs::AuditSinks::new(&opts.config.log, metrics.audit_write_failures.clone())
        .map_err(StartError::Config)?;
    let sm = StateMachine::new(
        state.clone(),
        opts.data_dir.join("snapshot.bin"),
        hook,
        metrics.cluster_snapshot_seconds.clone(),
    )
    .holding_back_for(read_leases.clone());
    let sent_commit = crate::raft::SentCommit::default();
    let contact = crate::raft::PeerContact::default();
    let network = NetworkFactory::new(
        channels.clone(),
        cluster_id.clone(),
        sent_commit.clone(),
        read_leases.clone(),
        contact.clone(),
    );
    let log_reader = log.clone();
    let raft = Raft::new(node_id, Arc::new(raft_config(ccfg)?), network, log, sm)
        .await
        .map_err(|e| StartError::Cluster(format!("cannot start Raft: {e}")))?;
    let campaigns = !crate::test_hooks::never_campaign();
    let seal = Arc::new(SealState::new());
    let cluster = Arc::new(Cluster {
        raft,
        node_id,
        me: me.clone(),
        settings: Settings {
            heartbeat: ccfg.heartbeat,
            lease: ccfg.lease,
            read_index_wait: ccfg.read_index_wait,
            write_wait: ccfg.write_wait,
            election_timeout: ccfg.election_timeout,
        },
        channels,
        tls: tls.clone(),
        cluster_id,
        lease: Lease::resuming(restored.led_term, restored.last_index),
        reads: Default::default(),
        sent_commit,
        contact,
        read_leases,
        last_appended,
        proposals,
        state: state.clone(),
        log: log_reader,
        seal: seal.clone(),
        seals: opts.seals.clone(),
        ticket: Default::default(),
        started: crate::cluster::boot_clock::BootInstant::now(),
        snapshot_file: opts.data_dir.join("snapshot.bin"),
    });
    let node = Arc::new(Node {
        state,
        seal,
        cluster: cluster.clone(),
        cache,
        rotation_schedule,
        key_changes: Default::default(),
        metrics,
        events: opts.events.clone(),
        routes: routes(&opts.config),
        audit,
        config_synced: Default::default(),
        node_cert_paths: match (&ccfg.tls.cert, &ccfg.tls.key, &ccfg.tls.ca) {
            (Some(c), Some(k), Some(a)) => Some((c.clone(), k.clone(), a.clone())),
            _ => None,
        },
        limits: opts.config.limits,
        rate_limiter: super::RateLimiter::new(&opts.config.rate_limits),
        configured_admin: opts.admin.clone(),
        log_streams: Arc::new(tokio::sync::Semaphore::new(
            opts.config.limits.max_log_streams,
        )),
    });
    if let Some(tls) = tls {
        let listener = tokio::net::TcpListener::bind(ccfg.grpc.listen)
            .await
            .map_err(|e| {
                StartError::Cluster(format!(
                    "cannot listen for peers on {}: {e}",
                    ccfg.grpc.listen
                ))
            })?;
        let status_cluster = cluster.clone();
        let service = ClusterService::new(
            cluster.clone(),
            Arc::new(move || node_status(&status_cluster)),
        );
        let router = tonic::transport::Server::builder().add_service(service.into_server());
        tokio::spawn(async move {
            if let Err(e) = serve_grpc(listener, tls, router, std::future::pending()).await {
                tracing::error!("gRPC server stopped: {e}");
            }
        });
    }
    tokio::spawn(cluster.clone().keep_lease());
    tokio::spawn(cluster.clone().send_held_back_commits());
    tokio::spawn(cluster.clone().campaign(campaigns));
    tokio::spawn(cluster.clone().keep_node_certificate());
    tokio::spawn(crate::cluster::watch_metrics(
        cluster.clone(),
        node.metrics.clone(),
    ));
    tokio::spawn(super::unseal::sign_membership(
        node.clone(),
        opts.admin.clone(),
    ));
    tokio::spawn(super::unseal::keep_unsealed(
        node.clone(),
        opts.admin.clone(),
        opts.config.seal.recheck,
        opts.config.seal.offline_grace,
    ));
    tokio::spawn(sweep_cache(node.clone()));
    tokio::spawn(crate::cluster::evict_tombstoned(cluster.clone()));
    tokio::spawn(crate::cluster::build_snapshots_in_turn(
        cluster.clone(),
        ccfg.snapshot_every.max(1),
    ));
    tokio::spawn(super::rotation_schedule::rotate_due_keys(node.clone()));
    if let Some(after) = ccfg.cleanup_dead_after {
        tokio::spawn(crate::cluster::remove_dead_voters(
            cluster.clone(),
            after,
            ccfg.min_voters,
        ));
    }
    tracing::info!(
        "node {node_id} at {} (gRPC {})",
        me.http,
        if me.grpc.is_empty() { "off" } else { &me.grpc }
    );

    let initialized = cluster
        .raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Cluster(e.to_string()))?;
    let single = cluster.tls.is_none();
    let founder = opts.bootstrap || ccfg.bootstrap || single;
    if initialized && founder && bootstrap_interrupted(&node).await? {
        tracing::warn!("the bootstrap of this node was interrupted before Init: finishing it");
        finish_bootstrap(&node, &opts).await?;
    }
    if !initialized {
        if founder {
            super::founding::refuse_second_cluster(&ccfg.join, &node.cluster.me.http, &ccfg.tls)
                .await?;
            bootstrap(&node, &opts).await?;
        } else if !ccfg.join.is_empty() {
            tokio::spawn(join_loop(node.clone(), ccfg.join.clone(), ccfg.tls.clone()));
        } else {
            tracing::info!(
                "node {node_id} is not part of a cluster yet: run `kes-cluster join` against it, or set cluster.join"
            );
        }
    }
    tokio::spawn(sync_config(
        node.clone(),
        policies_of(&opts.config),
        opts.config.keys.clone(),
        opts.admin.clone(),
    ));
    Ok(node)
}

fn policies_of(config: &Config) -> Vec<(String, Policy, Vec<String>)> {
    config
        .policies
        .iter()
        .map(|(name, p)| {
            let rules = Policy {
                allow: p.allow.clone(),
                deny: p.deny.clone(),
            };
            (name.clone(), rules, p.identities.clone())
        })
        .collect()
}

/// The command that brings the config's policies into the state, with every record it may
/// write signed by this (unsealed) node.
fn config_policies_command(
    node: &Node,
    policies: Vec<(String, Policy, Vec<String>)>,
    admin: &str,
) -> Result<Command, StartError> {
    let keys = node
        .seal
        .keys()
        .ok_or_else(|| StartError::Cluster("the node is sealed".into()))?;
    let mut cmd = crate::cluster::system_command(admin, "/v1/policy/write/", Op::RekeyFinish);
    let mut sigs = Vec::new();
    for (name, rules, ids) in &policies {
        let key = crate::state::scoped_key(DEFAULT_ENCLAVE, name);
        let entry = crate::state::PolicyEntry::new(rules.clone(), cmd.time, admin, true);
        sigs.push((
            "policies".to_owned(),
            key.clone().into(),
            crate::seal::sign(&keys, "policies", &key, &entry),
        ));
        for id in ids {
            let key = crate::state::scoped_key(DEFAULT_ENCLAVE, id);
            let entry = crate::state::IdentityEntry::new(name, cmd.time, admin, true);
            sigs.push((
                "identities".to_owned(),
                key.clone().into(),
                crate::seal::sign(&keys, "identities", &key, &entry),
            ));
        }
    }
    cmd.op = Op::SetConfigPolicies { policies, sigs };
    Ok(cmd)
}

/// Creates the cluster: this node alone, then the cluster id, admin, cluster key and the
/// config policies through the log.
async fn bootstrap(node: &Node, opts: &StartOptions) -> Result<(), StartError> {
    let c = &node.cluster;
    let members: BTreeMap<_, _> = [(c.node_id, c.me.clone())].into();
    c.raft
        .initialize(members)
        .await
        .map_err(|e| StartError::Cluster(format!("cannot bootstrap: {e}")))?;
    crate::test_hooks::crash_after_initialize();
    finish_bootstrap(node, opts).await
}

/// Whether this node founded a cluster whose `Init` never took effect: Raft holds a membership
/// of this node alone, and once everything committed is applied, no cluster record exists. A
/// node that dies between the two steps would otherwise stay sealed for good.
async fn bootstrap_interrupted(node: &Node) -> Result<bool, StartError> {
    let c = &node.cluster;
    let alone = c.with_metrics(|m| {
        let voters: Vec<_> = m.membership_config.membership().voter_ids().collect();
        voters == [c.node_id]
    });
    let founded = |n: &Node| {
        n.state
            .cluster_meta()
            .map(|m| m.is_some())
            .map_err(|e| StartError::Cluster(format!("cannot read the cluster record: {e}")))
    };
    if !alone || founded(node)? {
        return Ok(false);
    }
    // An `Init` that was committed but not applied yet is applied before we decide.
    become_founding_leader(c).await?;
    c.read_barrier()
        .await
        .map_err(|e| StartError::Cluster(format!("cannot read the founded cluster: {e}")))?;
    Ok(!founded(node)?)
}

async fn become_founding_leader(c: &crate::cluster::Cluster) -> Result<(), StartError> {
    c.raft
        .wait(Some(Duration::from_secs(30)))
        .current_leader(c.node_id, "bootstrap")
        .await
        .map_err(|e| StartError::Cluster(format!("did not become leader after bootstrap: {e}")))?;
    Ok(())
}

/// The steps of a bootstrap after Raft is initialised: the cluster id, admin and cluster key,
/// then the config policies, through the log.
async fn finish_bootstrap(node: &Node, opts: &StartOptions) -> Result<(), StartError> {
    let c = &node.cluster;
    become_founding_leader(c).await?;
    let cluster_id = format!("{:032x}", crate::api::new_id());
    let ck = ClusterKey::generate();
    let wrapped = c
        .seals
        .wrap_all(&ck, &cluster_id)
        .await
        .map_err(|(id, e)| {
            StartError::Cluster(format!(
                "cannot bootstrap: seal {id} cannot wrap the cluster key: {e}"
            ))
        })?;
    let keys = ck.derive(1);
    let mut cmd = crate::cluster::system_command(&opts.admin, "/v1/cluster/init", Op::RekeyFinish);
    let default = crate::state::EnclaveEntry::new(cmd.time, &opts.admin);
    cmd.op = Op::Init {
        cluster_id: cluster_id.clone(),
        admin: opts.admin.clone(),
        wrapped: wrapped.clone(),
        default_enclave_sig: crate::seal::sign(
            &keys,
            "enclaves",
            DEFAULT_ENCLAVE.as_bytes(),
            &default,
        ),
    };
    let committed = c
        .write(cmd)
        .await
        .map_err(|e| StartError::Cluster(e.to_string()))?;
    if committed.outcome != Outcome::Done {
        return Err(StartError::Cluster(format!(
            "cluster init refused: {:?}",
            committed.outcome
        )));
    }
    c.set_cluster_id(&cluster_id);
    node.seal.unseal(keys, (wrapped, None));
    tracing::info!("created cluster {cluster_id}");
    let committed = c
        .write(config_policies_command(
            node,
            policies_of(&opts.config),
            &opts.admin,
        )?)
        .await
        .map_err(|e| StartError::Cluster(e.to_string()))?;
    match committed.outcome {
        Outcome::Done => Ok(()),
        Outcome::ConfigClash(msg) => Err(StartError::Config(msg)),
        other => Err(StartError::Config(format!(
            "config policies refused: {other:?}"
        ))),
    }
}

/// Asks each configured member in turn to add this node, until one does.
async fn join_loop(node: Arc<Node>, members: Vec<String>, tls: crate::config::ClusterTlsConfig) {
    let (Some(cert), Some(key), Some(ca)) = (tls.cert, tls.key, tls.ca) else {
        tracing::error!("cluster.join needs cluster.tls");
        return;
    };
    let mut wait = Duration::from_millis(500);
    loop {
        if node.cluster.raft.is_initialized().await.unwrap_or(false)
            && node
                .cluster
                .metrics()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == node.cluster.node_id)
        {
            return;
        }
        for m in &members {
            match crate::cluster::join_through(&node.cluster, m, &cert, &key, &ca).await {
                Ok(()) => {
                    tracing::info!("joined the cluster through {m}");
                    return;
                }
                Err(e) => tracing::warn!("join through {m} failed: {e}"),
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// Once a leader is known and the node is unsealed: brings the config policies into the
/// replicated state if they differ, and creates the keys listed in `keys:`.
async fn sync_config(
    node: Arc<Node>,
    policies: Vec<(String, Policy, Vec<String>)>,
    keys: Vec<crate::config::KeySpec>,
    admin: String,
) {
    loop {
        if node.cluster.leader().is_some()
            && !node.seal.is_sealed()
            && node.cluster.serving().is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !config_policies_match(&node, &policies) {
        let Ok(cmd) = config_policies_command(&node, policies, &admin) else {
            tracing::error!("config policies not applied: the node is sealed");
            return;
        };
        match node.cluster.write(cmd).await {
            Ok(c) if c.outcome == Outcome::Done => {}
            Ok(c) => tracing::error!("config policies not applied: {:?}", c.outcome),
            Err(e) => tracing::error!("config policies not applied: {e}"),
        }
    }
    for key in keys {
        let name = &key.name;
        let every = key.rotate_every.unwrap_or(0);
        match crate::api::create_key_as(node.clone(), name, &admin, every).await {
            Ok(()) => tracing::info!("created key '{name}' from the config"),
            Err(e) if e.message == "key already exists" => sync_rotation(&node, &key, &admin).await,
            Err(e) => tracing::error!("cannot create key '{name}' from the config: {}", e.message),
        }
    }
    node.config_synced
        .store(true, std::sync::atomic::Ordering::Release);
}

/// Gives an existing key the rotation period its `keys:` entry states, if it states one that
/// the key does not have.
async fn sync_rotation(node: &Node, key: &crate::config::KeySpec, admin: &str) {
    let Some(every) = key.rotate_every else {
        return;
    };
    let held = node.state.key(DEFAULT_ENCLAVE, &key.name).ok().flatten();
    if held.is_none_or(|entry| entry.rotate_every == every) {
        return;
    }
    let op = crate::state::Op::SetKeyRotation {
        name: key.name.clone(),
        rotate_every: every,
    };
    let path = format!("/v1/key/rotation/{}", key.name);
    match node
        .cluster
        .write(crate::cluster::system_command(admin, &path, op))
        .await
    {
        Ok(c) if c.outcome == Outcome::Done => {
            tracing::info!("key '{}' now rotates every {every} s (config)", key.name)
        }
        Ok(c) => tracing::error!("rotation of key '{}' not set: {:?}", key.name, c.outcome),
        Err(e) => tracing::error!("rotation of key '{}' not set: {e}", key.name),
    }
}

fn config_policies_match(node: &Node, policies: &[(String, Policy, Vec<String>)]) -> bool {
    let state = &node.state;
    let stored: Vec<String> = state
        .list_policies(DEFAULT_ENCLAVE, "", None, None)
        .map(|p| p.names)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            state
                .policy(DEFAULT_ENCLAVE, n)
                .ok()
                .flatten()
                .is_some_and(|p| p.from_config)
        })
        .collect();
    if stored.len() != policies.len() {
        return false;
    }
    policies.iter().all(|(name, rules, ids)| {
        let same_rules = state
            .policy(DEFAULT_ENCLAVE, name)
            .ok()
            .flatten()
            .is_some_and(|p| p.from_config && p.policy == *rules);
        same_rules
            && ids.iter().all(|id| {
                state
                    .identity(DEFAULT_ENCLAVE, id)
                    .ok()
                    .flatten()
                    .is_some_and(|i| i.from_config && i.policy == *name)
            })
    })
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
