//! `kes-cluster remove NODE_ID`: take a node out of the cluster for good.

use clap::Args;

use kes_cluster::client::{MEMBERSHIP_TIMEOUT, explain_not_a_cluster};
use kes_cluster::{Client, Result};

#[derive(Debug, Args)]
#[command(
    after_help = "Node ids are listed by `kes-cluster status`. A removed node is refused \
    if it comes back; to reuse its machine, wipe its data directory and join it as a new node."
)]
pub(crate) struct RemoveArgs {
    /// The id of the node to remove.
    node_id: u64,
}

pub(crate) async fn run(args: RemoveArgs, client: &Client) -> Result<String> {
    client
        .with_timeout(MEMBERSHIP_TIMEOUT)
        .cluster_remove(args.node_id)
        .await
        .map_err(explain_not_a_cluster)?;
    Ok(format!("Removed node {} from the cluster.\n", args.node_id))
}
