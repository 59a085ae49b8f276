//! The faults of the scenarios, injected and healed, with their windows on the run clock.

use super::Scenario;
use super::clock::Clocks;
use crate::Cluster;
use crate::history::RunClock;
use crate::net::Network;
use kes_cluster::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// One fault on the cluster.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Node cut off from every other node.
    Isolate(usize),
    /// Two nodes cut off from each other.
    Cut(usize, usize),
    /// `kill -9` of these nodes (a bit set), restarted at the heal.
    Kill(u32),
    /// SIGSTOP, SIGCONT at the heal.
    Pause(usize),
    /// Packet loss on every node, and the wall clocks of nodes 2 and 3 stepped apart.
    LossSkew,
}

/// The share of packets every node drops in loss-skew.
const LOSS: f64 = 0.3;
/// How far loss-skew steps the wall clocks of nodes 2 and 3, ahead and behind. Within the
/// minute that certificates are backdated: a clock further behind sees them as not yet valid.
const SKEW_S: i64 = 30;
/// Latency that loss-skew adds between nodes where the loopback proxy carries their traffic
/// (iptables cannot delay, and this kernel has no netem).
const LATENCY: Duration = Duration::from_millis(20);

impl Fault {
    /// The fault in words, naming each node's role when `leader` was known at the start;
    /// `proxied`: the nodes' traffic passes the loopback proxy.
    fn describe(self, leader: Option<usize>, proxied: bool) -> String {
        let node = |i: usize| {
            let role = match leader {
                Some(l) if l == i => " (leader)",
                Some(_) => " (follower)",
                None => "",
            };
            format!("node {}{role}", i + 1)
        };
        match self {
            Fault::Isolate(i) => format!("isolate {}", node(i)),
            Fault::Cut(a, b) => format!("cut {} from {}", node(a), node(b)),
            Fault::Kill(set) => {
                let nodes: Vec<String> =
                    (0..32).filter(|i| set & (1 << i) != 0).map(node).collect();
                format!("kill -9 {}", nodes.join(", "))
            }
            Fault::Pause(i) => format!("pause {}", node(i)),
            Fault::LossSkew => format!(
                "{:.0} % packet loss on every node{}; wall clock of {} {SKEW_S:+} s, of {} {:+} s",
                LOSS * 100.0,
                match proxied {
                    true => format!(", {} ms latency between nodes", LATENCY.as_millis()),
                    false => String::new(),
                },
                node(1),
                node(2),
                -SKEW_S
            ),
        }
    }
}

/// Injects faults on one cluster and remembers their windows.
pub struct Faults<'n> {
    net: &'n Network,
    /// The nodes' clock files, when the scenario runs them with libfaketime.
    clocks: Option<&'n Clocks>,
    clock: RunClock,
    rng: StdRng,
    /// `(start, end)` of every fault, seconds on the run clock.
    pub windows: Vec<(f64, f64)>,
    /// What each window's fault was, e.g. "pause node 2 (follower)".
    pub names: Vec<String>,
}

