//! The fault scenarios: each starts a fresh cluster on [`Network`] hosts, runs the client load
//! of [`workload`], injects its fault for a window, heals, and then checks the history and the
//! healed cluster ([`verify`]). The result is one [`report::ScenarioReport`].

mod clock;
mod fault;
pub mod html;
pub mod report;
pub mod revocation;
pub mod verify;
pub mod workload;

use crate::Cluster;
use crate::checker::{Budget, check};
use crate::history::{Outcome, Recorder};
use crate::model::{KeyRegister, Revocation};
use crate::net::Network;
use kes_cluster::Method;
use report::ScenarioReport;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use workload::{CLIENTS_PER_GROUP, GROUPS, Load, REQUEST_TIMEOUT};

/// A fault, named as the report names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The leader cut off from the other nodes (clients still reach it).
    IsolateLeader,
    /// A follower cut off from the other nodes.
    IsolateFollower,
    /// The two followers cut off from each other; the leader still sees both.
    Bridge,
    /// `kill -9` of the leader, restarted after the window.
    KillOne,
    /// `kill -9` of every node, all restarted after the window.
    KillAll,
    /// The leader stopped (SIGSTOP) past the election timeout, then continued.
    PauseLeader,
    /// 30 % of the packets every node receives dropped, and the wall clocks of two nodes
    /// stepped apart.
    LossSkew,
    /// A fourth node joins, and is then removed, while a follower is cut off.
    Membership,
    /// `seal rekey` through the leader while a follower is cut off.
    Rekey,
    /// Three faults in a row, each drawn by the seed from the ones above (on any node).
    Random,
}

impl Scenario {
    /// Every scenario this harness runs, in report order.
    pub const ALL: [Scenario; 10] = [
        Scenario::IsolateLeader,
        Scenario::IsolateFollower,
        Scenario::Bridge,
        Scenario::KillOne,
        Scenario::KillAll,
        Scenario::PauseLeader,
        Scenario::LossSkew,
        Scenario::Membership,
        Scenario::Rekey,
        Scenario::Random,
    ];

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::IsolateLeader => "isolate-leader",
            Scenario::IsolateFollower => "isolate-follower",
            Scenario::Bridge => "bridge",
            Scenario::KillOne => "kill-one",
            Scenario::KillAll => "kill-all",
            Scenario::PauseLeader => "pause-leader",
            Scenario::LossSkew => "loss-skew",
            Scenario::Membership => "membership",
            Scenario::Rekey => "rekey",
            Scenario::Random => "random",
        }
    }
}

/// How long each phase lasts.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Load before the fault.
    pub before: Duration,
    /// The fault window.
    pub fault: Duration,
    /// Load after healing, before the final checks.
    pub after: Duration,
}

