//! `cluster-bench failover`: `kill -9` of the leader under a steady load of writes.
//!
//! Issue 10 asks for the failover "under constant load: the error window, and the time to the
//! first success", and for a plot of the error window over time. So each run starts a load of
//! key creates [`LEAD_IN`] before the kill: one every [`LOAD_GAP`], open loop, in turn through
//! the two nodes that will survive (followers, which forward writes to the leader, as a client
//! of any node sees it). The load goes on until [`TAIL`] after the first write sent after the
//! kill has succeeded, so late failures are seen too.
//!
//! Every write is kept with when it was sent and when it ended, relative to the kill. From
//! them, per run:
//! * the time to the first success: when the first write sent after the kill answered 200;
//! * the error window: from the sending of the first write that failed to the sending of the
//!   last one (zero when none failed);
//!
//! and, over all runs, a timeline of writes by when they were sent, in [`BUCKET`] steps:
//! how many succeeded and how many failed (any status but 200, a timeout, a transport error).
//!
//! Writes overlap (the open loop does not wait for answers), so one write stuck on the dead
//! leader until its client timeout does not hide the moment a survivor starts taking writes.

use super::{BenchResult, all_ready, create, leader, median, others, secs};
use jepsen_lite::Cluster;
use kes_cluster::{Client, Method};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Client timeout while the cluster fails over: short, so a request stuck on the dead leader
/// does not hide the moment a survivor starts taking writes.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// One write every this long, over both survivors (100 writes/s).
const LOAD_GAP: Duration = Duration::from_millis(10);
/// The load runs this long before the kill, so the timeline shows the healthy cluster too.
const LEAD_IN: Duration = Duration::from_secs(1);
/// The load goes on this long after the first success after the kill.
const TAIL: Duration = Duration::from_secs(2);
/// Give up on one run when no write sent after the kill succeeded within this long.
const GIVE_UP: Duration = Duration::from_secs(30);
/// The timeline's step.
const BUCKET: Duration = Duration::from_millis(100);
/// The timeline covers writes sent up to this long after the kill.
const TIMELINE_AFTER: Duration = Duration::from_secs(5);

/// One write of the load: times in seconds relative to the kill (negative: before it).
#[derive(Clone, Debug, PartialEq)]
struct Write {
    sent: f64,
    ended: f64,
    /// `None` for a 200; else what came instead (`503`, `timeout`, `transport-error`).
    failure: Option<String>,
    /// The node it went through.
    via: usize,
}

/// What one run saw.
#[derive(Debug, PartialEq)]
struct Run {
    /// From the kill to the first 200 of a write sent after it, and the node it went through.
    first_success: (f64, usize),
    /// From the first failed write's sending to the last one's; 0 when none failed.
    error_window: f64,
    /// Failed writes by what came instead.
    failures: BTreeMap<String, usize>,
    sent: usize,
}

impl Run {
    /// `None` when no write sent after the kill succeeded.
    fn of(writes: &[Write]) -> Option<Run> {
        let first_success = writes
            .iter()
            .filter(|w| w.failure.is_none() && w.sent >= 0.0)
            .map(|w| (w.ended, w.via))
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        let failed_sends: Vec<f64> = writes
            .iter()
            .filter(|w| w.failure.is_some())
            .map(|w| w.sent)
            .collect();
        let error_window = match (
            failed_sends.iter().copied().reduce(f64::min),
            failed_sends.iter().copied().reduce(f64::max),
        ) {
            (Some(first), Some(last)) => last - first,
            _ => 0.0,
        };
        let mut failures = BTreeMap::new();
        for f in writes.iter().filter_map(|w| w.failure.clone()) {
            *failures.entry(f).or_default() += 1;
        }
        Some(Run {
            first_success,
            error_window,
            failures,
            sent: writes.len(),
        })
    }

    fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "none failed".to_owned();
        }
        let parts: Vec<String> = self
            .failures
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect();
        parts.join(" ")
    }
}

/// Writes by when they were sent, summed over runs: `ok[i]` and `failed[i]` count the writes
/// sent in `[from + i·BUCKET, from + (i+1)·BUCKET)` seconds from the kill, and `slowest[i]`
/// is the longest any of them took to end, in seconds: a write held through the election
/// succeeds, late.
#[derive(Debug, PartialEq)]
struct Timeline {
    from: f64,
    ok: Vec<usize>,
    failed: Vec<usize>,
    slowest: Vec<f64>,
}

impl Timeline {
    fn new() -> Self {
        let buckets = ((LEAD_IN + TIMELINE_AFTER).as_secs_f64() / BUCKET.as_secs_f64()).round();
        Timeline {
            from: -LEAD_IN.as_secs_f64(),
            ok: vec![0; buckets as usize],
            failed: vec![0; buckets as usize],
            slowest: vec![0.0; buckets as usize],
        }
    }

