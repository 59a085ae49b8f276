//! `kes-cluster status` (the cluster's members, or with `--node` one node's
//! KES status) and `kes-cluster metric`.

use clap::Args;

use super::Outcome;
use super::output::{fields, json};
use kes_cluster::client::{ClusterNode, ClusterStatus, Status, explain_not_a_cluster};
use kes_cluster::{Client, Result};

/// The exit status of `status` when the cluster has no leader, so scripts
/// can tell "no leader" (2) from "could not ask" (1).
pub(crate) const NO_LEADER_EXIT: u8 = 2;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 with a leader, 2 when the cluster has no leader, \
    1 when the server could not be asked.\n\
    --node shows the answering node's KES status (GET /v1/status) instead: version, uptime, \
    memory, and its view of the cluster."
)]
pub(crate) struct StatusArgs {
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
    /// Show the KES status of the node KES_SERVER names instead of the cluster.
    #[arg(long)]
    node: bool,
}

pub(crate) async fn status(args: StatusArgs, client: &Client) -> Result<Outcome> {
    if args.node {
        let status = client.status().await?;
        return Ok(if args.json {
            json(&status)?
        } else {
            render(client.server(), &status)
        }
        .into());
    }
    let response = client
        .cluster_status_response()
        .await
        .map_err(explain_not_a_cluster)?;
    let cluster: ClusterStatus = response.json()?;
    let text = if args.json {
        // The server's own JSON, fields this client does not know included.
        let raw: serde_json::Value = response.json()?;
        json(&raw)?
    } else {
        render_cluster(&cluster)
    };
    Ok(Outcome {
        stdout: text,
        failure: leaderless(&cluster),
    })
}

/// The failure to report when `cluster` has no leader.
pub(crate) fn leaderless(cluster: &ClusterStatus) -> Option<(u8, String)> {
    cluster.leader.is_none().then(|| {
        (
            NO_LEADER_EXIT,
            "the cluster has no leader: writes fail until a majority of the nodes can reach each \
             other (start the stopped nodes, or see their logs)"
                .to_string(),
        )
    })
}

/// The members as a table, under a line naming the cluster and its leader.
pub(crate) fn render_cluster(cluster: &ClusterStatus) -> String {
    let leader = match cluster.leader {
        Some(id) => format!("leader {id}"),
        None => "NO LEADER".to_string(),
    };
    let mut text = format!("Cluster {}, {leader}\n\n", or_dash(&cluster.cluster_id));
    let header = [
        "ID",
        "ADDRESS",
        "ROLE",
        "TERM",
        "LAST LOG",
        "APPLIED",
        "LAG",
        "LAST CONTACT",
    ];
    let mut rows = vec![header.map(str::to_string).to_vec()];
    rows.extend(cluster.nodes.iter().map(row));
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if cluster.nodes.is_empty() {
        text.push_str("(no members listed)\n");
    }
    text
}

