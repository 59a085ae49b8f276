//! `cluster:` — how a node finds its peers and the Raft timings it runs with.
//!
//! The timing defaults are generous on purpose: a 2-core machine runs three nodes and their
//! tests, and openraft's 150–300 ms defaults cause spurious elections there (STACK.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::address::{check_advertise, parse_listen};
use super::duration::show;
use super::reader::{Field, items, opt};

/// The `cluster:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `cluster.grpc`: where the inter-node gRPC service listens and how peers reach it.
    pub grpc: GrpcConfig,
    /// `cluster.tls`: the node certificate and the node CA, separate from client identities.
    pub tls: ClusterTlsConfig,
    /// `cluster.bootstrap`: create a new cluster when the data directory is empty, unless a
    /// peer in `cluster.join` already belongs to one (`server/founding.rs`).
    pub bootstrap: bool,
    /// `cluster.join`: members (`https://host:port` KES addresses) to ask for admission at start;
    /// on a bootstrapping node, the peers that must not form a cluster already.
    pub join: Vec<String>,
    /// `cluster.heartbeat`: leader heartbeat interval. Default 250ms.
    pub heartbeat: Duration,
    /// `cluster.election_timeout`: `[min, max]`. Default `[1s, 1500ms]`.
    pub election_timeout: ElectionTimeout,
    /// `cluster.lease`: how long a quorum ack (leader) or a confirmed commit index (follower)
    /// lets a node serve. Default 800ms; always below `election_timeout.min`.
    pub lease: Duration,
    /// `cluster.read_index_wait`: bound for `Kes-Cluster-Index` waits and 404 confirmation.
    /// Default 5s.
    pub read_index_wait: Duration,
    /// `cluster.write_wait`: bound for forwarding and committing a write before answering 504.
    /// Default 10s.
    pub write_wait: Duration,
    /// `cluster.snapshot_every`: log entries between snapshots. Default 10000.
    pub snapshot_every: u64,
    /// `cluster.cleanup_dead_after`: the leader removes (and tombstones) a voter that has not
    /// answered for this long. Default off.
    pub cleanup_dead_after: Option<Duration>,
    /// `cluster.min_voters`: cleanup never leaves fewer voters than this. Default 3.
    pub min_voters: usize,
}

/// `cluster.grpc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcConfig {
    /// `listen`: `ip:port` to bind. Default `0.0.0.0:7473`.
    pub listen: SocketAddr,
    /// `advertise`: `host:port` peers dial; `None` leaves it to the cluster module.
    pub advertise: Option<String>,
    /// `source`: the local IP address this node's connections to peers leave from, on a
    /// host with several; `None` lets the operating system choose.
    pub source: Option<IpAddr>,
}

/// `cluster.tls`. All three are set together, or none (then `--dev` and `kes-cluster dev`
/// generate them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterTlsConfig {
    /// `cert`: this node's certificate, signed by the node CA.
    pub cert: Option<PathBuf>,
    /// `key`: its private key.
    pub key: Option<PathBuf>,
    /// `ca`: the node CA that signs every member's certificate.
    pub ca: Option<PathBuf>,
}

/// `cluster.election_timeout`: an election starts after a random wait in `[min, max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionTimeout {
    /// Lower bound. Default 1s.
    pub min: Duration,
    /// Upper bound. Default 1500ms.
    pub max: Duration,
}

