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
        for ip in &ips {
            scaffold.args(["--san", ip]);
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
            let text = text.replace(CONFIG_DIR, &node_dir.display().to_string());
            std::fs::write(&yaml, text).map_err(|e| format!("{ip}: {e}"))?;
            nodes.push(NodeProc {
                index: i + 1,
                url: format!("https://{ip}:7373"),
                dir: node_dir,
                env: env(i),
                netns: Some(net.namespace(i)),
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