fn row(n: &ClusterNode) -> Vec<String> {
    let num = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut role = match (n.reachable, n.role.as_str()) {
        (true, "") => "-".to_string(),
        (true, role) => role.to_string(),
        (false, "") => "UNREACHABLE".to_string(),
        (false, role) => format!("{role} UNREACHABLE"),
    };
    // A sealed node replicates but serves nothing: say so where the operator looks first.
    if n.other.get("sealed").and_then(|v| v.as_bool()) == Some(true) {
        role.push_str(" SEALED");
    }
    vec![
        n.id.to_string(),
        or_dash(&n.address),
        role,
        num(n.term),
        num(n.last_log_index),
        num(n.applied_index),
        num(n.lag),
        n.last_contact_ms
            .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms")),
    ]
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

pub(crate) async fn metric(client: &Client) -> Result<String> {
    client.metrics().await
}

fn render(server: &str, s: &Status) -> String {
    let keystore = match (
        s.keystore_unreachable,
        s.keystore_unavailable,
        s.keystore_latency,
    ) {
        (true, _, _) => "unreachable".to_string(),
        (_, true, _) => "unavailable".to_string(),
        (_, _, Some(ms)) => format!("ok, latency {ms} ms"),
        _ => String::new(),
    };
    let mut rows = vec![
        ("Server", server.to_string()),
        ("Version", s.version.clone()),
        (
            "OS/Arch",
            [s.os.as_str(), s.arch.as_str()]
                .join("/")
                .trim_matches('/')
                .to_string(),
        ),
        ("Uptime", duration(s.uptime)),
        ("CPUs", format!("{} ({} usable)", s.num_cpu, s.num_cpu_used)),
        (
            "Memory",
            format!(
                "heap {}, stack {}",
                mebibytes(s.mem_heap_used),
                mebibytes(s.mem_stack_used)
            ),
        ),
        ("Keystore", keystore),
    ];
    let mut extra = Vec::new();
    if let Some(serde_json::Value::Object(cluster)) = &s.cluster {
        for (field, value) in cluster {
            extra.push((format!("Cluster {field}"), compact(value)));
        }
    }
    for (field, value) in &s.other {
        extra.push((field.clone(), compact(value)));
    }
    rows.extend(
        extra
            .iter()
            .map(|(label, value)| (label.as_str(), value.clone())),
    );
    fields(&rows)
}

/// Strings without quotes, everything else as compact JSON.
fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"cluster_id":"c0ffee","leader":18446744073709551557,"nodes":[
        {"id":18446744073709551557,"address":"https://127.0.0.1:7373","grpc":"127.0.0.1:7473",
         "role":"leader","term":3,"last_log_index":10,"applied_index":10,"lag":0,
         "last_contact_ms":null,"reachable":true},
        {"id":2,"address":"https://127.0.0.1:7374","grpc":"127.0.0.1:7474","role":"follower",
         "term":3,"last_log_index":10,"applied_index":9,"lag":1,"last_contact_ms":12,"reachable":true},
        {"id":3,"address":"https://127.0.0.1:7375","role":"follower","term":2,
         "last_log_index":4,"applied_index":4,"lag":6,"last_contact_ms":4000,"reachable":false}]}"#;

    #[test]
    fn cluster_table() {
        let cluster: ClusterStatus = serde_json::from_str(SAMPLE).unwrap();
        let text = render_cluster(&cluster);
        let want = "\
Cluster c0ffee, leader 18446744073709551557

ID                    ADDRESS                 ROLE                  TERM  LAST LOG  APPLIED  LAG  LAST CONTACT
18446744073709551557  https://127.0.0.1:7373  leader                3     10        10       0    -
2                     https://127.0.0.1:7374  follower              3     10        9        1    12 ms
3                     https://127.0.0.1:7375  follower UNREACHABLE  2     4         4        6    4000 ms
";
        assert_eq!(text, want, "\n{text}");
        assert_eq!(leaderless(&cluster), None);
    }

    #[test]
    fn no_leader_exits_2() {
        for json in [
            r#"{"cluster_id":"c","leader":null,"nodes":[{"id":1,"role":"candidate","term":4}]}"#,
            r#"{"cluster_id":"c","nodes":[]}"#,
        ] {
            let cluster: ClusterStatus = serde_json::from_str(json).unwrap();
            let (code, message) = leaderless(&cluster).unwrap();
            assert_eq!(code, NO_LEADER_EXIT);
            assert!(message.contains("no leader"), "{message}");
            let text = render_cluster(&cluster);
            assert!(text.starts_with("Cluster c, NO LEADER\n"), "{text}");
        }
        let cluster: ClusterStatus = serde_json::from_str(r#"{"nodes":[]}"#).unwrap();
        assert!(render_cluster(&cluster).ends_with("(no members listed)\n"));
    }

    #[test]
    fn readable_status() {
        let status: Status = serde_json::from_str(
            r#"{"version":"v1","os":"linux","arch":"amd64","uptime":3725,"num_cpu":2,"num_cpu_used":2,
                "mem_heap_used":1048576,"mem_stack_used":0,"keystore_latency":1,
                "cluster":{"role":"leader","term":3}}"#,
        )
        .unwrap();
        let text = render("https://127.0.0.1:7373", &status);
        // Compare with the alignment padding collapsed.
        let rows: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for want in [
            "Uptime 1h 2m 5s",
            "OS/Arch linux/amd64",
            "Memory heap 1.0 MiB, stack 0.0 MiB",
            "Keystore ok, latency 1 ms",
            "Cluster role leader",
            "Cluster term 3",
        ] {
            assert!(rows.iter().any(|r| r == want), "{want:?} not in\n{text}");
        }
    }
}
