//! `kes-cluster bench`: a load generator for KES servers and kes-cluster nodes, built on our
//! client (mTLS, keep-alive), so users can measure their own deployment.
//!
//! Each of `--conns` workers owns one client and so one kept-alive connection, to one of
//! `--nodes` (round robin). Without `--rate` each worker sends its next request when the last
//! is answered (closed loop); with it, requests leave on a fixed schedule kept by a clock
//! task, and a latency is counted from when the request was due, so a slow server cannot
//! hide its queue (open loop, no coordinated omission; `pacer.rs`).

mod fine_timer;
mod mix;
mod pacer;
mod report;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use kes_cluster::{Client, Error, Result};
use rand::Rng;
use serde_json::json;

use super::{ConnectArgs, Outcome};
use mix::{Mix, Op};
use report::{Report, Tally};

/// `kes-cluster bench` flags.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Concurrent connections; each is a worker with its own kept-alive connection
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    conns: u32,
    /// How long to send requests, e.g. 500ms, 10s, 2m
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Requests per second over all connections (open loop); 0 sends as fast as answers come
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Operations and their weights: generate, decrypt, encrypt, create, delete
    #[arg(long, default_value = "generate=70,decrypt=25,create=5")]
    mix: Mix,
    /// Nodes to spread the connections over, comma-separated URLs (default: the server)
    #[arg(long, value_delimiter = ',', value_name = "URL,...")]
    nodes: Vec<String>,
    /// The key that generate, encrypt and decrypt use; created when missing
    #[arg(
        long = "bench-key",
        default_value = "kes-cluster-bench",
        value_name = "NAME"
    )]
    bench_key: String,
    /// Print the summary as JSON on stdout (progress still goes to stderr)
    #[arg(long)]
    json: bool,
}

/// `10s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 10s, 500ms or 2m"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("unknown unit '{unit}' in '{s}'; use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("the duration must be above zero".into());
    }
    Ok(d)
}

/// What every worker shares.
struct Plan {
    mix: Mix,
    key: String,
    /// A DEK generated before the run, which decrypt opens again and again.
    dek: Option<kes_cluster::client::Dek>,
    /// Names for create: `bench-RUN-N`.
    run_id: String,
    next_name: AtomicU64,
    /// Keys this run created and no delete took yet.
    created: Mutex<Vec<String>>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// The slowest answer since the last progress line, in microseconds: the line shows in
    /// which second a tail happened, which the percentiles at the end cannot tell.
    slowest_us: AtomicU64,
}

/// Runs the bench on a runtime of its own: the CLI's runtime has one thread, and a load
/// generator on one core would measure itself.
pub(crate) async fn run(args: BenchArgs, connect: &ConnectArgs) -> Result<Outcome> {
    let nodes = if args.nodes.is_empty() {
        vec![connect.client()?]
    } else {
        args.nodes
            .iter()
            .map(|url| connect.client_for(url))
            .collect::<Result<Vec<_>>>()?
    };
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the bench's runtime: {e}")))?
            .block_on(bench(args, nodes))
    })
    .await
    .map_err(|e| Error::Config(format!("the bench stopped: {e}")))?
}

async fn bench(args: BenchArgs, nodes: Vec<Client>) -> Result<Outcome> {
    let setup_client = &nodes[0];
    match setup_client.create_key(&args.bench_key).await {
        Ok(()) => {}
        Err(Error::Api { status: 400, .. }) => {} // it exists
        Err(e) => return Err(e),
    }
    let dek = if args.mix.has(Op::Decrypt) {
        Some(setup_client.generate(&args.bench_key, None).await?)
    } else {
        None
    };
    let plan = Arc::new(Plan {
        mix: args.mix.clone(),
        key: args.bench_key.clone(),
        dek,
        run_id: format!("{:08x}", rand::rng().random::<u32>()),
        next_name: AtomicU64::new(0),
        created: Mutex::new(Vec::new()),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        slowest_us: AtomicU64::new(0),
    });
    let conns = args.conns as usize;
    let start = Instant::now();
    let end = start + args.duration;
    let mut dues: Vec<Option<pacer::Dues>> = match args.rate {
        0 => (0..conns).map(|_| None).collect(),
        rate => pacer::start(rate, conns, start, end)
            .map_err(|e| Error::Config(format!("cannot start the bench's clock: {e}")))?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            // Its own client: its own connection, never a pool shared with other workers.
            let client = nodes[i % nodes.len()].fresh();
            tokio::spawn(worker(client, plan.clone(), dues[i].take(), end))
        })
        .collect();
    let progress = tokio::spawn(progress(plan.clone(), start, end));
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(
            w.await
                .map_err(|e| Error::Config(format!("a bench worker failed: {e}")))?,
        );
    }
    let elapsed = start.elapsed();
    progress.abort();
    let urls: Vec<&str> = nodes.iter().map(|c| c.server()).collect();
    let report = Report {
        tally,
        elapsed,
        setup: json!({
            "conns": conns,
            "duration_s": args.duration.as_secs_f64(),
            "rate": args.rate,
            "mix": args.mix.to_string(),
            "nodes": urls,
            "key": args.bench_key,
        }),
    };
    let stdout = if args.json {
        format!("{:#}\n", report.json())
    } else {
        report.human()
    };
    let errors = report.errors();
    Ok(Outcome {
        stdout,
        failure: (errors > 0).then(|| (1, format!("{errors} requests failed"))),
    })
}

