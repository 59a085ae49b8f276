//! `kes-cluster identity …`: local (`new`, `of`) and server-side commands.

use std::net::IpAddr;
use std::path::Path;

use clap::Subcommand;

use super::ConnectArgs;
use super::output::{fields, json, lines};
use kes_cluster::identity::{
    IdentityOptions, identity_of_api_key, identity_of_cert_pem, identity_paths, is_api_key,
    new_identity_pem, save_identity,
};
use kes_cluster::{Error, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Make a client certificate NAME.crt and key NAME.key here; prints the identity.
    New {
        /// Certificate common name and file name stem.
        name: String,
        /// Add a DNS subject alternative name (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Add an IP subject alternative name (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Overwrite existing files.
        #[arg(short, long)]
        force: bool,
    },
    /// Print the identity of a certificate file (or of a kes:v1: API key).
    Of {
        /// Certificate file (PEM or DER), or an API key.
        #[arg(value_name = "CERT")]
        file: String,
    },
    /// Describe an identity; without one, describe the caller.
    Info {
        /// Identity (hex).
        identity: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List identities known to the server.
    Ls {
        /// Only identities starting with this.
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove identities.
    Rm {
        /// Identities (hex).
        #[arg(required = true)]
        identities: Vec<String>,
    },
}

pub(crate) async fn run(command: IdentityCommand, connect: &ConnectArgs) -> Result<String> {
    match command {
        IdentityCommand::New {
            name,
            dns,
            ip,
            force,
        } => new(&name, dns, ip, force),
        IdentityCommand::Of { file: cert } => {
            let identity = if is_api_key(&cert) {
                identity_of_api_key(&cert)?
            } else {
                let path = Path::new(&cert);
                let pem = std::fs::read(path).map_err(|e| Error::Io {
                    context: format!("cannot read certificate {cert}"),
                    reason: e.to_string(),
                })?;
                identity_of_cert_pem(&pem).map_err(|e| Error::Config(format!("{cert}: {e}")))?
            };
            Ok(format!("{identity}\n"))
        }
        IdentityCommand::Info {
            identity,
            json: as_json,
        } => {
            let client = connect.client()?;
            match identity {
                Some(identity) => {
                    let info = client.describe_identity(&identity).await?;
                    if as_json {
                        return json(&info);
                    }
                    Ok(fields(&[
                        ("Identity", info.identity),
                        ("Admin", yes(info.admin)),
                        ("Policy", info.policy),
                        ("Created at", info.created_at),
                        ("Created by", info.created_by),
                    ]))
                }
                None => {
                    let me = client.self_describe().await?;
                    if as_json {
                        return json(&me);
                    }
                    let policy = me
                        .policy
                        .as_ref()
                        .map(|p| p.name.clone())
                        .unwrap_or_default();
                    let mut text = fields(&[
                        ("Identity", me.identity),
                        ("Admin", yes(me.admin)),
                        ("Policy", policy),
                        ("Created at", me.created_at),
                        ("Created by", me.created_by),
                    ]);
                    if let Some(p) = &me.policy {
                        for (title, patterns) in [("Allow", &p.allow), ("Deny", &p.deny)] {
                            for pattern in patterns {
                                text.push_str(&format!("{title:<10}  {pattern}\n"));
                            }
                        }
                    }
                    Ok(text)
                }
            }
        }
        IdentityCommand::Ls {
            prefix,
            json: as_json,
        } => {
            let client = connect.client()?;
            let identities = client
                .list_identities(prefix.as_deref().unwrap_or(""))
                .await?;
            if as_json {
                json(&identities)
            } else {
                Ok(lines(&identities))
            }
        }
        IdentityCommand::Rm { identities } => {
            let client = connect.client()?;
            for identity in &identities {
                client.delete_identity(identity).await?;
            }
            Ok(String::new())
        }
    }
}

/// `identity new`: the identity goes to stdout (for scripts), the rest to stderr.
fn new(name: &str, dns: Vec<String>, ips: Vec<IpAddr>, force: bool) -> Result<String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::Config(format!(
            "{name:?} cannot name the files NAME.crt and NAME.key: use a plain name like 'app'"
        )));
    }
    let dir = Path::new(".");
    let (cert, key) = identity_paths(name, dir);
    if !force && let Some(existing) = [&cert, &key].into_iter().find(|p| p.exists()) {
        return Err(Error::Config(format!(
            "{} already exists: pass --force to overwrite it",
            strip_dot(existing)
        )));
    }
    let made = new_identity_pem(name, &IdentityOptions { dns, ips })?;
    let (cert, key) = save_identity(&made, name, dir)?;
    eprintln!(
        "Wrote certificate {} and private key {} (keep the key secret).",
        strip_dot(&cert),
        strip_dot(&key)
    );
    Ok(format!("{}\n", made.identity))
}

fn strip_dot(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

fn yes(flag: bool) -> String {
    if flag { "yes".into() } else { String::new() }
}
