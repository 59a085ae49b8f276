//! `cluster-bench`: the figures issue 3 asks for, measured on real `kes-node` processes on
//! loopback, made and faulted by the jepsen-lite harness.
//!
//! ```text
//! cargo run --release -p jepsen-lite --bin cluster-bench -- \
//!     [failover|create|catchup|reads|idle|stalls|all] [--runs N] [--keys N] [--seconds N]
//!     [--cluster 'KEY: VALUE']... [--no-build]
//! ```
//!
//! * `failover`: on one 3-node cluster, `--runs` times (default 10): `kill -9` the leader
//!   under a steady load of creates through the survivors; the time from the kill to the first
//!   200, the window in which writes failed, and a timeline of the writes over all runs
//!   (`failover.rs`). The killed node is restarted and every node is ready again before the
//!   next run.
//! * `create`: on a fresh 3-node cluster, `--keys` (default 2000) sequential key creates
//!   through the leader, as many through a follower (forwarded to the leader), each over one
//!   kept-alive connection; then 4 concurrent clients through the leader. Latency p50/p99/max
//!   and throughput.
//! * `catchup`: on a fresh 3-node cluster with the default `snapshot_every` (10,000), one
//!   follower is stopped, `--keys` (default 10,000) keys are created through the leader by 8
//!   concurrent clients (one more per 20,000 keys, up to 64), and the follower is restarted.
//!   The time to `/v1/ready` and to listing every key, and whether it caught up by installing
//!   the leader's snapshot. Then the figures at scale (`--keys 1000000` for issue 10): each
//!   node's RSS and data dir, the snapshot's size and build time, a full `key list` through
//!   the leader, and the follower's restart to ready.
//!
//! * `reads`: on a fresh 3-node cluster, decrypt of one ciphertext by 32 concurrent clients
//!   (one kept-alive connection each) for 10 s through the leader, then 10 s through a
//!   follower, three times over, alternating so that drift in the machine's load hits both
//!   alike. Throughput and latency per target, and the follower/leader throughput ratio. Every
//!   read, on either node, is linearizable (README, "Reads").
//!
//! Non-goals: these are figures to report and to compare side by side within one run, never
//! pass/fail thresholds (the project's rule: no timed assertions). Every node and the bench
//! share the machine's cores, so absolute numbers depend on the machine and its load.
//!
//! The harness runs `kes-node` and `kes-cluster` from the directory of this executable
//! (`target/release` for a release build). So that they match the sources, the bench first
//! runs `cargo build -p kes-node -p kes-cluster --bins` in the same profile; `--no-build`
//! skips that and uses the binaries already there.
//!
//! * `idle`: a fresh 3-node cluster that nobody touches, watched for `--seconds` (default
//!   600): every node's term and leader every 5 s. Any increase of the term is a spurious
//!   election (issue 10); see `idle.rs`.
//! * `stalls`: no cluster; the machine's own stalls, measured by a thread spinning on each core
//!   for `--seconds` rounds of 0.8 s (default 20): the floor under every latency figure
//!   (`stalls.rs`).
//!
//! `--cluster 'KEY: VALUE'` adds a line to every node's `cluster:` section in every mode (for
//! example another `election_timeout`), so two settings can be compared run against run.
#![deny(missing_docs)]

mod failover;
mod idle;
mod stalls;

use jepsen_lite::Cluster;
use kes_cluster::{Client, Method};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A failed bench step, with a message that says what went wrong.
type BenchResult<T> = Result<T, String>;

/// How long a (re)started node may take to report ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Concurrent clients for the create-throughput figure.
const CREATE_CONCURRENCY: usize = 4;
/// Concurrent clients that load the cluster while a follower is down (catch-up mode).
const CATCHUP_LOADERS: usize = 8;
/// The log entries openraft keeps behind a snapshot (`max_in_snapshot_log_to_keep` in
/// `node/src/server/startup.rs`); a follower further behind than this can only catch up by
/// snapshot once the log has been purged.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1000;

/// What to measure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Failover,
    Create,
    Catchup,
    Reads,
    Idle,
    Stalls,
    All,
}

