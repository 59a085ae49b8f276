//! `kes-cluster status` and `kes-cluster metric`.

use clap::Args;

use super::output::{fields, json};
use kes_cluster::client::Status;
use kes_cluster::{Client, Result};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print the server's status JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn status(args: StatusArgs, client: &Client) -> Result<String> {
    let status = client.status().await?;
    if args.json {
        return json(&status);
    }
    Ok(render(client.server(), &status))
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
