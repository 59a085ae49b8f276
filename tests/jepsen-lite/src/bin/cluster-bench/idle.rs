//! `cluster-bench idle`: does a healthy cluster that nobody touches keep its term?
//!
//! Issue 10 counts any increase of the term without a fault as a spurious election, and asks
//! for none with the default timings: on a 3-node cluster left idle for 10 minutes, and on one
//! left idle while a full `.ci/run` loads the same cores (start this, then the CI run, and give
//! `--seconds` long enough to cover it).
//!
//! Every node's term, leader and leader-change counter are read at the start, then every
//! [`SAMPLE_EVERY`]; a line is printed each minute and whenever anything moves. A node that
//! does not answer a sample is counted, not fatal: under a CI run beside it a status call can
//! be slow, and that is not an election.

use super::{BenchResult, all_ready, secs};
use jepsen_lite::Cluster;
use std::time::{Duration, Instant};

/// How often every node's term is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the idle run saw.
pub(super) struct Idle {
    /// How long the cluster was watched.
    pub(super) watched: Duration,
    /// Each node's term at the start and at the end.
    pub(super) first: Vec<u64>,
    pub(super) last: Vec<u64>,
    /// Samples in which the term of some node was above the one before.
    pub(super) term_increases: usize,
    /// Samples in which the nodes named another leader than before.
    pub(super) leader_changes: usize,
    /// Status reads that got no answer.
    pub(super) unanswered: usize,
}

impl Idle {
    pub(super) fn summary(&self) -> String {
        format!(
            "idle {}: terms {:?} -> {:?}; samples with a term increase: {}, with another leader: \
             {}; status reads unanswered: {}",
            secs(self.watched),
            self.first,
            self.last,
            self.term_increases,
            self.leader_changes,
            self.unanswered
        )
    }
}

/// One reading of every node: (term, leader id) each, `None` for a node that did not answer.
async fn sample(c: &Cluster) -> Vec<Option<(u64, String)>> {
    let mut out = Vec::with_capacity(c.nodes.len());
    for i in 0..c.nodes.len() {
        let reading = c.status(i).await.and_then(|s| {
            let term = s["term"].as_u64()?;
            let leader = s["leader"].to_string(); // a node id, or null
            Some((term, leader))
        });
        out.push(reading);
    }
    out
}

/// The highest term and the leader named with it in `reading`, if any node answered.
fn newest(reading: &[Option<(u64, String)>]) -> Option<(u64, String)> {
    reading.iter().flatten().max_by_key(|(t, _)| *t).cloned()
}

pub(super) async fn bench_idle(watch: Duration, cluster_yaml: &str) -> BenchResult<Idle> {
    println!("idle: starting a 3-node cluster ...");
    let mut c = Cluster::start(3, cluster_yaml).await;
    all_ready(&mut c).await?;
    let start_reading = sample(&c).await;
    let terms_of = |r: &[Option<(u64, String)>]| -> Vec<u64> {
        r.iter()
            .map(|x| x.as_ref().map_or(0, |(t, _)| *t))
            .collect()
    };
    let first = terms_of(&start_reading);
    let Some(mut before) = newest(&start_reading) else {
        return Err(format!("no node answered its status:\n{}", c.logs()));
    };
    println!(
        "idle: watching for {}; terms {first:?}, leader {}",
        secs(watch),
        before.1
    );
    let started = Instant::now();
    let mut idle = Idle {
        watched: Duration::ZERO,
        first: first.clone(),
        last: first,
        term_increases: 0,
        leader_changes: 0,
        unanswered: 0,
    };
    let mut next_line = Duration::from_secs(60);
    while started.elapsed() < watch {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let reading = sample(&c).await;
        idle.unanswered += reading.iter().filter(|r| r.is_none()).count();
        let Some(now) = newest(&reading) else {
            continue;
        };
        let moved = now.0 > before.0 || now.1 != before.1;
        if now.0 > before.0 {
            idle.term_increases += 1;
        }
        if now.1 != before.1 {
            idle.leader_changes += 1;
        }
        if moved || started.elapsed() >= next_line {
            println!(
                "idle {:>6}: terms {:?}, leader {}{}",
                secs(started.elapsed()),
                terms_of(&reading),
                now.1,
                if moved { "  <- moved" } else { "" }
            );
            next_line += Duration::from_secs(60);
        }
        before = now;
    }
    idle.watched = started.elapsed();
    idle.last = terms_of(&sample(&c).await);
    Ok(idle)
}
