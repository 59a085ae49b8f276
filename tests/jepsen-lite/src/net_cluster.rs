//! A cluster on [`Network`] hosts: made with `kes-cluster scaffold` exactly as an operator makes
//! one for named hosts (here the namespaces' addresses), every node run inside its own
//! namespace on the standard ports, node1 bootstrapping and the others joining through it.

use super::net::Network;
use super::{Cluster, NodeProc, bin};
use std::process::Command;
use std::time::Duration;

/// The placeholder `--config-dir` that each node's own directory replaces in its node.yaml.
const CONFIG_DIR: &str = "/JEPSEN-LITE-NODE-DIR";

impl Cluster {
    /// Scaffolds and starts an `n`-node cluster on the first `n` hosts of `net`, node `i` with
    /// the extra environment `env(i)`, and waits until every node is ready. The next `spares`
    /// hosts get a node too, made and configured to join, but not started ([`Cluster::spares`]).
    pub async fn start_on(
        net: &Network,
        n: usize,
        spares: usize,
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("jepsen-lite-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let ips: Vec<String> = (0..n + spares).map(|i| net.ip(i)).collect();
        let mut scaffold = Command::new(bin("kes-cluster"));
        scaffold.args(["scaffold", "--dir"]).arg(dir.path()).args([
            "--host",
            &ips.join(","),
            "--config-dir",
            CONFIG_DIR,
        ]);
        // On loopback, peers reach each node's gRPC port through the proxy's address.
        let fronts: Vec<Option<String>> = (0..n + spares).map(|i| net.grpc_front(i)).collect();
        let front_hosts = fronts.iter().flatten().filter_map(|f| f.split(':').next());
        for san in ips.iter().map(String::as_str).chain(front_hosts) {
            scaffold.args(["--san", san]);
        }
        let out = scaffold
            .output()
            .map_err(|e| format!("kes-cluster scaffold: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "kes-cluster scaffold failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let node_dir = dir.path().join(ip);
            let yaml = node_dir.join("node.yaml");
            let text = std::fs::read_to_string(&yaml).map_err(|e| format!("{ip}: {e}"))?;
            let mut text = text.replace(CONFIG_DIR, &node_dir.display().to_string());
            if let Some(front) = &fronts[i] {
                text = on_loopback(&text, ip, front)?;
            }
            std::fs::write(&yaml, text).map_err(|e| format!("{ip}: {e}"))?;
            nodes.push(NodeProc {
                index: i + 1,
                url: format!("https://{ip}:7373"),
                dir: node_dir,
                env: env(i),
                netns: net.namespace(i),
                child: None,
            });
        }
        let spares = nodes.split_off(n);
        let mut c = Cluster {
            dir,
            nodes,
            spares,
            base: 7373,
        };
        // node1 founds the cluster before the others ask it to admit them.
        c.nodes[0].start();
        if !c.wait_ready(0, Duration::from_secs(60)).await {
            return Err(format!("node1 never became ready:\n{}", c.logs()));
        }
        for node in &mut c.nodes[1..] {
            node.start();
        }
        for i in 1..n {
            if !c.wait_ready(i, Duration::from_secs(90)).await {
                return Err(format!("node{} never became ready:\n{}", i + 1, c.logs()));
            }
        }
        Ok(c)
    }
}

/// A scaffolded node.yaml for the loopback fallback: the node listens on its own address
/// `ip` (not on every address: its neighbours use the same ports), tells its peers to reach
/// its gRPC port at the proxy `front`, and connects to them from `ip`, by which the proxy
/// knows it.
fn on_loopback(yaml: &str, ip: &str, front: &str) -> Result<String, String> {
    let edits = [
        (
            "address: 0.0.0.0:7373".to_owned(),
            format!("address: {ip}:7373"),
        ),
        (
            "listen: 0.0.0.0:7473".to_owned(),
            format!("listen: {ip}:7473"),
        ),
        (
            format!("advertise: \"{ip}:7473\""),
            format!("advertise: \"{front}\"\n    source: {ip}"),
        ),
    ];
    edits.iter().try_fold(yaml.to_owned(), |text, (from, to)| {
        if text.contains(from.as_str()) {
            Ok(text.replace(from.as_str(), to))
        } else {
            Err(format!("the scaffolded node.yaml of {ip} has no '{from}'"))
        }
    })
}