/// The command line.
struct Args {
    mode: Mode,
    runs: usize,
    keys: Option<usize>,
    /// How long `idle` watches, or how many rounds `stalls` spins.
    seconds: Option<u64>,
    build: bool,
    /// Lines added to the `cluster:` section of every node's `node.yaml` (indented).
    cluster_yaml: String,
}

const USAGE: &str = concat!(
    "usage: cluster-bench [failover|create|catchup|reads|idle|stalls|all] [--runs N]\n",
    "                     [--keys N] [--seconds N] [--cluster 'KEY: VALUE']... [--no-build]\n",
    "  failover   kill -9 the leader --runs times (default 10) under 100 writes/s; time to\n",
    "             the first 200, error window, timeline\n",
    "  create     --keys (default 2000) creates via leader, via follower, by 4 clients\n",
    "  catchup    a follower --keys (default 10000) keys behind catches up by snapshot\n",
    "  reads      decrypt by 32 clients via the leader vs via a follower, 3 x 10 s each\n",
    "  idle       an untouched cluster's terms for --seconds (default 600): no election\n",
    "  stalls     this machine's own stalls: a spinning thread on each core, --seconds\n",
    "             rounds of 0.8 s (default 20); run it on an otherwise idle machine\n",
    "  all        all but idle and stalls (the default)\n",
    "  --cluster 'KEY: VALUE'  a line for every node's cluster: section (repeatable),\n",
    "             e.g. --cluster 'election_timeout: [500ms, 1s]' --cluster 'lease: 400ms'\n",
    "  --no-build use the kes-node/kes-cluster binaries already next to this executable",
);