/// Runs `scenario` on a fresh cluster on `net` whose nodes get the extra environment
/// `node_env`, with the load seeded by `seed`.
pub async fn run(
    net: &Network,
    scenario: Scenario,
    timing: Timing,
    seed: u64,
    node_env: &[(String, String)],
) -> ScenarioReport {
    let mut report = ScenarioReport::new(scenario.name(), net.kind());
    // Every node can have its wall clock stepped in loss-skew; the others run without it.
    let clocks = match scenario {
        Scenario::LossSkew => match clock::Clocks::new(3) {
            Ok(c) => Some(c),
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        },
        _ => None,
    };
    let env = |i: usize| {
        let mut env = node_env.to_vec();
        env.extend(clocks.iter().flat_map(|c| c.env(i)));
        env
    };
    let spares = usize::from(scenario == Scenario::Membership);
    let mut c = match Cluster::start_on(net, 3, spares, env).await {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("the cluster did not start: {e}"));
            return report;
        }
    };
    let recorder = Recorder::new();
    let clock = recorder.clock();
    let load = Load::new(recorder);
    let revocations =
        match revocation::Revocations::set_up(&c, Recorder::with_clock(clock), REQUEST_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                report.error = Some(format!("the revocation load could not be set up: {e}"));
                return report;
            }
        };
    let mut auth_clients = vec![tokio::spawn(revocations.clone().admin(seed))];
    for n in 0..revocation::IDENTITIES {
        auth_clients.push(tokio::spawn(revocations.clone().identity(n, seed)));
    }
    let clients: Vec<_> = (0..GROUPS * CLIENTS_PER_GROUP)
        .map(|p| {
            let per_node = (0..c.nodes.len())
                .map(|i| c.admin(i).with_timeout(REQUEST_TIMEOUT))
                .collect();
            tokio::spawn(load.clone().client(p as u64, per_node, seed))
        })
        .collect();
    tokio::time::sleep(timing.before).await;
    let mut faults = fault::Faults::new(net, clock, seed, clocks.as_ref());
    if let Err(e) = faults.run(&mut c, scenario, timing.fault).await {
        report.error = Some(e);
    }
    let healed = Instant::now();
    report.faults = faults.windows;
    report.fault_names = faults.names;
    report.recover_s = first_write_after(&c, healed).await;
    report.converge_s = converged(&c, healed).await;
    tokio::time::sleep(timing.after.saturating_sub(healed.elapsed())).await;
    load.stop.store(true, Ordering::Relaxed);
    revocations.stop.store(true, Ordering::Relaxed);
    for client in clients.into_iter().chain(auth_clients) {
        let _ = client.await;
    }
    let names = workload::key_names();
    verify::final_reads(&c, &load, &names).await;
    let history = load.recorder.history();
    let deks = load.deks.lock().expect("deks").clone();
    report.bad_deks = verify::bad_deks(&c, &history, &deks).await;
    report.lost_keys = verify::lost_keys(&history);
    report.double_wins = verify::double_wins(&history);
    (report.two_leader_terms, report.leader_changes) = verify::leader_terms(&c);
    for op in &history.ops {
        report.ops += 1;
        match op.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Fail(_) => report.fail += 1,
            Outcome::Info(_) => report.unknown += 1,
        }
    }
    let budget = Budget {
        max_time: Duration::from_secs(30),
        ..Budget::default()
    };
    let checked = check(&KeyRegister, &history, &budget);
    report.violations = checked.violations().count();
    report.checker_unknown = checked.unknown().count();
    let auth_history = revocations.recorder.history();
    let auth = check(&Revocation, &auth_history, &budget);
    report.stale_auth = Some(auth.violations().count());
    report.checker_unknown += auth.unknown().count();
    report.auth_ops = auth_history.ops.len();
    report.drawing.add(&history, &checked, |p| match p {
        0..1000 => format!("client {p}"),
        _ => format!("final node{}", p - 999),
    });
    report.drawing.add(&auth_history, &auth, |p| match p {
        0 => "admin".to_owned(),
        _ => format!("identity {p}"),
    });
    report.keep(&c, &history, &checked, &auth_history, &auth);
    report
}

/// Seconds from the heal to the first acknowledged write (a create of a fresh name, tried on
/// every node in turn); `None` when none succeeded within 30 s.
async fn first_write_after(c: &Cluster, healed: Instant) -> Option<f64> {
    let mut n = 0;
    while healed.elapsed() < Duration::from_secs(30) {
        n += 1;
        let node = n % c.nodes.len();
        let path = format!("/v1/key/create/probe-{n}");
        let client = c.admin(node).with_timeout(Duration::from_secs(2));
        if let Ok(r) = client.request(Method::PUT, &path, &[], String::new()).await {
            if r.status == 200 {
                return Some(healed.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Seconds from the heal until every node is ready and has applied everything committed when
/// the first write after the heal went through (the load goes on meanwhile); `None` when that
/// took more than 30 s.
async fn converged(c: &Cluster, healed: Instant) -> Option<f64> {
    let mut target = None;
    for i in 0..c.nodes.len() {
        let applied = c.status(i).await.and_then(|s| s["applied_index"].as_u64());
        target = target.max(applied);
    }
    let target = target?;
    while healed.elapsed() < Duration::from_secs(30) {
        let mut all = true;
        for i in 0..c.nodes.len() {
            let applied = c.status(i).await.and_then(|s| s["applied_index"].as_u64());
            all &= applied.is_some_and(|a| a >= target) && c.ready(i, false).await;
        }
        if all {
            return Some(healed.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
