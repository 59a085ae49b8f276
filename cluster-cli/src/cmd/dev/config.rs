//! `DIR/nodeN/node.yaml`: the config each node of a local cluster runs with.
//!
//! It is rewritten on every run, so a newer `kes-cluster` brings its own
//! settings to an old directory, and it is complete, data dir included:
//! `kes-node --config DIR/nodeN/node.yaml` brings a node back by hand.

use std::fmt::Write;
use std::path::Path;

use super::files::ClusterFiles;

/// Where the nodes of a local cluster listen: HTTPS on `base..base+n`, gRPC
/// 100 ports higher.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) base: u16,
    pub(crate) nodes: usize,
}

/// gRPC ports sit this far above the HTTPS ports.
pub(crate) const GRPC_OFFSET: u16 = 100;

impl Ports {
    /// Checks that every port fits and that the two ranges do not overlap.
    pub(crate) fn new(base: u16, nodes: usize) -> Result<Ports, String> {
        if nodes == 0 || nodes > usize::from(GRPC_OFFSET) {
            return Err(format!(
                "--nodes must be between 1 and {GRPC_OFFSET}, not {nodes}"
            ));
        }
        let highest = u32::from(base) + u32::from(GRPC_OFFSET) + nodes as u32 - 1;
        if base == 0 || highest > u32::from(u16::MAX) {
            return Err(format!(
                "--base-port {base} leaves no room for {nodes} nodes: the ports run up to \
                 {highest} (HTTPS from the base port, gRPC {GRPC_OFFSET} above); pick a lower one"
            ));
        }
        Ok(Ports { base, nodes })
    }

    /// The HTTPS port of node `index` (1-based).
    pub(crate) fn https(&self, index: usize) -> u16 {
        self.base + (index - 1) as u16
    }

    /// The gRPC port of node `index` (1-based).
    pub(crate) fn grpc(&self, index: usize) -> u16 {
        self.https(index) + GRPC_OFFSET
    }

    /// `https://127.0.0.1:<port>` of node `index`.
    pub(crate) fn url(&self, index: usize) -> String {
        format!("https://127.0.0.1:{}", self.https(index))
    }
}

/// The text of node `index`'s `node.yaml`.
///
/// Node 1 bootstraps the cluster (on an empty data dir only, and only while
/// the others form none; later runs just start it). Every other node joins
/// through all the others, node 1 first, so a restart works whichever of them
/// is up.
pub(crate) fn node_yaml(files: &ClusterFiles, ports: Ports, index: usize) -> String {
    let node_dir = files.node_dir(index);
    let path = |name: &str| scalar(&node_dir.join(name).to_string_lossy());
    let mut y = String::new();
    // `write!` to a String cannot fail; the results are ignored for brevity.
    let _ = writeln!(
        y,
        "# Node {index} of the local cluster in {dir}.\n\
         # Written by `kes-cluster dev` on every run: edits here are overwritten.\n\
         # To run this node by hand:\n\
         #   kes-node --config {config}",
        dir = comment(&files.dir),
        config = comment(&node_dir.join("node.yaml")),
    );
    let _ = writeln!(y, "address: 127.0.0.1:{}", ports.https(index));
    let _ = writeln!(y, "data_dir: {}", path("data"));
    let _ = writeln!(y, "admin:\n  identity: {}", scalar(&files.admin_identity));
    let _ = writeln!(
        y,
        "tls:\n  key: {}\n  cert: {}",
        path("server.key"),
        path("server.crt")
    );
    let _ = writeln!(
        y,
        "seal:\n  file:\n    path: {}",
        scalar(&files.root_key.to_string_lossy())
    );
    let grpc = format!("127.0.0.1:{}", ports.grpc(index));
    let _ = writeln!(
        y,
        "cluster:\n  grpc:\n    listen: {grpc}\n    advertise: {grpc}\n  \
         tls:\n    cert: {}\n    key: {}\n    ca: {}",
        path("node.crt"),
        path("node.key"),
        scalar(&files.ca_cert.to_string_lossy())
    );
    if index == 1 {
        let _ = writeln!(y, "  bootstrap: true");
    }
    // On node 1 these are the peers it asks before founding: if its data dir was wiped while
    // the others still form the cluster, it refuses to found a second one.
    if ports.nodes > 1 {
        let _ = writeln!(y, "  join:");
        for other in (1..=ports.nodes).filter(|&i| i != index) {
            let _ = writeln!(y, "    - {}", ports.url(other));
        }
    }
    y
}