impl ElectionTimeout {
    /// How long after hearing from a leader a node refuses to vote for anyone else: the lower
    /// bound. openraft calls this its leader lease and takes it from its own
    /// `election_timeout_max` (see `raft_config`); the pre-vote grants a vote only after it.
    /// A leader's serving lease is shorter, so no new leader can be elected while an old
    /// leader still serves reads from its lease.
    pub fn vote_refusal(&self) -> Duration {
        self.min + Duration::from_millis(1)
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            grpc: GrpcConfig {
                listen: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 7473),
                advertise: None,
                source: None,
            },
            tls: ClusterTlsConfig::default(),
            bootstrap: false,
            join: Vec::new(),
            heartbeat: Duration::from_millis(250),
            election_timeout: ElectionTimeout {
                min: Duration::from_secs(1),
                max: Duration::from_millis(1500),
            },
            lease: Duration::from_millis(800),
            read_index_wait: Duration::from_secs(5),
            write_wait: Duration::from_secs(10),
            snapshot_every: 10_000,
            cleanup_dead_after: None,
            min_voters: 3,
        }
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<ClusterConfig, ConfigError> {
    let mut sec = field.section()?;
    let grpc = sec.take("grpc");
    let tls = sec.take("tls");
    let bootstrap = sec.take("bootstrap");
    let join = sec.take("join");
    let heartbeat = sec.take("heartbeat");
    let election_timeout = sec.take("election_timeout");
    let lease = sec.take("lease");
    let read_index_wait = sec.take("read_index_wait");
    let write_wait = sec.take("write_wait");
    let snapshot_every = sec.take("snapshot_every");
    let cleanup_dead_after = sec.take("cleanup_dead_after");
    let min_voters = sec.take("min_voters");
    sec.finish()?;

    let mut c = ClusterConfig::default();
    if let Some(f) = grpc {
        c.grpc = parse_grpc(&f)?;
    }
    if let Some(f) = tls {
        c.tls = parse_tls(&f)?;
    }
    if let Some(b) = opt(&bootstrap, Field::bool)? {
        c.bootstrap = b;
    }
    for item in items(&join)? {
        let Some(url) = item.optional_string()? else {
            continue;
        };
        check_join_url(&url).map_err(|reason| ConfigError::invalid(item.path(), reason))?;
        c.join.push(url);
    }
    for (slot, f) in [
        (&mut c.heartbeat, heartbeat),
        (&mut c.lease, lease),
        (&mut c.read_index_wait, read_index_wait),
        (&mut c.write_wait, write_wait),
    ] {
        if let Some(d) = opt(&f, Field::duration)? {
            *slot = d;
        }
    }
    if let Some(f) = election_timeout {
        c.election_timeout = parse_election_timeout(&f)?;
    }
    if let Some(n) = opt(&snapshot_every, Field::u64)? {
        c.snapshot_every = n;
    }
    c.cleanup_dead_after = opt(&cleanup_dead_after, Field::duration)?;
    if let Some(n) = opt(&min_voters, Field::u64)? {
        c.min_voters = usize::try_from(n).unwrap_or(usize::MAX);
    }
    Ok(c)
}

fn parse_grpc(field: &Field<'_>) -> Result<GrpcConfig, ConfigError> {
    let mut sec = field.section()?;
    let listen = sec.take("listen");
    let advertise = sec.take("advertise");
    let source = sec.take("source");
    sec.finish()?;
    let mut grpc = ClusterConfig::default().grpc;
    if let Some(f) = listen
        && let Some(text) = f.optional_string()?
    {
        grpc.listen = parse_listen(&text).map_err(|r| ConfigError::invalid(f.path(), r))?;
    }
    if let Some(f) = advertise
        && let Some(text) = f.optional_string()?
    {
        check_advertise(&text).map_err(|r| ConfigError::invalid(f.path(), r))?;
        grpc.advertise = Some(text);
    }
    if let Some(f) = source
        && let Some(text) = f.optional_string()?
    {
        let ip = text.parse::<IpAddr>().map_err(|_| {
            ConfigError::invalid(f.path(), format!("'{text}' is not an IP address"))
        })?;
        grpc.source = Some(ip);
    }
    Ok(grpc)
}

fn parse_tls(field: &Field<'_>) -> Result<ClusterTlsConfig, ConfigError> {
    let mut sec = field.section()?;
    let cert = sec.take("cert");
    let key = sec.take("key");
    let ca = sec.take("ca");
    sec.finish()?;
    Ok(ClusterTlsConfig {
        cert: opt(&cert, Field::optional_string)?.map(PathBuf::from),
        key: opt(&key, Field::optional_string)?.map(PathBuf::from),
        ca: opt(&ca, Field::optional_string)?.map(PathBuf::from),
    })
}

