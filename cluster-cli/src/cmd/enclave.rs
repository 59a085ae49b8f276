//! `kes-cluster enclave …`.

use clap::Subcommand;

use super::output::{fields, json, lines};
use kes_cluster::{Client, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum EnclaveCommand {
    /// Create an enclave.
    Create {
        /// Enclave name.
        name: String,
        /// Identity of the enclave's admin.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Describe an enclave.
    Info {
        /// Enclave name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List enclaves.
    Ls {
        /// Only names starting with this (a trailing * is allowed).
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete enclaves.
    Rm {
        /// Enclave names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Also delete the keys, policies and identities in them.
        #[arg(short, long)]
        force: bool,
    },
}

pub(crate) async fn run(command: EnclaveCommand, client: &Client) -> Result<String> {
    match command {
        EnclaveCommand::Create { name, admin } => {
            client.create_enclave(&name, admin.as_deref()).await?;
            Ok(String::new())
        }
        EnclaveCommand::Info {
            name,
            json: as_json,
        } => {
            let info = client.describe_enclave(&name).await?;
            if as_json {
                return json(&info);
            }
            Ok(fields(&[
                ("Name", info.name),
                ("Created at", info.created_at),
                ("Created by", info.created_by),
            ]))
        }
        EnclaveCommand::Ls {
            prefix,
            json: as_json,
        } => {
            let names = client
                .list_enclaves(prefix.as_deref().unwrap_or(""))
                .await?;
            if as_json {
                json(&names)
            } else {
                Ok(lines(&names))
            }
        }
        EnclaveCommand::Rm { names, force } => {
            for name in &names {
                if force {
                    client.delete_enclave_force(name).await?;
                } else {
                    client.delete_enclave(name).await?;
                }
            }
            Ok(String::new())
        }
    }
}
