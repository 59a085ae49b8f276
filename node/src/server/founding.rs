//! Before a node founds a new cluster: make sure its configured peers do not form one already.
//!
//! `cluster.bootstrap` founds a cluster whenever the data dir is empty. A founding node whose
//! data dir was wiped, or one configured to bootstrap by mistake, would then found a second
//! cluster beside the one its peers form, with its own cluster key: clients sent to it would
//! find none of their keys, and keys created there would exist nowhere else. So a founding node
//! that lists peers in `cluster.join` asks each of them first (`GET /v1/cluster/founded`, with
//! its node certificate), and refuses to start if any already belongs to a cluster. This is what
//! etcd does for `--initial-cluster-state new` with a wiped member.
//!
//! A peer that does not answer is no evidence either way, and at a first start the peers are
//! often not up yet: the node founds the cluster then, and says which peers it could not ask.

use super::startup::StartError;
use crate::config::ClusterTlsConfig;
use std::time::Duration;

/// How long each peer may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What one peer said about itself.
enum PeerAnswer {
    /// It belongs to a cluster (the id, when it knows it).
    InCluster(String),
    /// It belongs to none yet.
    Free,
    /// It could not be asked, or its answer made no sense.
    Unknown(String),
}

/// Refuses to found a cluster when one of `peers` already belongs to one. `own_url` (this
/// node's own address, which a shared peer list may contain) is skipped.
pub(super) async fn refuse_second_cluster(
    peers: &[String],
    own_url: &str,
    tls: &ClusterTlsConfig,
) -> Result<(), StartError> {
    let (Some(cert), Some(key), Some(ca)) = (&tls.cert, &tls.key, &tls.ca) else {
        return Ok(());
    };
    let asks = peers
        .iter()
        .filter(|p| p.as_str() != own_url)
        .map(|peer| async move { (peer, ask(peer, cert, key, ca).await) });
    let mut unknown = Vec::new();
    for (peer, answer) in futures_util::future::join_all(asks).await {
        match answer {
            PeerAnswer::InCluster(id) => {
                let which = if id.is_empty() {
                    "a cluster".to_owned()
                } else {
                    format!("cluster {id}")
                };
                return Err(StartError::Config(format!(
                    "refusing to found a new cluster: this node's data dir is empty, but its peer {peer} \
                     already belongs to {which}, and founding another would split the nodes into two \
                     clusters with different keys. To bring this node back into that cluster, set \
                     cluster.bootstrap to false (keep cluster.join) and start it again; to found a new \
                     cluster on purpose, remove the peers from cluster.join"
                )));
            }
            PeerAnswer::Free => {}
            PeerAnswer::Unknown(why) => unknown.push(format!("{peer} ({why})")),
        }
    }
    if !unknown.is_empty() {
        tracing::warn!(
            "founding a new cluster without word from {}: make sure they do not form a cluster already",
            unknown.join(", ")
        );
    }
    Ok(())
}

async fn ask(
    peer: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> PeerAnswer {
    let client = match crate::cluster::node_client(peer, cert, key, ca) {
        Ok(c) => c.with_timeout(ASK_TIMEOUT),
        Err(e) => return PeerAnswer::Unknown(e),
    };
    let answer = client
        .request(
            kes_cluster::Method::GET,
            "/v1/cluster/founded",
            &[],
            String::new(),
        )
        .await;
    let r = match answer {
        Ok(r) if r.is_success() => r,
        Ok(r) => return PeerAnswer::Unknown(format!("answered {}", r.status)),
        Err(e) => return PeerAnswer::Unknown(e.to_string()),
    };
    match r.json::<serde_json::Value>() {
        Ok(v) if v["in_cluster"] == true => {
            PeerAnswer::InCluster(v["cluster_id"].as_str().unwrap_or_default().to_owned())
        }
        Ok(v) if v["in_cluster"] == false => PeerAnswer::Free,
        _ => PeerAnswer::Unknown("an answer without in_cluster".into()),
    }
}