impl<'n> Faults<'n> {
    /// Faults on `net`, dated by `clock`; `random` draws from `seed`.
    pub fn new(
        net: &'n Network,
        clock: RunClock,
        seed: u64,
        clocks: Option<&'n Clocks>,
    ) -> Faults<'n> {
        Faults {
            net,
            clocks,
            clock,
            rng: StdRng::seed_from_u64(seed ^ 0xfa17),
            windows: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Runs `scenario`'s faults for `window` in all, and heals. An error says what could not
    /// be done (the scenario then fails).
    pub async fn run(
        &mut self,
        c: &mut Cluster,
        scenario: Scenario,
        window: Duration,
    ) -> Result<(), String> {
        let leader = c.leader_among(&[0, 1, 2], Duration::from_secs(30)).await;
        let leader = leader.ok_or("no leader before the fault")?;
        let followers: Vec<usize> = (0..c.nodes.len()).filter(|&i| i != leader).collect();
        let fault = match scenario {
            Scenario::IsolateLeader => Fault::Isolate(leader),
            Scenario::IsolateFollower | Scenario::Rekey | Scenario::Membership => {
                Fault::Isolate(followers[0])
            }
            Scenario::Bridge => Fault::Cut(followers[0], followers[1]),
            Scenario::KillOne => Fault::Kill(1 << leader),
            Scenario::KillAll => Fault::Kill(0b111),
            Scenario::PauseLeader => Fault::Pause(leader),
            Scenario::LossSkew => Fault::LossSkew,
            Scenario::Random => return self.random(c, window).await,
        };
        // What the scenario does through the leader while the fault holds; it may go on after
        // the heal, and the scenario fails unless it succeeds.
        let admin = c.admin(leader).with_timeout(Duration::from_secs(120));
        let (action, also) = match scenario {
            Scenario::Rekey => (Some(tokio::spawn(rekey(admin))), None),
            Scenario::Membership => {
                let spare = c.spares.pop().ok_or("membership needs a spare node")?;
                let also = format!("; meanwhile {} joins and is removed", spare.url);
                (
                    Some(tokio::spawn(join_then_remove(spare, admin))),
                    Some(also),
                )
            }
            _ => (None, None),
        };
        self.one(c, fault, window).await?;
        if let (Some(name), Some(also)) = (self.names.last_mut(), also) {
            name.push_str(&also);
        }
        if let Some(action) = action {
            action
                .await
                .map_err(|e| format!("{}: {e}", scenario.name()))??;
        }
        if scenario == Scenario::Rekey {
            Self::wait_new_storage_version(c).await?;
        }
        Ok(())
    }

    /// Injects `fault`, waits `window`, heals.
    async fn one(&mut self, c: &mut Cluster, fault: Fault, window: Duration) -> Result<(), String> {
        let leader = c.leader_among(&[0, 1, 2], Duration::from_millis(500)).await;
        self.names.push(fault.describe(leader, self.net.proxied()));
        let start = self.clock.now_ns() as f64 / 1e9;
        let injected = self.inject(c, fault);
        tokio::time::sleep(window).await;
        let healed = self.heal(c, fault);
        self.windows.push((start, self.clock.now_ns() as f64 / 1e9));
        injected.and(healed)
    }

    /// Three faults drawn from the seed, one after the other, each for a third of `window`.
    async fn random(&mut self, c: &mut Cluster, window: Duration) -> Result<(), String> {
        for _ in 0..3 {
            let (a, b) = (self.rng.random_range(0..3), self.rng.random_range(1..3));
            let fault = match self.rng.random_range(0..4) {
                0 => Fault::Isolate(a),
                1 => Fault::Cut(a, (a + b) % 3),
                2 => Fault::Kill(1 << a),
                _ => Fault::Pause(a),
            };
            self.one(c, fault, window / 3).await?;
            // Let the cluster elect and settle before the next fault.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    /// After a rekey: every node must come to hold the new storage version, unsealed.
    async fn wait_new_storage_version(c: &Cluster) -> Result<(), String> {
        let t0 = std::time::Instant::now();
        loop {
            let mut versions = Vec::new();
            for i in 0..c.nodes.len() {
                let st = c.call(i, Method::GET, "/v1/cluster/seal/status", "").await;
                let v: Option<serde_json::Value> = st.ok().and_then(|r| r.json().ok());
                versions.push(v.and_then(|v| v["storage_version"].as_u64()));
            }
            if versions.iter().all(|v| *v == Some(2)) {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "after the rekey, the nodes hold storage versions {versions:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn inject(&self, c: &mut Cluster, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Isolate(i) => self.net.isolate(i),
            Fault::Cut(a, b) => self.net.cut(a, b),
            Fault::Kill(set) => {
                in_set(c, set).for_each(|node| node.kill9());
                Ok(())
            }
            Fault::Pause(i) => {
                c.nodes[i].pause();
                Ok(())
            }
            Fault::LossSkew => {
                let clocks = self
                    .clocks
                    .ok_or("loss-skew needs the nodes' clock files")?;
                clocks.set(1, SKEW_S)?;
                clocks.set(2, -SKEW_S)?;
                if self.net.proxied() {
                    self.net.delay(LATENCY)?;
                }
                self.net.lossy(LOSS)
            }
        }
    }

    fn heal(&self, c: &mut Cluster, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Isolate(_) | Fault::Cut(..) => self.net.heal(),
            Fault::Kill(set) => {
                in_set(c, set).for_each(|node| node.start());
                Ok(())
            }
            Fault::Pause(i) => {
                c.nodes[i].resume();
                Ok(())
            }
            Fault::LossSkew => {
                let clocks = self
                    .clocks
                    .ok_or("loss-skew needs the nodes' clock files")?;
                (1..=2).try_for_each(|i| clocks.set(i, 0))?;
                self.net.heal()
            }
        }
    }
}

/// The nodes whose bits are set in `set`.
fn in_set(c: &mut Cluster, set: u32) -> impl Iterator<Item = &mut crate::NodeProc> {
    c.nodes
        .iter_mut()
        .enumerate()
        .filter(move |(i, _)| set & (1 << i) != 0)
        .map(|(_, node)| node)
}

/// `seal rekey` through `admin`.
async fn rekey(admin: kes_cluster::Client) -> Result<(), String> {
    match admin
        .request(Method::POST, "/v1/cluster/seal/rekey", &[], String::new())
        .await
    {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("rekey answered {} {}", r.status, r.text())),
        Err(e) => Err(format!("rekey: {e}")),
    }
}

/// Starts `spare`, waits until the cluster lists it as a voter, removes it through `admin`,
/// and waits until it is gone from the membership; the spare is killed at the end.
async fn join_then_remove(
    mut spare: crate::NodeProc,
    admin: kes_cluster::Client,
) -> Result<(), String> {
    spare.start();
    let within = Duration::from_secs(60);
    let voter = |nodes: &[serde_json::Value]| {
        nodes
            .iter()
            .find(|n| n["address"] == spare.url.as_str() && n["role"] != "learner")
            .and_then(|n| n["id"].as_u64())
    };
    let id = until(&admin, within, |nodes| voter(nodes)).await;
    let id = id.ok_or_else(|| format!("{} never became a voter", spare.url))?;
    let path = format!("/v1/cluster/remove/{id}");
    match admin
        .request(Method::DELETE, &path, &[], String::new())
        .await
    {
        Ok(r) if r.status == 200 => {}
        Ok(r) => return Err(format!("remove answered {} {}", r.status, r.text())),
        Err(e) => return Err(format!("remove: {e}")),
    }
    let gone = until(&admin, within, |nodes| {
        (!nodes.iter().any(|n| n["id"].as_u64() == Some(id))).then_some(())
    })
    .await;
    spare.kill9();
    gone.ok_or_else(|| format!("{} is still a member after its removal", spare.url))
}

/// Polls the cluster status through `admin` until `done` finds what it looks for in the
/// member list, at most `within`.
async fn until<T>(
    admin: &kes_cluster::Client,
    within: Duration,
    mut done: impl FnMut(&[serde_json::Value]) -> Option<T>,
) -> Option<T> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < within {
        let status = admin
            .request(Method::GET, "/v1/cluster/status", &[], String::new())
            .await;
        let json: Option<serde_json::Value> = status.ok().and_then(|r| r.json().ok());
        let nodes = json
            .as_ref()
            .and_then(|j| j["nodes"].as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(found) = done(nodes) {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}
