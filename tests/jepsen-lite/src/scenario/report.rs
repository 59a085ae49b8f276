//! One scenario's result, as `report.json` names its fields, and what a failing run keeps.

use crate::Cluster;
use crate::checker::Report;
use crate::history::History;
use crate::model::{AuthInput, AuthOutput, KeyInput, KeyOutput};
use serde::Serialize;
use std::path::Path;

/// The figures of one scenario. The field names are how a report is read: keep them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// `netns` (every node on its own network host) or `loopback-proxy` (the fallback
    /// without root: faults between nodes only, through the proxy).
    pub network: String,
    /// Operations recorded, and how they ended.
    pub ops: usize,
    /// See `ops`.
    pub ok: usize,
    /// See `ops`.
    pub fail: usize,
    /// Outcome unknown (`info`).
    pub unknown: usize,
    /// Keys whose history is not linearizable.
    pub violations: usize,
    /// Keys the checker could not decide within its budget (a failure too).
    pub checker_unknown: usize,
    /// Acknowledged keys missing from some node at the end.
    pub lost_keys: usize,
    /// DEKs that did not decrypt to their plaintext on some node at the end.
    pub bad_deks: usize,
    /// Identities with a request authorised after an acknowledged revocation (the revocation
    /// history is not linearizable). `None`: the revocation load did not run.
    pub stale_auth: Option<usize>,
    /// Grants, revokes and requests of the revocation load.
    pub auth_ops: usize,
    /// Create races with two winners.
    pub double_wins: usize,
    /// Terms in which two nodes became leader.
    pub two_leader_terms: usize,
    /// Elections after the first.
    pub leader_changes: usize,
    /// Seconds from the heal to the first acknowledged write.
    pub recover_s: Option<f64>,
    /// Seconds from the heal until every node is ready and caught up.
    pub converge_s: Option<f64>,
    /// The fault windows, in seconds of the run clock.
    pub faults: Vec<(f64, f64)>,
    /// What each fault window's fault was.
    pub fault_names: Vec<String>,
    /// Why the scenario could not run, if it could not.
    pub error: Option<String>,
    /// Where its history and node logs were kept (a failing scenario only).
    pub kept: Option<String>,
    /// What `report.html` draws of it.
    #[serde(skip)]
    pub drawing: super::html::Drawing,
}

impl ScenarioReport {
    /// An empty report for `name` on `network`.
    pub fn new(name: &str, network: &str) -> ScenarioReport {
        ScenarioReport {
            name: name.to_owned(),
            network: network.to_owned(),
            ..ScenarioReport::default()
        }
    }

    /// The pass rule: zero of every count, a write within 5 s of the heal, every node caught
    /// up within 30 s.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.violations == 0
            && self.checker_unknown == 0
            && self.lost_keys == 0
            && self.bad_deks == 0
            && self.stale_auth.unwrap_or(0) == 0
            && self.double_wins == 0
            && self.two_leader_terms == 0
            && self.recover_s.is_some_and(|s| s <= 5.0)
            && self.converge_s.is_some_and(|s| s <= 30.0)
    }

    /// Whether the scenario counted a correctness fault: a violation, an undecided key, a lost
    /// key, a bad DEK, a stale authorisation, a double win or two leaders in a term (not a slow
    /// recovery). What the self-test calls "caught".
    pub fn found_a_fault(&self) -> bool {
        self.violations
            + self.checker_unknown
            + self.lost_keys
            + self.bad_deks
            + self.stale_auth.unwrap_or(0)
            + self.double_wins
            + self.two_leader_terms
            > 0
    }

    /// Keeps the history, the checker's report and every node's log of a failing scenario
    /// (of every scenario when `JEPSEN_LITE_KEEP=1`) under `target/jepsen-lite/<name>/`, so it
    /// can be read and its check replayed.
    pub fn keep(
        &mut self,
        c: &Cluster,
        history: &History<KeyInput, KeyOutput>,
        checked: &Report,
        auth_history: &History<AuthInput, AuthOutput>,
        auth_checked: &Report,
    ) {
        if self.passed() && std::env::var_os("JEPSEN_LITE_KEEP").is_none_or(|v| v != "1") {
            return;
        }
        let dir = super::super::report_dir().join(&self.name);
        let kept = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            history.save(&dir.join("history.jsonl"))?;
            let json = serde_json::to_vec_pretty(checked).unwrap_or_default();
            std::fs::write(dir.join("checker.json"), json)?;
            auth_history.save(&dir.join("auth-history.jsonl"))?;
            let json = serde_json::to_vec_pretty(auth_checked).unwrap_or_default();
            std::fs::write(dir.join("auth-checker.json"), json)?;
            for node in &c.nodes {
                std::fs::write(dir.join(format!("node{}.log", node.index)), node.log())?;
            }
            Ok(())
        })();
        self.kept = Some(match kept {
            Ok(()) => dir.display().to_string(),
            Err(e) => format!("could not keep it in {}: {e}", dir.display()),
        });
    }
}

/// The human summary: one line per scenario.
pub fn table(reports: &[ScenarioReport]) -> String {
    let mut out = format!(
        "{:<17} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}  result\n",
        "scenario",
        "ops",
        "ok",
        "fail",
        "info",
        "viol",
        "lost",
        "dek",
        "stale",
        "2win",
        "2ldr",
        "elect",
        "recover",
        "conv"
    );
    for r in reports {
        let secs = |s: Option<f64>| s.map(|s| format!("{s:.2}s")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<17} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>7}  {}\n",
            r.name,
            r.ops,
            r.ok,
            r.fail,
            r.unknown,
            r.violations + r.checker_unknown,
            r.lost_keys,
            r.bad_deks,
            r.stale_auth.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            r.double_wins,
            r.two_leader_terms,
            r.leader_changes,
            secs(r.recover_s),
            secs(r.converge_s),
            if r.passed() {
                "pass".to_owned()
            } else {
                format!(
                    "FAIL{}",
                    r.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            }
        ));
    }
    out
}

/// Writes `report.json`: `{"seed", "scenarios": [...]}`.
pub fn write_json(path: &Path, seed: u64, reports: &[ScenarioReport]) -> std::io::Result<()> {
    let json = serde_json::json!({ "seed": seed, "scenarios": reports });
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default())
}
