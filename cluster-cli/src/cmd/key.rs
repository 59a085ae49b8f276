//! `kes-cluster key …`: the kes CLI's key commands, plus `hmac`.

use clap::Subcommand;
use serde_json::json;

use super::output::{b64, fields, json, lines, unb64};
use kes_cluster::{Client, Result};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create new random keys.
    Create {
        /// Key names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Import a 32-byte key.
    Import {
        /// Key name.
        name: String,
        /// The key, base64.
        #[arg(value_name = "KEY")]
        key_b64: String,
        /// AES256 or ChaCha20.
        #[arg(long, default_value = "AES256")]
        cipher: String,
    },
    /// Describe a key.
    Info {
        /// Key name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys.
    Ls {
        /// Only names starting with this (a trailing * is allowed).
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete keys.
    Rm {
        /// Key names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Encrypt a message; prints the ciphertext (base64).
    Encrypt {
        /// Key name.
        name: String,
        /// The message (text).
        message: String,
        /// Context bound to the ciphertext, base64.
        context: Option<String>,
    },
    /// Decrypt a ciphertext; prints the plaintext (base64).
    Decrypt {
        /// Key name.
        name: String,
        /// The ciphertext, base64.
        ciphertext: String,
        /// The context it was encrypted with, base64.
        context: Option<String>,
    },
    /// Generate a data encryption key; prints its plaintext and ciphertext (base64).
    Dek {
        /// Key name.
        name: String,
        /// Context bound to the ciphertext, base64.
        context: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// HMAC-SHA256 of a message under a key; prints the MAC (base64).
    Hmac {
        /// Key name.
        name: String,
        /// The message (text).
        message: String,
    },
    /// Add a version to a key: encrypt and generate use it from now on, and ciphertexts of
    /// every retained version still decrypt.
    Rotate {
        /// Key name.
        name: String,
        /// Rotate only to make this version the newest: a key already at it is left as it is,
        /// and one at any version but the one before is refused. Safe to retry.
        #[arg(long, value_name = "N")]
        to: Option<u32>,
    },
    /// Have the cluster rotate a key automatically, every PERIOD from now on ("720h", "30d"),
    /// or stop it ("off"). A key whose period the config names gets that back at each start.
    Rotation {
        /// Key name.
        name: String,
        /// How often, such as 720h; or off.
        period: String,
    },
    /// Re-encrypt a ciphertext under the key's newest version; prints it (base64).
    Rewrap {
        /// Key name.
        name: String,
        /// The ciphertext, base64.
        ciphertext: String,
        /// The context it was encrypted with, base64.
        context: Option<String>,
    },
    /// Make a key's versions below N refuse to decrypt (0: let every version decrypt again).
    MinVersion {
        /// Key name.
        name: String,
        /// The lowest version that may decrypt.
        version: u32,
    },
    /// Delete a key's versions below N for good: their ciphertexts can never be decrypted.
    Retire {
        /// Key name.
        name: String,
        /// Keep this version and the newer ones.
        #[arg(long)]
        below: u32,
        /// Confirm: the retired versions cannot be brought back.
        #[arg(long)]
        yes: bool,
    },
}

/// A ciphertext and its optional context, as given in base64 on the command line.
fn ciphertext_and_context(
    ciphertext: &str,
    context: Option<String>,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let ciphertext = unb64("the ciphertext", ciphertext)?;
    let context = context.map(|c| unb64("the context", &c)).transpose()?;
    Ok((ciphertext, context))
}

pub(crate) async fn run(command: KeyCommand, client: &Client) -> Result<String> {
    match command {
        KeyCommand::Create { names } => {
            for name in &names {
                client.create_key(name).await?;
            }
            Ok(String::new())
        }
        KeyCommand::Import {
            name,
            key_b64,
            cipher,
        } => {
            let key = unb64("the key", &key_b64)?;
            client.import_key(&name, &key, &cipher).await?;
            Ok(String::new())
        }
        KeyCommand::Info {
            name,
            json: as_json,
        } => {
            let info = client.describe_key(&name).await?;
            if as_json {
                return json(&info);
            }
            let versions: Vec<String> = info
                .versions
                .iter()
                .map(|v| format!("{} ({})", v.version, v.created_at))
                .collect();
            let mut shown = vec![
                ("Name", info.name),
                ("Algorithm", info.algorithm),
                ("Created at", info.created_at),
                ("Created by", info.created_by),
            ];
            if info.version > 0 {
                shown.push(("Version", info.version.to_string()));
                shown.push(("Versions", versions.join(", ")));
            }
            Ok(fields(&shown))
        }
        KeyCommand::Ls {
            prefix,
            json: as_json,
        } => {
            let names = client.list_keys(prefix.as_deref().unwrap_or("")).await?;
            if as_json {
                json(&names)
            } else {
                Ok(lines(&names))
            }
        }
        KeyCommand::Rm { names } => {
            for name in &names {
                client.delete_key(name).await?;
            }
            Ok(String::new())
        }
        KeyCommand::Encrypt {
            name,
            message,
            context,
        } => {
            let context = context.map(|c| unb64("the context", &c)).transpose()?;
            let ciphertext = client
                .encrypt(&name, message.as_bytes(), context.as_deref())
                .await?;
            Ok(format!("{}\n", b64(&ciphertext)))
        }
        KeyCommand::Decrypt {
            name,
            ciphertext,
            context,
        } => {
            let (ciphertext, context) = ciphertext_and_context(&ciphertext, context)?;
            let plaintext = client
                .decrypt(&name, &ciphertext, context.as_deref())
                .await?;
            Ok(format!("{}\n", b64(&plaintext)))
        }
        KeyCommand::Dek {
            name,
            context,
            json: as_json,
        } => {
            let context = context.map(|c| unb64("the context", &c)).transpose()?;
            let dek = client.generate(&name, context.as_deref()).await?;
            let (plaintext, ciphertext) = (b64(&dek.plaintext), b64(&dek.ciphertext));
            if as_json {
                return json(&json!({ "plaintext": plaintext, "ciphertext": ciphertext }));
            }
            Ok(fields(&[
                ("plaintext:", plaintext),
                ("ciphertext:", ciphertext),
            ]))
        }
        KeyCommand::Hmac { name, message } => {
            let mac = client.hmac(&name, message.as_bytes()).await?;
            Ok(format!("{}\n", b64(&mac)))
        }
        KeyCommand::Rotate { name, to } => match client.rotate_key(&name, to).await {
            Ok(version) => Ok(format!("{name}: version {version}\n")),
            Err(e) if to.is_none() && e.outcome_unknown() => {
                Err(kes_cluster::Error::Config(format!(
                    "{e}\nThe rotation may or may not have been applied. `kes-cluster key describe {name}` shows the newest version N; `kes-cluster key rotate {name} --to N+1` then rotates only if no rotation landed (and is safe to retry)"
                )))
            }
            Err(e) => Err(e),
        },
        KeyCommand::Rotation { name, period } => {
            let shown = client.set_key_rotation(&name, &period).await?;
            Ok(match shown.as_str() {
                "off" => format!("{name}: automatic rotation off\n"),
                every => format!("{name}: rotated every {every}\n"),
            })
        }
        KeyCommand::Rewrap {
            name,
            ciphertext,
            context,
        } => {
            let (ciphertext, context) = ciphertext_and_context(&ciphertext, context)?;
            let rewrapped = client
                .rewrap(&name, &ciphertext, context.as_deref())
                .await?;
            Ok(format!("{}\n", b64(&rewrapped)))
        }
        KeyCommand::MinVersion { name, version } => {
            client.set_key_min_version(&name, version).await?;
            Ok(String::new())
        }
        KeyCommand::Retire { name, below, yes } => {
            if !yes {
                return Err(kes_cluster::Error::Config(format!(
                    "retiring deletes the versions of {name} below {below} for good: ciphertexts they made can never be decrypted again. Pass --yes to confirm"
                )));
            }
            let kept = client.retire_key_versions(&name, below).await?;
            let kept: Vec<String> = kept.iter().map(u32::to_string).collect();
            Ok(format!("{name}: versions kept: {}\n", kept.join(", ")))
        }
    }
}
