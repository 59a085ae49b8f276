//! The subcommands. Each lives in its own file and returns what it prints to
//! stdout, so `main` alone decides how output and errors reach the terminal
//! (errors: `Error: <message>` on stderr, exit status 1; an [`Outcome`] may
//! carry a failure reported after its output, like `status` without a
//! leader, exit status 2). `dev` is the exception: it runs in the foreground
//! and prints as it goes.

mod bench;
mod connect;
mod dev;
mod enclave;
mod health;
mod identity;
mod join;
mod key;
mod output;
mod policy;
mod private_files;
mod recover;
mod remove;
mod scaffold;
mod seal;
mod snapshot;
mod status;

use clap::{Parser, Subcommand};

use kes_cluster::Result;

pub(crate) use connect::ConnectArgs;

/// Manage a KES server or a kes-cluster: keys, policies, identities, enclaves,
/// and the cluster itself.
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
    /// Run a local cluster of N nodes on 127.0.0.1 in the foreground.
    Dev(dev::DevArgs),
    /// Show the cluster's members, roles and replication (--node: one node's KES status).
    Status(status::StatusArgs),
    /// Make the node KES_SERVER names join the cluster of MEMBER.
    Join(join::JoinArgs),
    /// Remove a node from the cluster.
    Remove(remove::RemoveArgs),
    /// Offline, after a quorum is lost for good: make a stopped member a cluster of one
    /// (runs kes-node recover).
    Recover(recover::RecoverArgs),
    /// Save or restore a sealed snapshot of the cluster state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Inspect and migrate the seals that guard the cluster key, or rekey it.
    #[command(subcommand)]
    Seal(seal::SealCommand),
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
    /// Print the server's Prometheus metrics.
    Metric,
    /// Exit 0 when the node answers /v1/ready with 200 (a container health check).
    Health(health::HealthArgs),
    /// Write the certificates, keys and node.yaml files of a cluster on named hosts.
    Scaffold(scaffold::ScaffoldArgs),
    /// Measure a server or cluster under load: ops/s, latency percentiles, errors by status.
    Bench(bench::BenchArgs),
}

/// What a command leaves for `main`: text for stdout and, optionally, a
/// failure to report after it (the output still counts, e.g. the status table
/// of a cluster without a leader).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    /// Exit status and the message for stderr.
    pub(crate) failure: Option<(u8, String)>,
}

impl From<String> for Outcome {
    fn from(stdout: String) -> Self {
        Outcome {
            stdout,
            failure: None,
        }
    }
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<Outcome> {
    let connect = cli.connect;
    let text = match cli.command {
        Command::Dev(args) => return dev::run(args).await,
        Command::Status(args) => return status::status(args, &connect.client()?).await,
        Command::Join(args) => join::run(args, &connect.client()?).await,
        Command::Remove(args) => remove::run(args, &connect.client()?).await,
        Command::Recover(args) => return recover::run(args),
        Command::Snapshot(command) => snapshot::run(command, &connect.client()?).await,
        Command::Seal(command) => seal::run(command, &connect.client()?).await,
        Command::Identity(command) => identity::run(command, &connect).await,
        Command::Key(command) => key::run(command, &connect.client()?).await,
        Command::Policy(command) => policy::run(command, &connect.client()?).await,
        Command::Enclave(command) => enclave::run(command, &connect.client()?).await,
        Command::Metric => status::metric(&connect.client()?).await,
        Command::Health(args) => health::run(args, &connect.client()?).await,
        Command::Scaffold(args) => scaffold::run(args).await,
        Command::Bench(args) => return bench::run(args, &connect).await,
    };
    text.map(Outcome::from)
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
    /// `recover` hands every argument after it to `kes-node recover`, flags and `--help`
    /// included.
    #[test]
    fn recover_passes_its_arguments_through() {
        let form = [
            "kes-cluster",
            "recover",
            "--data-dir",
            "d",
            "--force-new-cluster",
            "--help",
        ];
        let cli = Cli::try_parse_from(form).expect("parses");
        match cli.command {
            Command::Recover(r) => assert_eq!(r.args, form[2..]),
            other => panic!("{other:?}"),
        }
    }

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
            &["status", "--node", "--json"],
            &["metric"],
            &["dev", "--nodes", "5", "--dir", "d", "--base-port", "9000"],
            &["dev", "--kes-node", "/bin/kes-node"],
            &["join", "https://a:7373", "--json"],
            &["remove", "18446744073709551615"],
            &["snapshot", "save", "f", "-f"],
            &["snapshot", "restore", "f"],
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
