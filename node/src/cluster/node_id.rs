//! The node id: random, chosen at first start, kept in the data dir (never derived from an
//! address, which changes when a container moves).

use rand::RngCore;
use std::io::Write;
use std::path::Path;

/// Reads `<data>/node_id`, if there is one.
pub fn read_node_id(data_dir: &Path) -> Result<Option<u64>, String> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map(Some).map_err(|_| {
            format!(
                "{} does not hold a node id; restore it or follow the rejoin runbook",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads `<data>/node_id`, or makes one.
pub fn load_or_create_node_id(data_dir: &Path) -> Result<u64, String> {
    let path = data_dir.join("node_id");
    match read_node_id(data_dir)? {
        Some(id) => Ok(id),
        None => {
            let mut id = 0;
            while id == 0 {
                id = rand::rng().next_u64() >> 1; // positive in every signed view of it
            }
            let mut f =
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            writeln!(f, "{id}")
                .and_then(|_| f.sync_all())
                .and_then(|_| crate::dir_sync::sync_parent(&path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(id)
        }
    }
}