fn parse_args() -> BenchResult<Args> {
    let mut args = Args {
        mode: Mode::All,
        runs: 10,
        keys: None,
        seconds: None,
        build: true,
        cluster_yaml: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> BenchResult<usize> {
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))?;
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{flag} {v:?}: expected a positive number\n{USAGE}")),
            }
        };
        match a.as_str() {
            "failover" => args.mode = Mode::Failover,
            "create" => args.mode = Mode::Create,
            "catchup" => args.mode = Mode::Catchup,
            "reads" => args.mode = Mode::Reads,
            "idle" => args.mode = Mode::Idle,
            "stalls" => args.mode = Mode::Stalls,
            "all" => args.mode = Mode::All,
            "--runs" => args.runs = number("--runs")?,
            "--keys" => args.keys = Some(number("--keys")?),
            "--seconds" => args.seconds = Some(number("--seconds")? as u64),
            "--no-build" => args.build = false,
            "--cluster" => {
                let line = it
                    .next()
                    .ok_or_else(|| format!("--cluster needs a 'key: value' line\n{USAGE}"))?;
                args.cluster_yaml.push_str(&format!("  {}\n", line.trim()));
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Builds the node binaries when asked (see [`jepsen_lite::ensure_node_binaries`]), and warns
/// when the figures will come from a debug build.
fn ensure_node_binaries(build: bool) -> BenchResult<()> {
    jepsen_lite::ensure_node_binaries(build)?;
    if !jepsen_lite::bin_dir().ends_with("release") {
        println!(
            "warning: not a release build; these figures are not comparable with release ones"
        );
    }
    Ok(())
}

/// Seconds with millisecond precision, for one output line.
fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Milliseconds with two decimals.
fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// Nearest-rank percentile `p` (0..=100) of `sorted`, which must not be empty.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `sorted` (mean of the two middle values for an even count).
fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// `others(3, 1)` = `[0, 2]`.
fn others(n: usize, but: usize) -> Vec<usize> {
    (0..n).filter(|i| *i != but).collect()
}

/// One key create; `Ok(status)` or the transport error as text.
async fn create(client: &Client, name: &str) -> BenchResult<u16> {
    client
        .request(Method::PUT, &format!("/v1/key/create/{name}"), &[], "")
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// Waits until every running node is ready; an error names the node and shows the logs.
async fn all_ready(c: &mut Cluster) -> BenchResult<()> {
    for i in 0..c.nodes.len() {
        if c.nodes[i].running() && !c.wait_ready(i, READY_WITHIN).await {
            return Err(format!("node{} never became ready:\n{}", i + 1, c.logs()));
        }
    }
    Ok(())
}

/// The leader, or an error with the logs.
async fn leader(c: &Cluster) -> BenchResult<usize> {
    let all: Vec<usize> = (0..c.nodes.len()).collect();
    c.leader_among(&all, Duration::from_secs(30))
        .await
        .ok_or_else(|| format!("no leader:\n{}", c.logs()))
}

/// Latencies of one batch of creates, and the wall time it took.
struct Batch {
    label: String,
    latencies: Vec<Duration>,
    wall: Duration,
    errors: usize,
}

impl Batch {
    /// Latency percentile `p`; the batch must not be empty.
    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        percentile(&l, p)
    }

    /// Creates per second of wall time.
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn line(&self) -> String {
        format!(
            "{}: n={} p50={} p99={} max={} throughput={:.0}/s errors={}",
            self.label,
            self.latencies.len(),
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
            self.throughput(),
            self.errors
        )
    }
}

/// `n` sequential creates named `{prefix}{i}` through one kept-alive client.
async fn sequential(client: &Client, prefix: &str, n: usize) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    for i in 0..n {
        let t = Instant::now();
        let status = create(client, &format!("{prefix}{i}")).await;
        latencies.push(t.elapsed());
        if status != Ok(200) {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// `tasks` clients of node `i` run concurrently, each making `per_task` creates.
async fn concurrent(
    c: &Cluster,
    i: usize,
    tasks: usize,
    per_task: usize,
    prefix: &str,
) -> BenchResult<(Vec<Duration>, usize, Duration)> {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let client = c.admin(i);
            let prefix = format!("{prefix}{t}-");
            tokio::spawn(async move { sequential(&client, &prefix, per_task).await })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await.map_err(|e| format!("a create task failed: {e}"))?;
        latencies.extend(l);
        errors += e;
    }
    Ok((latencies, errors, t0.elapsed()))
}

async fn bench_create(n: usize, cluster_yaml: &str) -> BenchResult<Vec<Batch>> {
    println!("create: starting a 3-node cluster ...");
    let c = Cluster::start(3, cluster_yaml).await;
    let l = leader(&c).await?;
    let f = others(3, l)[0];
    let (to_leader, to_follower) = (c.admin(l), c.admin(f));
    // Warm both connections and both nodes' code paths; not measured.
    sequential(&to_leader, "warm-l-", 20).await;
    sequential(&to_follower, "warm-f-", 20).await;

    let mut out = Vec::new();
    for (label, client, prefix) in [
        (
            format!("create via leader node{} (sequential)", l + 1),
            &to_leader,
            "seq-l-",
        ),
        (
            format!("create via follower node{} (sequential, forwarded)", f + 1),
            &to_follower,
            "seq-f-",
        ),
    ] {
        let t0 = Instant::now();
        let (latencies, errors) = sequential(client, prefix, n).await;
        let b = Batch {
            label,
            latencies,
            wall: t0.elapsed(),
            errors,
        };
        println!("{}", b.line());
        out.push(b);
    }
    let per_task = n.div_ceil(CREATE_CONCURRENCY);
    let (latencies, errors, wall) =
        concurrent(&c, l, CREATE_CONCURRENCY, per_task, "conc-").await?;
    let b = Batch {
        label: format!(
            "create via leader node{} ({CREATE_CONCURRENCY} concurrent clients)",
            l + 1
        ),
        latencies,
        wall,
        errors,
    };
    println!("{}", b.line());
    out.push(b);
    Ok(out)
}

/// The catch-up figures.
struct Catchup {
    keys: usize,
    load: Duration,
    load_errors: usize,
    to_ready: Duration,
    to_listed: Duration,
    /// The leader's snapshot index when the follower restarted.
    leader_snapshot: u64,
    /// The follower's last log index when it was stopped.
    behind_from: u64,
    /// The snapshot index the follower logged after it restarted.
    follower_snapshot: Option<u64>,
    snapshot_file: bool,
    /// Snapshots the follower built itself since its restart (`kes_cluster_snapshot_seconds`
    /// counts builds only, not installs); `None` when its metrics do not say.
    follower_builds: Option<u64>,
    /// Snapshots the leader built (the same metric, as a check that it counts builds).
    leader_builds: Option<u64>,
}

impl Catchup {
    fn by_snapshot(&self) -> bool {
        // It holds the leader's snapshot, and did not build it itself from replayed entries.
        self.snapshot_file
            && self.follower_snapshot == Some(self.leader_snapshot)
            && self.follower_builds.is_none_or(|b| b == 0)
    }

    fn summary(&self) -> String {
        format!(
            "{} keys behind: ready after {}, all {} keys listed after {}; caught up by snapshot: \
             {} (follower stopped at log index {}, leader snapshot at {} keeps the log from \
             ~{}; follower logged snapshot at {}, snapshot.bin {}; snapshots built: leader {}, follower {})",
            self.keys,
            secs(self.to_ready),
            self.keys,
            secs(self.to_listed),
            if self.by_snapshot() { "yes" } else { "NO" },
            self.behind_from,
            self.leader_snapshot,
            self.leader_snapshot
                .saturating_sub(LOG_KEPT_BEHIND_SNAPSHOT),
            self.follower_snapshot
                .map_or("none".to_owned(), |s| s.to_string()),
            if self.snapshot_file {
                "present"
            } else {
                "absent"
            },
            count_or_unknown(self.leader_builds),
            count_or_unknown(self.follower_builds),
        )
    }
}

/// The highest index of the snapshots `log` shows.
fn snapshot_index(log: &str) -> Option<u64> {
    jepsen_lite::logged_snapshots(log).into_iter().max()
}

/// A count, or `?` when the metric was missing.
fn count_or_unknown(n: Option<u64>) -> String {
    n.map_or("?".to_owned(), |n| n.to_string())
}

/// The value of the unlabelled series `name` in the node's `/v1/metrics`, if present.
async fn metric_value(client: &Client, name: &str) -> Option<f64> {
    let r = client
        .request(Method::GET, "/v1/metrics", &[], "")
        .await
        .ok()?;
    r.text().lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok()
    })
}

/// [`metric_value`] of a counter.
async fn metric(client: &Client, name: &str) -> Option<u64> {
    metric_value(client, name).await.map(|v| v as u64)
}

/// `line` without terminal colour escapes (`ESC [ ... m`), as the node logs them.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Creates `{prefix}{i}` for `i` in `0..keys` through node `i` with `tasks` concurrent clients,
/// retrying a failed create; "already exists" after a retry counts as created.
async fn load(
    c: &Cluster,
    node: usize,
    tasks: usize,
    keys: usize,
    prefix: &str,
) -> BenchResult<usize> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let client = c.admin(node);
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut errors = 0;
                for i in (t..keys).step_by(tasks) {
                    let name = format!("{prefix}{i:06}");
                    let mut tries = 0;
                    loop {
                        match create(&client, &name).await {
                            Ok(200) => break,
                            Ok(400) if tries > 0 => break,
                            _ if tries < 5 => {
                                errors += 1;
                                tries += 1;
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            other => {
                                return Err(format!("create {name} failed 6 times: {other:?}"));
                            }
                        }
                    }
                }
                Ok(errors)
            })
        })
        .collect();
    let mut errors = 0;
    for h in handles {
        errors += h.await.map_err(|e| format!("a load task failed: {e}"))??;
    }
    Ok(errors)
}

