//! Where to connect and as whom: flags first, then the kes CLI's environment.

use std::path::PathBuf;

use clap::Args;

use kes_cluster::{Client, ClientConfig, Error, Result};

/// Used when neither a flag nor the environment names a server (KES's default).
const DEFAULT_SERVER: &str = "https://127.0.0.1:7373";

/// Connection flags, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct ConnectArgs {
    /// KES server, https://HOST:PORT [env: KES_SERVER]
    #[arg(short = 's', long, global = true, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Client certificate (PEM) [env: KES_CLIENT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key (PEM) [env: KES_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// CA certificate(s) to trust (file or directory) [env: KES_CA]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Skip verification of the server's certificate (testing only)
    #[arg(short = 'k', long, global = true)]
    pub(crate) insecure: bool,
    /// Enclave to operate in [env: KES_ENCLAVE]
    #[arg(short = 'e', long, global = true, value_name = "NAME")]
    pub(crate) enclave: Option<String>,
}

impl ConnectArgs {
    /// The client these flags and the environment describe.
    pub(crate) fn client(&self) -> Result<Client> {
        let config = self.config(&|name| std::env::var(name).ok())?;
        let client = Client::new(&config)?;
        match self
            .enclave
            .clone()
            .or_else(|| env_first(&|n| std::env::var(n).ok(), &["KES_ENCLAVE"]))
        {
            Some(enclave) => client.with_enclave(&enclave),
            None => Ok(client),
        }
    }

    /// The client these flags describe, but for `server`.
    pub(crate) fn client_for(&self, server: &str) -> Result<Client> {
        ConnectArgs {
            server: Some(server.to_owned()),
            ..self.clone()
        }
        .client()
    }

    /// The client configuration, reading the environment through `env`.
    fn config(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ClientConfig> {
        let server = self
            .server
            .clone()
            .or_else(|| {
                env_first(
                    env,
                    &["KES_SERVER", "MINIO_KES_SERVER", "MINIO_KMS_KES_ENDPOINT"],
                )
            })
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        // The kes CLI accepts a comma-separated list of endpoints; one server
        // is enough for administration, so the first is used.
        let server = server
            .split(',')
            .map(str::trim)
            .find(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SERVER)
            .to_string();
        let path = |flag: &Option<PathBuf>, names: &[&str]| {
            flag.clone()
                .or_else(|| env_first(env, names).map(PathBuf::from))
        };
        let cert = path(
            &self.cert,
            &[
                "KES_CLIENT_CERT",
                "MINIO_KES_CERT_FILE",
                "MINIO_KES_CLIENT_CERT",
            ],
        );
        let key = path(
            &self.key,
            &[
                "KES_CLIENT_KEY",
                "MINIO_KES_KEY_FILE",
                "MINIO_KES_CLIENT_KEY",
            ],
        );
        let ca = path(&self.ca, &["KES_CA", "MINIO_KMS_KES_CAPATH"]);
        if cert.is_none()
            && key.is_none()
            && env_first(env, &["KES_API_KEY", "MINIO_KES_API_KEY"]).is_some()
        {
            return Err(Error::Config(
                "KES API keys are not supported by kes-cluster yet: set KES_CLIENT_CERT and KES_CLIENT_KEY \
                 (`kes-cluster identity new NAME` makes a pair)"
                    .into(),
            ));
        }
        Ok(ClientConfig {
            server,
            cert,
            key,
            ca,
            insecure: self.insecure,
        })
    }
}

/// The first of `names` that is set to something non-empty.
fn env_first(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| env(n))
        .find(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args() -> ConnectArgs {
        ConnectArgs {
            server: None,
            cert: None,
            key: None,
            ca: None,
            insecure: false,
            enclave: None,
        }
    }

    #[test]
    fn environment_and_flags() {
        let vars: HashMap<&str, &str> = [
            ("KES_SERVER", ""),
            ("MINIO_KES_SERVER", "a:1, b:2"),
            ("KES_CLIENT_CERT", "c.crt"),
            ("MINIO_KES_KEY_FILE", "c.key"),
            ("KES_CA", "ca.crt"),
        ]
        .into();
        let env = |n: &str| vars.get(n).map(|v| v.to_string());
        let config = args().config(&env).unwrap();
        assert_eq!(config.server, "a:1");
        assert_eq!(config.cert, Some(PathBuf::from("c.crt")));
        assert_eq!(config.key, Some(PathBuf::from("c.key")));
        assert_eq!(config.ca, Some(PathBuf::from("ca.crt")));
        let mut flags = args();
        flags.server = Some("https://x:9".into());
        flags.cert = Some("f.crt".into());
        assert_eq!(flags.config(&env).unwrap().server, "https://x:9");
        assert_eq!(
            flags.config(&env).unwrap().cert,
            Some(PathBuf::from("f.crt"))
        );
        assert_eq!(args().config(&|_| None).unwrap().server, DEFAULT_SERVER);
    }

    #[test]
    fn api_key_alone_is_explained() {
        let env = |n: &str| (n == "KES_API_KEY").then(|| "kes:v1:x".to_string());
        assert!(
            matches!(args().config(&env), Err(Error::Config(m)) if m.contains("KES_CLIENT_CERT"))
        );
    }
}