    /// Counts `writes`; those sent outside the timeline's span are left out.
    fn add(&mut self, writes: &[Write]) {
        for w in writes {
            let i = ((w.sent - self.from) / BUCKET.as_secs_f64()).floor();
            if i < 0.0 || i >= self.ok.len() as f64 {
                continue;
            }
            let counts = if w.failure.is_some() {
                &mut self.failed
            } else {
                &mut self.ok
            };
            counts[i as usize] += 1;
            let slowest = &mut self.slowest[i as usize];
            *slowest = slowest.max(w.ended - w.sent);
        }
    }

    /// One JSON object, for `scripts/bench.py` to plot.
    fn json(&self, runs: usize) -> String {
        serde_json::json!({
            "runs": runs,
            "bucket_s": BUCKET.as_secs_f64(),
            "from_s": self.from,
            "ok": self.ok,
            "failed": self.failed,
            "slowest_s": self.slowest.iter().map(|s| (s * 1e3).round() / 1e3).collect::<Vec<f64>>(),
        })
        .to_string()
    }
}

/// Every run's figures and the timeline over all of them.
pub(super) struct Failover {
    runs: Vec<Run>,
    timeline: Timeline,
}

pub(super) async fn bench_failover(runs: usize, cluster_yaml: &str) -> BenchResult<Failover> {
    println!("failover: starting a 3-node cluster ...");
    let mut c = Cluster::start(3, cluster_yaml).await;
    let mut out = Failover {
        runs: Vec::new(),
        timeline: Timeline::new(),
    };
    for run in 1..=runs {
        let old = leader(&c).await?;
        // A healthy cluster before each kill: a write through the leader succeeds.
        let status = create(&c.admin(old), &format!("failover-pre-{run}")).await?;
        if status != 200 {
            return Err(format!(
                "run {run}: write before the kill answered {status}"
            ));
        }
        let clients: Vec<(usize, Client)> = others(3, old)
            .into_iter()
            .map(|i| (i, c.admin(i).with_timeout(CLIENT_TIMEOUT)))
            .collect();
        let kill_at = Instant::now() + LEAD_IN;
        let node = &mut c.nodes[old];
        let kill = async move {
            tokio::time::sleep_until(kill_at.into()).await;
            node.kill9();
        };
        let ((), writes, elected) = tokio::join!(
            kill,
            steady_writes(&clients, run, kill_at),
            new_leader(&clients, kill_at)
        );
        let Some(r) = Run::of(&writes) else {
            return Err(format!(
                "run {run}: no write succeeded within {} after killing node{}:\n{}",
                secs(GIVE_UP),
                old + 1,
                c.logs()
            ));
        };
        let elected = elected.map_or("no leader seen".to_owned(), |(at, l)| {
            format!("node{} reported leader at {}", l + 1, secs(at))
        });
        println!(
            "failover run {run}/{runs}: {:.3}s from kill -9 of node{} to first 200 (through \
             node{}; {elected}); under load: {} writes, {}, error window {:.3}s",
            r.first_success.0,
            old + 1,
            r.first_success.1 + 1,
            r.sent,
            r.failures_text(),
            r.error_window,
        );
        out.timeline.add(&writes);
        out.runs.push(r);
        c.nodes[old].start();
        all_ready(&mut c).await?;
    }
    println!("failover: {}", out.summary());
    println!("failover timeline: {}", out.timeline.json(runs));
    Ok(out)
}

/// The load of one run: a create every [`LOAD_GAP`] from [`LEAD_IN`] before `kill_at`, in
/// turn through `clients`, until [`TAIL`] after the first success of a write sent after the
/// kill (or [`GIVE_UP`] after the kill). Every write, once all have ended.
async fn steady_writes(clients: &[(usize, Client)], run: usize, kill_at: Instant) -> Vec<Write> {
    let start = kill_at - LEAD_IN;
    let rel = move |t: Instant| {
        if t >= kill_at {
            (t - kill_at).as_secs_f64()
        } else {
            -(kill_at - t).as_secs_f64()
        }
    };
    let mut in_flight = tokio::task::JoinSet::new();
    let mut writes = Vec::new();
    let mut stop_at = kill_at + GIVE_UP;
    let mut next = start;
    let mut sent = 0usize;
    while Instant::now() < stop_at {
        tokio::select! {
            Some(done) = in_flight.join_next() => {
                let w: Write = done.unwrap_or_else(|e| panic!("a failover write's task failed: {e}"));
                if w.failure.is_none() && w.sent >= 0.0 {
                    stop_at = stop_at.min(kill_at + Duration::from_secs_f64(w.ended) + TAIL);
                }
                writes.push(w);
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let (via, client) = clients[sent % clients.len()].clone();
                sent += 1;
                let path = format!("/v1/key/create/failover-{run}-{sent}");
                let sent_at = Instant::now();
                in_flight.spawn(async move {
                    let r = client.request(Method::PUT, &path, &[], "").await;
                    let failure = match r {
                        Ok(r) if r.status == 200 => None,
                        Ok(r) => Some(r.status.to_string()),
                        Err(kes_cluster::Error::Timeout { .. }) => Some("timeout".into()),
                        Err(_) => Some("transport-error".into()),
                    };
                    Write { sent: rel(sent_at), ended: rel(Instant::now()), failure, via }
                });
                // Open loop on a fixed grid: a late wake-up sends at once, not in a burst.
                next = (next + LOAD_GAP).max(Instant::now());
            }
        }
    }
    // Writes still in flight end within their client timeout.
    while let Some(done) = in_flight.join_next().await {
        writes.push(done.unwrap_or_else(|e| panic!("a failover write's task failed: {e}")));
    }
    writes.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    writes
}

