//! `kes-cluster join MEMBER`: the node KES_SERVER names joins MEMBER's cluster.

use clap::Args;

use super::output::{fields, json};
use kes_cluster::client::{MEMBERSHIP_TIMEOUT, explain_not_a_cluster, server_url};
use kes_cluster::{Client, Error, Result};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    KES_SERVER=https://node4:7373 kes-cluster join https://node1:7373\n\n\
    KES_SERVER names the NEW node (started without cluster.bootstrap); MEMBER is any node \
    of the cluster. The leader adds the new node as a learner, waits until it has caught \
    up, and makes it a voter; this command returns then (it waits up to 120 s).")]
pub(crate) struct JoinArgs {
    /// Any member of the cluster to join, https://HOST:PORT.
    member: String,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: JoinArgs, client: &Client) -> Result<String> {
    let member = server_url(&args.member)?;
    if member == client.server() {
        return Err(Error::Config(format!(
            "{member} is the node that is to join (KES_SERVER): name another member of the \
             cluster, and point KES_SERVER (--server) at the new node"
        )));
    }
    eprintln!(
        "Asking {} to join the cluster through {member}; this returns once it has caught up.",
        client.server()
    );
    let answer = client
        .with_timeout(MEMBERSHIP_TIMEOUT)
        .cluster_join(&member)
        .await
        .map_err(explain_not_a_cluster)?;
    if args.json {
        return json(&answer);
    }
    Ok(fields(&[
        ("Node", answer.node_id.to_string()),
        ("Cluster", answer.cluster_id),
    ]))
}