fn parse_election_timeout(field: &Field<'_>) -> Result<ElectionTimeout, ConfigError> {
    let items = match field.value() {
        serde_yaml_ng::Value::Sequence(_) => field.list()?,
        _ => Vec::new(),
    };
    let [min, max] = items.as_slice() else {
        return Err(ConfigError::invalid(
            field.path(),
            "give the lower and upper bound as a list of two durations, for example [1s, 2s]",
        ));
    };
    let bound = |f: &Field<'_>| {
        f.duration()?
            .ok_or_else(|| f.empty("give a duration, for example 1s"))
    };
    Ok(ElectionTimeout {
        min: bound(min)?,
        max: bound(max)?,
    })
}

/// Join addresses are KES URLs of members, the same form `kes-cluster join` takes.
fn check_join_url(url: &str) -> Result<(), String> {
    match url.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with(['/', ':']) => Ok(()),
        _ => Err(format!(
            "'{url}' is not a member's address; write it as https://host:port, for example https://node1:7373"
        )),
    }
}

impl ClusterConfig {
    /// Checks the rules between settings: openraft needs `heartbeat < election_timeout.min <
    /// election_timeout.max`, and the serving lease must outlast a heartbeat (or followers would
    /// drop out between two) yet end before any peer may start an election (or an old leader
    /// could serve after a new one is elected).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let et = self.election_timeout;
        let rule = |key: &str, ok: bool, reason: String| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::invalid(format!("cluster.{key}"), reason))
            }
        };
        rule(
            "heartbeat",
            self.heartbeat >= Duration::from_millis(1),
            "must be at least 1ms; the default is 250ms".to_owned(),
        )?;
        rule(
            "election_timeout",
            self.heartbeat < et.min && et.min < et.max,
            format!(
                "[{}, {}] must satisfy heartbeat ({}) < lower bound < upper bound; the default is [1s, 1500ms]",
                show(et.min),
                show(et.max),
                show(self.heartbeat)
            ),
        )?;
        rule(
            "lease",
            self.heartbeat < self.lease && self.lease < et.min,
            format!(
                "{} must be longer than the heartbeat ({}) and shorter than the smallest election timeout ({}); the default is 800ms",
                show(self.lease),
                show(self.heartbeat),
                show(et.min)
            ),
        )?;
        for (key, d) in [
            ("read_index_wait", self.read_index_wait),
            ("write_wait", self.write_wait),
        ] {
            rule(key, !d.is_zero(), "must be greater than zero".to_owned())?;
        }
        rule(
            "snapshot_every",
            self.snapshot_every > 0,
            "must be at least 1 log entry; the default is 10000".to_owned(),
        )?;
        // A voter must be gone for longer than any blip (a restart, a GC pause, an election)
        // before it is taken out for good: it cannot come back without a new data dir.
        let floor = (et.max * 10).max(Duration::from_secs(10));
        rule(
            "cleanup_dead_after",
            self.cleanup_dead_after.is_none_or(|d| d >= floor),
            format!(
                "must be at least {} (10 election timeouts, and 10s); leave it out to never remove dead voters",
                show(floor)
            ),
        )?;
        rule(
            "min_voters",
            self.min_voters >= 1,
            "must be at least 1; the default is 3".to_owned(),
        )?;
        let tls = &self.tls;
        let set = [&tls.cert, &tls.key, &tls.ca]
            .iter()
            .filter(|p| p.is_some())
            .count();
        rule(
            "tls",
            set == 0 || set == 3,
            "set cert, key and ca together (the node certificate, its key and the node CA)"
                .to_owned(),
        )?;
        rule(
            "join",
            self.join.is_empty() || set == 3,
            "joining a cluster needs node certificates: set cluster.tls.cert, key and ca"
                .to_owned(),
        )
    }
}
