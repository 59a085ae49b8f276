//! `kes-cluster seal status|add|remove|rekey`: which root keys guard the cluster key.
//!
//! `add` and `remove` only migrate between seals (say from `file` to `pkcs11`): they change
//! which root keys can unwrap the cluster key, not the key itself. Only `rekey` revokes a
//! leaked seal or an old backup, because it replaces the cluster key and re-seals every record.

use clap::Subcommand;
use kes_cluster::{Client, Error, Method, Result};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum SealCommand {
    /// List the seals that hold a copy of the cluster key, and which nodes unsealed with which.
    Status {
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Wrap the cluster key under every seal configured on KES_SERVER that has no copy yet
    /// (run it against a node configured with both the old and the new seal).
    Add,
    /// Remove one seal's copy (refused for the last seal, and for one a member last unsealed with).
    Remove {
        /// The seal id, as `seal status` shows it.
        id: String,
    },
    /// Make a new cluster key and re-seal every record under it, while the cluster serves.
    Rekey,
}

async fn call(client: &Client, method: Method, path: &str) -> Result<serde_json::Value> {
    let r = client
        .with_timeout(Duration::from_secs(600))
        .request(method, path, &[], "")
        .await?;
    if !r.is_success() {
        return Err(r.api_error());
    }
    serde_json::from_slice(&r.body)
        .map_err(|e| Error::Protocol(format!("seal answer is not JSON: {e}")))
}

pub(crate) async fn run(command: SealCommand, client: &Client) -> Result<String> {
    match command {
        SealCommand::Status { json } => {
            let v = call(client, Method::GET, "/v1/cluster/seal/status").await?;
            if json {
                return Ok(format!(
                    "{}\n",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                ));
            }
            let mut out = String::new();
            out.push_str(&format!(
                "storage key version {}{}\n",
                v["storage_version"],
                if v["rekey_in_progress"] == true {
                    " (rekey in progress)"
                } else {
                    ""
                }
            ));
            out.push_str(&format!("{:<50} {:<8} NODES\n", "SEAL", "HERE"));
            for s in v["seals"].as_array().into_iter().flatten() {
                let nodes: Vec<String> = s["unsealed_nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| n.to_string())
                    .collect();
                out.push_str(&format!(
                    "{:<50} {:<8} {}\n",
                    s["id"].as_str().unwrap_or(""),
                    if s["configured_here"] == true {
                        "yes"
                    } else {
                        "no"
                    },
                    if nodes.is_empty() {
                        "-".to_owned()
                    } else {
                        nodes.join(", ")
                    }
                ));
            }
            for id in v["configured_here_without_copy"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{:<50} {:<8} (no copy yet: run `kes-cluster seal add`)\n",
                    id.as_str().unwrap_or(""),
                    "yes"
                ));
            }
            Ok(out)
        }
        SealCommand::Add => {
            let v = call(client, Method::POST, "/v1/cluster/seal/add").await?;
            Ok(format!("Added seal(s): {}\n", v["added"]))
        }
        SealCommand::Remove { id } => {
            call(
                client,
                Method::DELETE,
                &format!("/v1/cluster/seal/remove/{id}"),
            )
            .await?;
            Ok(format!("Removed seal {id}.\n"))
        }
        SealCommand::Rekey => {
            let v = call(client, Method::POST, "/v1/cluster/seal/rekey").await?;
            Ok(format!(
                "New cluster key in use (storage key version {}); {} records re-sealed.\n",
                v["storage_version"], v["resealed"]
            ))
        }
    }
}