/// Polls the survivors' `/v1/status` from the kill until one says it is leader: when (since
/// the kill) and which. It shows how much of the failover time is the election and how much
/// comes after it.
async fn new_leader(clients: &[(usize, Client)], kill_at: Instant) -> Option<(Duration, usize)> {
    tokio::time::sleep_until(kill_at.into()).await;
    while kill_at.elapsed() < GIVE_UP {
        for (i, client) in clients {
            let status = client
                .with_timeout(Duration::from_secs(1))
                .request(Method::GET, "/v1/status", &[], "")
                .await;
            let role = status
                .ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .and_then(|v| v["cluster"]["role"].as_str().map(str::to_owned));
            if role.as_deref() == Some("leader") {
                return Some((kill_at.elapsed(), *i));
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

impl Failover {
    /// Medians and every run's figure: the time to the first success, and the error window.
    pub(super) fn summary(&self) -> String {
        let mut times: Vec<Duration> = self
            .runs
            .iter()
            .map(|r| Duration::from_secs_f64(r.first_success.0))
            .collect();
        times.sort();
        let mut windows: Vec<Duration> = self
            .runs
            .iter()
            .map(|r| Duration::from_secs_f64(r.error_window))
            .collect();
        windows.sort();
        let list = |v: &[Duration]| {
            let all: Vec<String> = v
                .iter()
                .map(|t| format!("{:.2}", t.as_secs_f64()))
                .collect();
            all.join(", ")
        };
        format!(
            "runs={} min={} median={} max={} all(s, sorted)=[{}]; under {} writes/s: error window \
             median={} max={} all(s, sorted)=[{}]",
            times.len(),
            secs(times[0]),
            secs(median(&times)),
            secs(times[times.len() - 1]),
            list(&times),
            (1.0 / LOAD_GAP.as_secs_f64()).round(),
            secs(median(&windows)),
            secs(windows[windows.len() - 1]),
            list(&windows),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(sent: f64, ended: f64, failure: Option<&str>) -> Write {
        Write {
            sent,
            ended,
            failure: failure.map(str::to_owned),
            via: 1,
        }
    }

    #[test]
    fn a_run_counts_the_first_success_after_the_kill_and_the_span_of_failures() {
        let writes = [
            // Before the kill: a success that does not count as the first one after it.
            w(-0.5, -0.49, None),
            w(-0.01, 2.99, Some("timeout")),
            w(0.2, 0.21, Some("503")),
            w(0.9, 1.30, None),
            w(1.0, 1.01, Some("503")),
            w(1.1, 1.12, None),
        ];
        let r = Run::of(&writes).expect("a success after the kill");
        assert_eq!(r.first_success, (1.12, 1));
        assert!((r.error_window - 1.01).abs() < 1e-9, "{}", r.error_window);
        assert_eq!(r.failures_text(), "503×2 timeout×1");
        assert_eq!(r.sent, 6);
    }

    #[test]
    fn a_run_with_no_success_after_the_kill_has_no_figure() {
        assert_eq!(
            Run::of(&[w(-0.5, -0.4, None), w(0.1, 0.2, Some("503"))]),
            None
        );
    }

    #[test]
    fn a_run_without_failures_has_no_error_window() {
        let r = Run::of(&[w(0.1, 0.2, None)]).expect("a success");
        assert_eq!(r.error_window, 0.0);
        assert_eq!(r.failures_text(), "none failed");
    }

    #[test]
    fn the_timeline_buckets_writes_by_when_they_were_sent() {
        let mut t = Timeline::new();
        assert_eq!(t.ok.len(), 60);
        t.add(&[
            w(-1.0, -0.9, None),
            w(-0.05, 0.3, Some("timeout")),
            w(0.0, 0.1, Some("503")),
            w(0.15, 0.2, None),
            // Outside the span: left out.
            w(-1.01, -1.0, None),
            w(5.0, 5.1, Some("503")),
        ]);
        assert_eq!(t.ok[0], 1);
        assert_eq!(t.failed[9], 1);
        assert_eq!(t.failed[10], 1);
        assert_eq!(t.ok[11], 1);
        assert!((t.slowest[9] - 0.35).abs() < 1e-9, "{}", t.slowest[9]);
        assert!((t.slowest[11] - 0.05).abs() < 1e-9, "{}", t.slowest[11]);
        assert_eq!(
            t.ok.iter().sum::<usize>() + t.failed.iter().sum::<usize>(),
            4
        );
    }
}
