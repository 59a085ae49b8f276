//! `kes-cluster policy …`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::output::{fields, json, lines};
use kes_cluster::client::Policy;
use kes_cluster::{Client, Error, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// List policies.
    Ls {
        /// Only names starting with this (a trailing * is allowed).
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Describe a policy (who made it, when).
    Info {
        /// Policy name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a policy's allow and deny patterns.
    Show {
        /// Policy name.
        name: String,
        /// Print the policy as JSON, in the format `policy create` reads.
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a policy from a JSON file {"allow":[…],"deny":[…]}.
    Create {
        /// Policy name.
        name: String,
        /// The JSON file.
        file: PathBuf,
    },
    /// Assign a policy to identities.
    Assign {
        /// Policy name.
        policy: String,
        /// Identities (hex SHA-256, see `identity of`).
        #[arg(required = true)]
        identities: Vec<String>,
    },
    /// Delete policies (their assignments go too).
    Rm {
        /// Policy names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(crate) async fn run(command: PolicyCommand, client: &Client) -> Result<String> {
    match command {
        PolicyCommand::Ls {
            prefix,
            json: as_json,
        } => {
            let names = client
                .list_policies(prefix.as_deref().unwrap_or(""))
                .await?;
            if as_json {
                json(&names)
            } else {
                Ok(lines(&names))
            }
        }
        PolicyCommand::Info {
            name,
            json: as_json,
        } => {
            let info = client.describe_policy(&name).await?;
            if as_json {
                return json(&info);
            }
            Ok(fields(&[
                ("Name", info.name),
                ("Created at", info.created_at),
                ("Created by", info.created_by),
            ]))
        }
        PolicyCommand::Show {
            name,
            json: as_json,
        } => {
            let details = client.read_policy(&name).await?;
            if as_json {
                return json(&Policy {
                    allow: details.allow,
                    deny: details.deny,
                });
            }
            let mut text = String::new();
            for (title, patterns) in [("Allow", &details.allow), ("Deny", &details.deny)] {
                text.push_str(&format!("{title}:\n"));
                for pattern in patterns {
                    text.push_str(&format!("  {pattern}\n"));
                }
            }
            Ok(text)
        }
        PolicyCommand::Create { name, file } => {
            client
                .write_policy(&name, &read_policy_file(&file)?)
                .await?;
            Ok(String::new())
        }
        PolicyCommand::Assign { policy, identities } => {
            for identity in &identities {
                client.assign_policy(&policy, identity).await?;
            }
            Ok(String::new())
        }
        PolicyCommand::Rm { names } => {
            for name in &names {
                client.delete_policy(name).await?;
            }
            Ok(String::new())
        }
    }
}

/// Reads `{"allow":[…],"deny":[…]}`. Unknown fields are refused: a typo such
/// as `"alow"` would otherwise silently write a policy that allows nothing.
fn read_policy_file(path: &Path) -> Result<Policy> {
    let text = std::fs::read(path).map_err(|e| Error::Io {
        context: format!("cannot read policy file {}", path.display()),
        reason: e.to_string(),
    })?;
    parse_policy(&text)
        .map_err(|why| Error::Config(format!("policy file {}: {why}", path.display())))
}

fn parse_policy(text: &[u8]) -> Result<Policy, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let object = value.as_object().ok_or(
        "expected a JSON object like {\"allow\":[\"/v1/key/generate/app-*\"],\"deny\":[]}",
    )?;
    let mut policy = Policy::default();
    for (field, patterns) in object {
        let list = match field.to_ascii_lowercase().as_str() {
            "allow" => &mut policy.allow,
            "deny" => &mut policy.deny,
            _ => {
                return Err(format!(
                    "unknown field '{field}': only \"allow\" and \"deny\" are allowed"
                ));
            }
        };
        *list = match patterns {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or(format!(
                    "'{field}' must be a list of path patterns (strings)"
                ))?,
            _ => return Err(format!("'{field}' must be a list of path patterns")),
        };
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::parse_policy;

    #[test]
    fn policy_files() {
        let p = parse_policy(br#"{"allow":["/v1/key/*"],"Deny":["/v1/key/delete/*"]}"#).unwrap();
        assert_eq!(
            (p.allow, p.deny),
            (
                vec!["/v1/key/*".to_string()],
                vec!["/v1/key/delete/*".to_string()]
            )
        );
        assert!(
            parse_policy(br#"{"alow":[]}"#)
                .unwrap_err()
                .contains("unknown field 'alow'")
        );
        assert!(parse_policy(br#"{"allow":"/x"}"#).is_err());
        assert!(parse_policy(br#"{"allow":[1]}"#).is_err());
        assert!(parse_policy(b"[]").is_err());
        assert!(parse_policy(b"{").is_err());
        assert_eq!(parse_policy(b"{}").unwrap(), Default::default());
    }
}