/// A YAML scalar: plain when that cannot be misread, else double-quoted
/// (a JSON string is a valid YAML double-quoted scalar). Only absolute paths
/// of harmless characters stay plain: anything else might read as a number
/// (a hex identity of digits only), a boolean, a comment or a mapping.
fn scalar(text: &str) -> String {
    let plain = text.starts_with('/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if plain {
        text.to_string()
    } else {
        serde_json::Value::from(text).to_string()
    }
}

/// A path for a comment line: a line break would end the comment.
fn comment(path: &Path) -> String {
    path.display().to_string().replace(['\n', '\r'], "?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn files(dir: &str) -> ClusterFiles {
        let dir = PathBuf::from(dir);
        ClusterFiles {
            ca_cert: dir.join("ca.crt"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            root_key: dir.join("root.key"),
            admin_identity: "ab".repeat(32),
            dir,
        }
    }

    #[test]
    fn the_config_of_node_one_and_of_a_joiner() {
        let ports = Ports::new(7373, 3).unwrap();
        let id = "ab".repeat(32);
        let body = |text: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let one = node_yaml(&files("/tmp/c"), ports, 1);
        assert!(one.starts_with("# Node 1 of the local cluster in /tmp/c."));
        assert!(one.contains("#   kes-node --config /tmp/c/node1/node.yaml\n"));
        assert_eq!(
            body(&one),
            format!(
                r#"address: 127.0.0.1:7373
data_dir: /tmp/c/node1/data
admin:
  identity: "{id}"
tls:
  key: /tmp/c/node1/server.key
  cert: /tmp/c/node1/server.crt
seal:
  file:
    path: /tmp/c/root.key
cluster:
  grpc:
    listen: 127.0.0.1:7473
    advertise: 127.0.0.1:7473
  tls:
    cert: /tmp/c/node1/node.crt
    key: /tmp/c/node1/node.key
    ca: /tmp/c/ca.crt
  bootstrap: true
  join:
    - https://127.0.0.1:7374
    - https://127.0.0.1:7375"#
            )
        );
        let three = body(&node_yaml(&files("/tmp/c"), ports, 3));
        assert!(
            three.starts_with("address: 127.0.0.1:7375\ndata_dir: /tmp/c/node3/data\n"),
            "{three}"
        );
        assert!(three.contains("    listen: 127.0.0.1:7475\n    advertise: 127.0.0.1:7475\n"));
        assert!(three.contains("    cert: /tmp/c/node3/node.crt\n"));
        assert!(
            three.ends_with("  join:\n    - https://127.0.0.1:7373\n    - https://127.0.0.1:7374")
        );
        assert!(!three.contains("bootstrap"));
    }

    /// Paths that YAML would misread as plain scalars are quoted, and read
    /// back exactly.
    #[test]
    fn awkward_paths_survive_yaml() {
        let dir = "/tmp/my dir: #1/\"x\"\n/ünï";
        let text = node_yaml(&files(dir), Ports::new(7373, 2).unwrap(), 2);
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            value["tls"]["key"].as_str(),
            Some(format!("{dir}/node2/server.key").as_str())
        );
        assert_eq!(
            value["seal"]["file"]["path"].as_str(),
            Some(format!("{dir}/root.key").as_str())
        );
        assert_eq!(
            value["cluster"]["join"][0].as_str(),
            Some("https://127.0.0.1:7373")
        );
        assert_eq!(value["address"].as_str(), Some("127.0.0.1:7374"));
        assert_eq!(
            value["admin"]["identity"].as_str(),
            Some("ab".repeat(32).as_str())
        );
        assert_eq!(value["cluster"]["bootstrap"], serde_yaml_ng::Value::Null);
    }

    #[test]
    fn port_ranges() {
        let p = Ports::new(7373, 3).unwrap();
        assert_eq!(
            (p.https(1), p.https(3), p.grpc(1), p.grpc(3)),
            (7373, 7375, 7473, 7475)
        );
        assert_eq!(p.url(2), "https://127.0.0.1:7374");
        assert!(Ports::new(65535 - 102, 3).is_ok());
        assert!(
            Ports::new(65535 - 101, 3)
                .unwrap_err()
                .contains("pick a lower one")
        );
        assert!(Ports::new(7373, 0).is_err());
        assert!(Ports::new(7373, 101).is_err());
        assert!(Ports::new(0, 1).is_err());
    }
}