/// One connection's loop: in the open loop, a request at each of its `dues` until the clock
/// stops; in the closed loop (no `dues`), one after another until `end`.
async fn worker(
    client: Client,
    plan: Arc<Plan>,
    mut dues: Option<pacer::Dues>,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let due = match &mut dues {
            Some(dues) => match dues.recv().await {
                Some(due) => due,
                None => return tally,
            },
            None => Instant::now(),
        };
        if due >= end {
            return tally;
        }
        let op = plan.mix.pick(rand::rng().random_range(0..plan.mix.total()));
        match send(&client, &plan, op).await {
            Ok(done) => {
                let took = due.elapsed();
                tally.ok(done.name(), took);
                plan.ok.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                // Read first: most answers are not the slowest, and a read keeps the
                // workers from taking the cache line from each other on every answer.
                if us > plan.slowest_us.load(Ordering::Relaxed) {
                    plan.slowest_us.fetch_max(us, Ordering::Relaxed);
                }
            }
            Err(why) => {
                tally.failed(why);
                plan.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Sends one `op`; says which operation was done (a delete with nothing to delete creates).
async fn send(client: &Client, plan: &Plan, op: Op) -> std::result::Result<Op, String> {
    let result = match op {
        Op::Generate => client.generate(&plan.key, None).await.map(drop),
        Op::Encrypt => client.encrypt(&plan.key, &[7; 32], None).await.map(drop),
        Op::Decrypt => {
            let dek = plan
                .dek
                .as_ref()
                .expect("a DEK is made when decrypt is in the mix");
            match client.decrypt(&plan.key, &dek.ciphertext, None).await {
                Ok(p) if p == dek.plaintext => Ok(()),
                Ok(_) => return Err("wrong plaintext".into()),
                Err(e) => Err(e),
            }
        }
        Op::Delete => {
            let name = plan.created.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match name {
                Some(name) => client.delete_key(&name).await,
                None => return Box::pin(send(client, plan, Op::Create)).await,
            }
        }
        Op::Create => {
            let n = plan.next_name.fetch_add(1, Ordering::Relaxed);
            let name = format!("bench-{}-{n}", plan.run_id);
            let r = client.create_key(&name).await;
            if r.is_ok() {
                plan.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name);
            }
            r
        }
    };
    result.map(|()| op).map_err(|e| error_kind(&e))
}

/// How a failure is counted: the HTTP status, or what kept the request from an answer.
fn error_kind(e: &Error) -> String {
    match e {
        Error::Api { status, .. } => status.to_string(),
        Error::Connect { .. } => "connect".into(),
        Error::Tls { .. } => "tls".into(),
        Error::Timeout { .. } => "timeout".into(),
        Error::Io { .. } => "io".into(),
        Error::Protocol(_) => "protocol".into(),
        Error::Config(_) => "config".into(),
    }
}

/// One line on stderr each second: the second's rate, failures and slowest answer, and the
/// totals.
async fn progress(plan: Arc<Plan>, start: Instant, end: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let (mut last_ok, mut last_failed) = (0, 0);
    loop {
        tick.tick().await;
        let (ok, failed) = (
            plan.ok.load(Ordering::Relaxed),
            plan.failed.load(Ordering::Relaxed),
        );
        let slowest_ms = plan.slowest_us.swap(0, Ordering::Relaxed) as f64 / 1000.0;
        let secs = start.elapsed().as_secs();
        eprintln!(
            "[{secs:>4}s] {:>8} ops/s  {:>5} failed  slowest {slowest_ms:>7.1} ms  (total {ok} ok, {failed} failed)",
            ok - last_ok,
            failed - last_failed
        );
        (last_ok, last_failed) = (ok, failed);
        if Instant::now() >= end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_in_the_units_people_type() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "0s", "1.5s", "10d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
