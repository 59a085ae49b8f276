//! The Prometheus registry, with KES's metric names and types.
//!
//! The Go SDK rejects a family with no samples, and a non-request family with more than one
//! series, so the labelled request counters appear only once observed, and every other family
//! is a single series.

use prometheus::{
    Counter, CounterVec, Encoder, Gauge, Histogram, HistogramOpts, Opts, Registry, TextEncoder,
};
use std::time::Instant;

/// All metric families of a node.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    /// 2xx answers on counted routes.
    pub success: CounterVec,
    /// `success`'s series for 200, the answer to almost every request: looked up once, at
    /// the first 200 (not before: a series appears only once observed), instead of hashing
    /// its label on every request.
    ok: std::sync::OnceLock<Counter>,
    /// 4xx answers.
    pub error: CounterVec,
    /// 5xx answers.
    pub failure: CounterVec,
    /// Requests in flight on counted routes.
    pub active: Gauge,
    /// Response time, seconds.
    pub response_time: Histogram,
    /// Requests refused with 429 because their identity was over its rate limit. One series,
    /// as the KES SDK's metrics decoder refuses families of several outside
    /// `kes_http_request_*`.
    pub http_rate_limited: Counter,
    /// Audit events a sink (stdout, the audit file) could not take, and audit files found
    /// removed or replaced.
    pub audit_write_failures: Counter,
    /// Lines written to `/v1/log/error` subscribers.
    pub log_error_events: Counter,
    /// Lines written to `/v1/log/audit` subscribers.
    pub log_audit_events: Counter,
    up_time: Gauge,
    num_cpu: Gauge,
    num_cpu_used: Gauge,
    num_threads: Gauge,
    heap_used: Gauge,
    heap_objects: Gauge,
    stack_used: Gauge,
    /// 1 while the node is sealed.
    pub sealed: Gauge,
    /// 1 while the last re-check found the seal provider unreachable.
    pub seal_unreachable: Gauge,
    /// Seconds of `seal.offline_grace` left before an unreachable seal provider seals the node
    /// (the whole grace while it is reachable).
    pub seal_grace_remaining: Gauge,
    /// 0 follower, 1 candidate, 2 leader, 3 learner, 4 shut down.
    pub cluster_role: Gauge,
    /// The current Raft term.
    pub cluster_term: Gauge,
    /// How often this node saw the leader change.
    pub cluster_leader_changes: Counter,
    /// The commit index this node knows.
    pub cluster_commit_index: Gauge,
    /// The applied index.
    pub cluster_applied_index: Gauge,
    /// On the leader, the largest follower lag in entries (one series, see module doc).
    pub cluster_replication_lag_max: Gauge,
    /// Seconds from proposing a write to its commit and local apply.
    pub cluster_write_seconds: Histogram,
    /// Snapshots taken or installed.
    pub cluster_snapshots: Counter,
    /// Seconds to build (dump and write) a snapshot.
    pub cluster_snapshot_seconds: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family in a registry of its own (no process collectors, like KES).
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str| {
            let c = CounterVec::new(Opts::new(name, help), &["code"]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = Counter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let response_time = histogram(
            "kes_http_response_time",
            "Response time of KES API requests in seconds",
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 5.0, 10.0],
        );
        Metrics {
            ok: std::sync::OnceLock::new(),
            success: counter_vec(
                "kes_http_request_success",
                "Number of requests answered with 2xx",
            ),
            error: counter_vec(
                "kes_http_request_error",
                "Number of requests answered with 4xx",
            ),
            failure: counter_vec(
                "kes_http_request_failure",
                "Number of requests answered with 5xx",
            ),
            active: gauge("kes_http_request_active", "Number of requests in flight"),
            response_time,
            http_rate_limited: counter(
                "kes_http_rate_limited_total",
                "Requests refused with 429 because their identity was over its rate limit",
            ),
            audit_write_failures: counter(
                "kes_audit_write_failures_total",
                "Audit events that could not be written to stdout or the audit file",
            ),
            log_error_events: counter(
                "kes_log_error_events",
                "Number of error events written to subscribers",
            ),
            log_audit_events: counter(
                "kes_log_audit_events",
                "Number of audit events written to subscribers",
            ),
            up_time: gauge(
                "kes_system_up_time",
                "Time the node has been up, in seconds",
            ),
            num_cpu: gauge("kes_system_num_cpu", "Number of logical CPUs"),
            num_cpu_used: gauge("kes_system_num_cpu_used", "Number of CPUs the node may use"),
            num_threads: gauge("kes_system_num_threads", "Number of OS threads of the node"),
            heap_used: gauge("kes_system_mem_heap_used", "Resident memory in bytes"),
            heap_objects: gauge(
                "kes_system_mem_heap_objects",
                "Number of mapped memory regions",
            ),
            stack_used: gauge("kes_system_mem_stack_used", "Stack memory in bytes"),
            sealed: gauge("kes_seal_sealed", "1 while the node is sealed, else 0"),
            seal_unreachable: gauge(
                "kes_seal_unreachable",
                "1 while the seal provider is unreachable, else 0",
            ),
            seal_grace_remaining: gauge(
                "kes_seal_grace_remaining_seconds",
                "Seconds of seal.offline_grace left before an unreachable seal provider seals the node",
            ),
            cluster_role: gauge(
                "kes_cluster_role",
                "0 follower, 1 candidate, 2 leader, 3 learner, 4 shut down",
            ),
            cluster_term: gauge("kes_cluster_term", "Current Raft term"),
            cluster_leader_changes: counter(
                "kes_cluster_leader_changes_total",
                "Leader changes seen by this node",
            ),
            cluster_commit_index: gauge(
                "kes_cluster_commit_index",
                "Commit index known to this node",
            ),
            cluster_applied_index: gauge("kes_cluster_applied_index", "Last applied log index"),
            cluster_replication_lag_max: gauge(
                "kes_cluster_replication_lag_max",
                "On the leader: the largest lag of a follower, in log entries",
            ),
            cluster_write_seconds: histogram(
                "kes_cluster_write_seconds",
                "Time to commit and apply a write, in seconds",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            cluster_snapshots: counter(
                "kes_cluster_snapshots_total",
                "Snapshots built or installed by this node",
            ),
            cluster_snapshot_seconds: histogram(
                "kes_cluster_snapshot_seconds",
                "Time to build a snapshot, in seconds",
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0],
            ),
            started: Instant::now(),
            registry,
        }
    }

    /// Counts one answered request by its status class.
    pub fn observe(&self, status: u16, seconds: f64) {
        if status == 200 {
            let ok = self
                .ok
                .get_or_init(|| self.success.with_label_values(&["200"]));
            ok.inc();
            self.response_time.observe(seconds);
            return;
        }
        let code = status.to_string();
        let family = match status {
            200..=299 => &self.success,
            400..=499 => &self.error,
            500..=599 => &self.failure,
            _ => return,
        };
        family.with_label_values(&[code.as_str()]).inc();
        self.response_time.observe(seconds);
    }

    /// Seconds since the node started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Renders the text exposition format 0.0.4, refreshing the system gauges first.
    pub fn render(&self) -> (String, Vec<u8>) {
        let sys = crate::api::system_facts();
        self.up_time.set(self.uptime());
        self.num_cpu.set(sys.num_cpu as f64);
        self.num_cpu_used.set(sys.num_cpu_used as f64);
        self.num_threads.set(sys.threads as f64);
        self.heap_used.set(sys.resident_bytes as f64);
        self.heap_objects.set(sys.mapped_regions as f64);
        self.stack_used.set(sys.stack_bytes as f64);
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = encoder.encode(&self.registry.gather(), &mut out);
        (encoder.format_type().to_owned(), out)
    }
}
