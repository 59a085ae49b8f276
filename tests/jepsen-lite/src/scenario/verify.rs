//! What a scenario's history and its healed cluster must show: no acknowledged key lost, every
//! DEK decrypting on every node, no create race with two winners, no term with two leaders.

use super::workload::{Dek, Load};
use crate::Cluster;
use crate::history::{History, Outcome};
use crate::model::{KeyInput, KeyOutput};
use kes_cluster::Method;
use std::collections::BTreeMap;

/// The final reads: every material ever imported on every name, decrypted on every node, as
/// operations of the history (the checker then holds them to the register like any other).
pub async fn final_reads(c: &Cluster, load: &Load, names: &[String]) {
    for (node, client) in (0..c.nodes.len()).map(|i| (i, c.admin(i))) {
        for name in names {
            let materials: Vec<String> = load
                .materials
                .lock()
                .expect("materials")
                .get(name)
                .map(|m| m.iter().map(|(id, _)| id.clone()).collect())
                .unwrap_or_default();
            for id in materials {
                let process = 1000 + node as u64;
                load.run(process, node, &client, name, KeyInput::Decrypt(id))
                    .await;
            }
        }
    }
}

/// Names whose last acknowledged import, with no delete invoked after it, is not there on
/// some node at the end: an acknowledged key was lost.
pub fn lost_keys(history: &History<KeyInput, KeyOutput>) -> usize {
    let mut lost = 0;
    let mut by_name: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for op in &history.ops {
        by_name.entry(op.key.as_str()).or_default().push(op);
    }
    for ops in by_name.values() {
        let last_import = ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(KeyOutput::Created)))
            .max_by_key(|o| o.complete_ns);
        let Some(import) = last_import else { continue };
        let done = import.complete_ns.unwrap_or(u64::MAX);
        let deleted_later = ops
            .iter()
            .any(|o| matches!(o.input, KeyInput::Delete) && !o.is_fail() && o.deadline_ns() > done);
        if deleted_later {
            continue;
        }
        let KeyInput::Import(material) = &import.input else {
            continue;
        };
        let final_reads = ops
            .iter()
            .filter(|o| o.process >= 1000 && o.invoke_ns > done);
        let missing = final_reads
            .filter(|o| o.input == KeyInput::Decrypt(material.clone()))
            .any(|o| !matches!(o.outcome, Outcome::Ok(KeyOutput::Done)));
        if missing {
            lost += 1;
        }
    }
    lost
}

/// DEKs that do not decrypt to their plaintext on some node, among those whose key saw no
/// delete invoked after the generate.
pub async fn bad_deks(c: &Cluster, history: &History<KeyInput, KeyOutput>, deks: &[Dek]) -> usize {
    let mut bad = 0;
    for dek in deks {
        let deleted_since = history.ops.iter().any(|o| {
            o.key == dek.name
                && matches!(o.input, KeyInput::Delete)
                && !o.is_fail()
                && o.deadline_ns() > dek.invoked_ns
        });
        if deleted_since {
            continue;
        }
        let body = serde_json::json!({ "ciphertext": dek.ciphertext }).to_string();
        for i in 0..c.nodes.len() {
            let path = format!("/v1/key/decrypt/{}", dek.name);
            let ok = match c.call(i, Method::PUT, &path, &body).await {
                Ok(r) if r.status == 200 => {
                    r.json::<serde_json::Value>()
                        .ok()
                        .map(|v| v["plaintext"].clone())
                        == Some(serde_json::Value::String(dek.plaintext.clone()))
                }
                _ => false,
            };
            if !ok {
                bad += 1;
                break;
            }
        }
    }
    bad
}

/// Create races with two winners: two acknowledged imports of one name with no delete that
/// could have come between them.
pub fn double_wins(history: &History<KeyInput, KeyOutput>) -> usize {
    let mut wins = 0;
    let winners = crate::model::create_race_winners(history);
    for (name, ids) in winners {
        let mut created: Vec<_> = ids.iter().map(|&id| &history.ops[id]).collect();
        created.sort_by_key(|o| o.invoke_ns);
        for pair in created.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            let second_done = second.complete_ns.unwrap_or(u64::MAX);
            let delete_between = history.ops.iter().any(|o| {
                o.key == name
                    && matches!(o.input, KeyInput::Delete)
                    && !o.is_fail()
                    && o.invoke_ns < second_done
                    && o.deadline_ns() > first.invoke_ns
            });
            if !delete_between {
                wins += 1;
            }
        }
    }
    wins
}

/// Terms in which two different nodes said they became leader, and how many leader changes
/// the logs show (elections after the first).
pub fn leader_terms(c: &Cluster) -> (usize, usize) {
    let mut by_term: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (term, node) in c.leader_terms() {
        let leaders = by_term.entry(term).or_default();
        if !leaders.contains(&node) {
            leaders.push(node);
        }
    }
    let two = by_term.values().filter(|l| l.len() > 1).count();
    (two, by_term.len().saturating_sub(1))
}
