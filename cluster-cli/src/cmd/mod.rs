//! The subcommands. Each group lives in its own file and returns what it
//! prints to stdout, so `main` alone decides how output and errors reach the
//! terminal (errors: `Error: <message>` on stderr, exit status 1).

mod connect;
mod enclave;
mod identity;
mod key;
mod output;
mod policy;
mod status;

use clap::{Parser, Subcommand};

use kes_cluster::Result;

pub(crate) use connect::ConnectArgs;

/// Manage a KES server or a kes-cluster: keys, policies, identities, enclaves.
#[derive(Debug, Parser)]
#[command(
    name = "kes-cluster",
    version,
    after_help = "Environment (flags win over it):\n  \
        KES_SERVER       server, e.g. https://127.0.0.1:7373 (also MINIO_KES_SERVER, MINIO_KMS_KES_ENDPOINT)\n  \
        KES_CLIENT_CERT  client certificate (PEM)\n  \
        KES_CLIENT_KEY   client private key (PEM)\n  \
        KES_CA           CA certificate(s) to trust; a self-signed server certificate works too\n  \
        KES_ENCLAVE      enclave to use"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make, inspect and remove identities.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Create, use and remove keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Write, show, assign and remove policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Create, inspect and remove enclaves.
    #[command(subcommand)]
    Enclave(enclave::EnclaveCommand),
    /// Show the server's status.
    Status(status::StatusArgs),
    /// Print the server's Prometheus metrics.
    Metric,
    // Cluster administration (`dev`, `join`, `remove`, `snapshot`, `seal`)
    // joins here, each in its own file, once the node side serves it.
}

/// Runs the parsed command line; the `Ok` value is the text for stdout.
pub(crate) async fn run(cli: Cli) -> Result<String> {
    let connect = cli.connect;
    match cli.command {
        Command::Identity(command) => identity::run(command, &connect).await,
        Command::Key(command) => key::run(command, &connect.client()?).await,
        Command::Policy(command) => policy::run(command, &connect.client()?).await,
        Command::Enclave(command) => enclave::run(command, &connect.client()?).await,
        Command::Status(args) => status::status(args, &connect.client()?).await,
        Command::Metric => status::metric(&connect.client()?).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every form parses: clap panics at parse time (not in `debug_assert`)
    /// when a subcommand argument shares its id with a global flag.
    #[test]
    fn every_subcommand_parses() {
        let forms: &[&[&str]] = &[
            &[
                "identity",
                "new",
                "app",
                "--dns",
                "a.example",
                "--ip",
                "127.0.0.1",
                "-f",
            ],
            &["identity", "of", "app.crt"],
            &["identity", "info"],
            &["identity", "info", "abc", "--json"],
            &["identity", "ls", "a*", "--json"],
            &["identity", "rm", "abc", "def"],
            &["key", "create", "a", "b"],
            &["key", "import", "a", "AAAA", "--cipher", "ChaCha20"],
            &["key", "info", "a", "--json"],
            &["key", "ls"],
            &["key", "rm", "a"],
            &["key", "encrypt", "a", "hello", "Y3R4"],
            &["key", "decrypt", "a", "AAAA", "Y3R4"],
            &["key", "dek", "a", "Y3R4", "--json"],
            &["key", "hmac", "a", "hello"],
            &["policy", "ls", "p*"],
            &["policy", "info", "p"],
            &["policy", "show", "p", "--json"],
            &["policy", "create", "p", "p.json"],
            &["policy", "assign", "p", "abc", "def"],
            &["policy", "rm", "p"],
            &["enclave", "create", "e", "--admin", "abc"],
            &["enclave", "info", "e"],
            &["enclave", "ls"],
            &["enclave", "rm", "e", "-f"],
            &["status", "--json"],
            &["metric"],
        ];
        for form in forms {
            let args = std::iter::once("kes-cluster")
                .chain(form.iter().copied())
                .chain([
                    "--cert", "c.crt", "--key", "c.key", "--ca", "ca.crt", "-s", "h:1",
                ]);
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{form:?}: {e}"));
            assert_eq!(
                cli.connect.key.as_deref(),
                Some(std::path::Path::new("c.key")),
                "{form:?}"
            );
            assert_eq!(
                cli.connect.cert.as_deref(),
                Some(std::path::Path::new("c.crt")),
                "{form:?}"
            );
        }
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kes-cluster",
            "key",
            "ls",
            "-k",
            "-e",
            "tenant",
            "--server",
            "h:1",
        ])
        .unwrap();
        assert!(cli.connect.insecure);
        assert_eq!(cli.connect.enclave.as_deref(), Some("tenant"));
        let cli = Cli::try_parse_from(["kes-cluster", "-k", "key", "dek", "k", "--json"]).unwrap();
        assert!(cli.connect.insecure);
    }
}