async fn bench_catchup(keys: usize, cluster_yaml: &str) -> BenchResult<Catchup> {
    println!("catchup: starting a 3-node cluster (snapshot_every left at its default) ...");
    let mut c = Cluster::start(3, cluster_yaml).await;
    let l = leader(&c).await?;
    let f = others(3, l)[0];
    let behind_from = c
        .status(f)
        .await
        .and_then(|s| s["last_log_index"].as_u64())
        .ok_or_else(|| format!("node{} gave no status before it was stopped", f + 1))?;
    c.nodes[f].stop();
    let loaders = (CATCHUP_LOADERS + keys / 20_000).min(64);
    println!(
        "catchup: node{} stopped at log index {behind_from}; creating {keys} keys through leader \
         node{} with {loaders} clients ...",
        f + 1,
        l + 1
    );
    let t0 = Instant::now();
    let load_errors = load(&c, l, loaders, keys, "catchup-").await?;
    let load_time = t0.elapsed();
    println!(
        "catchup load: {keys} creates in {} ({:.0}/s, {load_errors} retried) with node{} down",
        secs(load_time),
        keys as f64 / load_time.as_secs_f64(),
        f + 1
    );
    // The snapshot is built in the background once enough entries are applied; the follower
    // must come back only after it exists, or it would simply replay the log.
    let t_snap = Instant::now();
    let leader_snapshot = loop {
        if let Some(s) = snapshot_index(&c.nodes[l].log()) {
            break s;
        }
        if t_snap.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "leader node{} built no snapshot within 60 s of {keys} writes (fewer writes than \
                 snapshot_every?):\n{}",
                l + 1,
                c.logs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log_before = c.nodes[f].log().len();
    let t0 = Instant::now();
    c.nodes[f].start();
    if !c.wait_ready(f, Duration::from_secs(120)).await {
        return Err(format!(
            "node{} did not become ready within 120 s:\n{}",
            f + 1,
            c.logs()
        ));
    }
    let to_ready = t0.elapsed();
    println!("catchup: node{} ready after {}", f + 1, secs(to_ready));
    let lister = c.admin(f);
    let to_listed = loop {
        let listed = lister
            .list_keys("catchup-")
            .await
            .map(|n| n.len())
            .map_err(|e| e.to_string());
        if listed == Ok(keys) {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "node{} lists {listed:?} of {keys} keys 120 s after restart",
                f + 1
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_log = c.nodes[f].log();
    let since_restart = new_log.get(log_before..).unwrap_or("");
    let follower_snapshot = snapshot_index(since_restart);
    // The follower's own words about snapshots since its restart, as evidence.
    for line in since_restart
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("snapshot"))
        .take(5)
    {
        println!("catchup: node{} log: {}", f + 1, strip_ansi(line).trim());
    }
    let snapshot_file = c.nodes[f].dir.join("data/snapshot.bin").exists();
    let follower_builds = metric(&lister, "kes_cluster_snapshot_seconds_count").await;
    let leader_builds = metric(&c.admin(l), "kes_cluster_snapshot_seconds_count").await;
    let r = Catchup {
        keys,
        load: load_time,
        load_errors,
        to_ready,
        to_listed,
        leader_snapshot,
        behind_from,
        follower_snapshot,
        snapshot_file,
        follower_builds,
        leader_builds,
    };
    println!("catchup: {}", r.summary());
    scale_facts(&mut c, l, f, keys).await?;
    Ok(r)
}

/// The resident set of process `pid`, in bytes, from `/proc`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kib.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// The disk space the files under `dir` take (allocated blocks: sled's file is sparse).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The figures issue 10 asks for at scale, once every node holds `keys` keys: memory and disk
/// per node, the snapshot's size and build time, a full `key list`, and a restart to ready.
async fn scale_facts(c: &mut Cluster, l: usize, f: usize, keys: usize) -> BenchResult<()> {
    for (i, node) in c.nodes.iter().enumerate() {
        let rss = node.pid().and_then(rss_bytes).unwrap_or(0);
        let data = disk_bytes(&node.dir.join("data"));
        let snapshot = std::fs::metadata(node.dir.join("data/snapshot.bin")).map_or(0, |m| m.len());
        println!(
            "scale: node{}{}: RSS {}, data dir {} ({:.0} bytes per key), snapshot.bin {}",
            i + 1,
            if i == l { " (leader)" } else { "" },
            mib(rss),
            mib(data),
            data as f64 / keys.max(1) as f64,
            mib(snapshot)
        );
    }
    let lead = c.admin(l);
    let builds = metric(&lead, "kes_cluster_snapshot_seconds_count").await;
    let total = metric_value(&lead, "kes_cluster_snapshot_seconds_sum").await;
    if let (Some(n), Some(sum)) = (builds.filter(|n| *n > 0), total) {
        println!(
            "scale: leader snapshot builds: {n}, mean {:.2} s",
            sum / n as f64
        );
    }
    let t0 = Instant::now();
    let listed = lead.list_keys("").await.map_err(|e| e.to_string())?.len();
    println!(
        "scale: key list of all {listed} keys through the leader in {}",
        secs(t0.elapsed())
    );
    c.nodes[f].stop();
    let t0 = Instant::now();
    c.nodes[f].start();
    if !c.wait_ready(f, Duration::from_secs(120)).await {
        return Err(format!("node{} not ready 120 s after a restart", f + 1));
    }
    println!(
        "scale: node{} (follower) restart to ready with {keys} keys: {}",
        f + 1,
        secs(t0.elapsed())
    );
    Ok(())
}

/// Concurrent decrypt clients per target, as the consistency issue measures.
const READ_CONNECTIONS: usize = 32;
/// How long each target is loaded per round.
const READ_SECONDS: u64 = 10;
/// Rounds, each through the leader and then through a follower.
const READ_ROUNDS: usize = 3;

/// `READ_CONNECTIONS` clients of node `i` decrypt `body` for `READ_SECONDS`.
async fn decrypt_load(c: &Cluster, i: usize, body: &str) -> BenchResult<(Vec<Duration>, usize)> {
    let deadline = Instant::now() + Duration::from_secs(READ_SECONDS);
    let handles: Vec<_> = (0..READ_CONNECTIONS)
        .map(|_| {
            let client = c.admin(i);
            let body = body.to_owned();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = client
                        .request(Method::PUT, "/v1/key/decrypt/bench", &[], body.clone())
                        .await;
                    latencies.push(t.elapsed());
                    if !matches!(r, Ok(ref r) if r.status == 200) {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for h in handles {
        let (l, e) = h.await.map_err(|e| format!("a decrypt task failed: {e}"))?;
        latencies.extend(l);
        errors += e;
    }
    Ok((latencies, errors))
}

async fn bench_reads(cluster_yaml: &str) -> BenchResult<Vec<Batch>> {
    println!("reads: starting a 3-node cluster ...");
    let c = Cluster::start(3, cluster_yaml).await;
    let l = leader(&c).await?;
    let f = others(3, l)[0];
    let admin = c.admin(l);
    if create(&admin, "bench").await? != 200 {
        return Err("could not create the bench key".into());
    }
    let r = admin
        .request(
            Method::PUT,
            "/v1/key/encrypt/bench",
            &[],
            r#"{"plaintext":"YmVuY2htYXJrIHBsYWludGV4dA=="}"#.to_owned(),
        )
        .await
        .map_err(|e| format!("encrypt: {e}"))?;
    let v: serde_json::Value = r.json().map_err(|e| format!("encrypt answer: {e}"))?;
    let body = serde_json::json!({ "ciphertext": v["ciphertext"] }).to_string();
    let mut out: Vec<Batch> = [l, f]
        .iter()
        .map(|&i| Batch {
            label: format!(
                "decrypt via {} node{} ({READ_CONNECTIONS} clients)",
                if i == l { "leader" } else { "follower" },
                i + 1
            ),
            latencies: Vec::new(),
            wall: Duration::ZERO,
            errors: 0,
        })
        .collect();
    // Warm both nodes' caches and connections; not measured.
    for i in [l, f] {
        for _ in 0..20 {
            let _ = c
                .admin(i)
                .request(Method::PUT, "/v1/key/decrypt/bench", &[], body.clone())
                .await;
        }
    }
    for round in 1..=READ_ROUNDS {
        for (batch, i) in out.iter_mut().zip([l, f]) {
            let t0 = Instant::now();
            let (latencies, errors) = decrypt_load(&c, i, &body).await?;
            let wall = t0.elapsed();
            println!(
                "round {round}: {}: {:.0}/s",
                batch.label,
                latencies.len() as f64 / wall.as_secs_f64()
            );
            batch.latencies.extend(latencies);
            batch.wall += wall;
            batch.errors += errors;
        }
    }
    Ok(out)
}

async fn run(args: Args) -> BenchResult<()> {
    if args.mode == Mode::Stalls {
        // The machine alone: no node runs, so nothing to build.
        let rounds = args.seconds.unwrap_or(20);
        let seen = tokio::task::spawn_blocking(move || stalls::bench_stalls(rounds))
            .await
            .map_err(|e| format!("the stalls run stopped: {e}"))??;
        for core in seen {
            println!("{}", core.line());
        }
        return Ok(());
    }
    ensure_node_binaries(args.build)?;
    let settings = if args.cluster_yaml.is_empty() {
        "default cluster settings".to_owned()
    } else {
        format!(
            "cluster: {}",
            args.cluster_yaml.trim().replace("\n  ", "; ")
        )
    };
    println!("settings: {settings}");
    let started = Instant::now();
    let mut summary = Vec::new();
    if matches!(args.mode, Mode::Failover | Mode::All) {
        let t = Instant::now();
        let f = failover::bench_failover(args.runs, &args.cluster_yaml).await?;
        summary.push(format!(
            "failover (kill -9 leader -> first 200): {}",
            f.summary()
        ));
        println!("failover mode took {}", secs(t.elapsed()));
    }
    if matches!(args.mode, Mode::Create | Mode::All) {
        let t = Instant::now();
        let batches = bench_create(args.keys.unwrap_or(2000), &args.cluster_yaml).await?;
        for b in &batches {
            summary.push(b.line());
        }
        if let [leader, follower, concurrent] = batches.as_slice() {
            let line = format!(
                "create ratios (same run): follower/leader p50 {:.2}x p99 {:.2}x; \
                 {CREATE_CONCURRENCY}-client/sequential throughput {:.2}x",
                follower.percentile(50.0).as_secs_f64() / leader.percentile(50.0).as_secs_f64(),
                follower.percentile(99.0).as_secs_f64() / leader.percentile(99.0).as_secs_f64(),
                concurrent.throughput() / leader.throughput()
            );
            println!("{line}");
            summary.push(line);
        }
        println!("create mode took {}", secs(t.elapsed()));
    }
    if matches!(args.mode, Mode::Reads | Mode::All) {
        let t = Instant::now();
        let batches = bench_reads(&args.cluster_yaml).await?;
        for b in &batches {
            summary.push(b.line());
        }
        if let [leader, follower] = batches.as_slice() {
            summary.push(format!(
                "decrypt follower/leader (same run): throughput {:.2}x; p50 +{}, p99 +{}",
                follower.throughput() / leader.throughput(),
                ms(follower
                    .percentile(50.0)
                    .saturating_sub(leader.percentile(50.0))),
                ms(follower
                    .percentile(99.0)
                    .saturating_sub(leader.percentile(99.0)))
            ));
        }
        println!("reads mode took {}", secs(t.elapsed()));
    }
    if matches!(args.mode, Mode::Catchup | Mode::All) {
        let t = Instant::now();
        let k = bench_catchup(args.keys.unwrap_or(10_000), &args.cluster_yaml).await?;
        summary.push(format!(
            "catchup load: {} creates in {} ({:.0}/s, {} retried) with one follower down",
            k.keys,
            secs(k.load),
            k.keys as f64 / k.load.as_secs_f64(),
            k.load_errors
        ));
        summary.push(format!("catchup: {}", k.summary()));
        println!("catchup mode took {}", secs(t.elapsed()));
    }
    if args.mode == Mode::Idle {
        let watch = Duration::from_secs(args.seconds.unwrap_or(600));
        let idle = idle::bench_idle(watch, &args.cluster_yaml).await?;
        summary.push(idle.summary());
    }
    println!(
        "\n== summary ({settings}; 3 nodes' processes and the bench on {} cores, {} total) ==",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        secs(started.elapsed())
    );
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
