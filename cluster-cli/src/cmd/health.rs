//! `kes-cluster health`: exit 0 when a node answers `GET /v1/ready` with
//! 200, 1 otherwise. It is the health check of the container images, which
//! have no shell and no curl: only our two binaries and their libraries.
//!
//! A client certificate is optional. Nodes that serve `/v1/ready` with
//! `skip_auth` (what `kes-cluster scaffold --public-ready` writes) need none,
//! so the probe carries no secret; otherwise give it an identity whose policy
//! allows `/v1/ready`.

use std::time::Duration;

use clap::Args;

use kes_cluster::{Client, Error, Method, Result};

#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 when the node is ready, 1 when it is not or cannot be asked.\n\
Example (a Docker health check):\n  \
kes-cluster health --server https://127.0.0.1:7373 --ca /etc/kes/ca.crt")]
pub(crate) struct HealthArgs {
    /// Also require that a write can commit now (`/v1/ready?write=true`).
    #[arg(long)]
    write: bool,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    timeout: u64,
}

pub(crate) async fn run(args: HealthArgs, client: &Client) -> Result<String> {
    let client = client.with_timeout(Duration::from_secs(args.timeout.max(1)));
    let path = if args.write {
        "/v1/ready?write=true"
    } else {
        "/v1/ready"
    };
    let response = client.request(Method::GET, path, &[], Vec::new()).await?;
    if response.is_success() {
        Ok(format!("{} is ready\n", client.server()))
    } else {
        Err(Error::Config(format!(
            "{} is not ready: {} {}",
            client.server(),
            response.status,
            response.api_error()
        )))
    }
}
