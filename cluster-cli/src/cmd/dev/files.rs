//! The files of a local cluster directory, made once and reused:
//!
//! ```text
//! DIR/ca.crt ca.key           the cluster CA (signs server and node certificates only)
//! DIR/admin.crt admin.key     the admin identity: self-signed, never from the CA
//! DIR/root.key                32 random bytes, the file root key every node seals with
//! DIR/nodeN/server.crt .key   HTTPS certificate (serverAuth)
//! DIR/nodeN/node.crt .key     inter-node gRPC certificate (serverAuth + clientAuth)
//! DIR/nodeN/node.yaml         rewritten on every run
//! DIR/nodeN/data/             the node's state
//! ```
//!
//! Existing files are kept, because they *are* the cluster: a new admin
//! identity or root key would lock the old data away, and a node's
//! certificate key is what its peers know it by. A certificate is issued
//! again (over its old key) only when it is unusable, expiring, or from
//! another CA; all of them are when the CA itself had to be made anew.

use std::fs::{self};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::cmd::private_files::{
    create_root_key, ensure_identity, make_private_dir, write_private, write_public,
};
use kes_cluster::pki::{
    CertificateAuthority, DEV_CA_NAME, LeafRequest, key_is_usable, renewal_reason,
};
use kes_cluster::{Error, Result};

/// The paths of a prepared cluster directory, all absolute.
#[derive(Debug, Clone)]
pub(crate) struct ClusterFiles {
    pub(crate) dir: PathBuf,
    pub(crate) ca_cert: PathBuf,
    pub(crate) admin_cert: PathBuf,
    pub(crate) admin_key: PathBuf,
    pub(crate) root_key: PathBuf,
    pub(crate) admin_identity: String,
}

impl ClusterFiles {
    /// `DIR/node<i>`.
    pub(crate) fn node_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("node{index}"))
    }
}

/// Creates `dir` (mode 0700) and whatever is missing for `nodes` nodes.
/// `note` receives one line per file made or renewed.
pub(crate) fn prepare(
    dir: &Path,
    nodes: usize,
    note: &mut dyn FnMut(String),
) -> Result<ClusterFiles> {
    make_private_dir(dir)?;
    let dir = fs::canonicalize(dir).map_err(|e| Error::file("resolve", dir, e))?;
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let (admin_cert, admin_key) = (dir.join("admin.crt"), dir.join("admin.key"));
    let root_key = dir.join("root.key");

    let mut ca = LazyCa::new(&ca_cert, &ca_key);
    if !ca_cert.exists() {
        ca.create(note)?;
    }
    let fix = format!(
        "delete {} to start a new cluster (the old data then cannot be used)",
        dir.display()
    );
    let admin_identity = ensure_identity(&dir, "admin", &fix, note)?;
    if !root_key.exists() {
        create_root_key(&root_key)?;
        note(format!("made the root key {}", root_key.display()));
    }

    let files = ClusterFiles {
        dir: dir.clone(),
        ca_cert: ca_cert.clone(),
        admin_cert,
        admin_key,
        root_key,
        admin_identity,
    };
    for index in 1..=nodes {
        let node_dir = files.node_dir(index);
        make_private_dir(&node_dir)?;
        make_private_dir(&node_dir.join("data"))?;
        for (stem, client_auth) in [("server", false), ("node", true)] {
            let request = LeafRequest {
                common_name: format!("node{index}"),
                dns: vec!["localhost".into()],
                ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                client_auth,
            };
            let cert = node_dir.join(format!("{stem}.crt"));
            let key = node_dir.join(format!("{stem}.key"));
            ca.ensure_leaf(&request, &cert, &key, note)?;
        }
    }
    Ok(files)
}

/// The CA, loaded only when a certificate must be issued: a directory whose
/// certificates are all fine runs without ever reading `ca.key`.
struct LazyCa<'a> {
    cert: &'a Path,
    key: &'a Path,
    loaded: Option<CertificateAuthority>,
    /// Made during this run: every leaf must then be issued again.
    fresh: bool,
}

impl<'a> LazyCa<'a> {
    fn new(cert: &'a Path, key: &'a Path) -> Self {
        LazyCa {
            cert,
            key,
            loaded: None,
            fresh: false,
        }
    }

    fn create(&mut self, note: &mut dyn FnMut(String)) -> Result<()> {
        let ca = CertificateAuthority::new(DEV_CA_NAME)?;
        write_private(self.key, ca.key_pem().as_bytes())?;
        write_public(self.cert, ca.cert_pem().as_bytes())?;
        note(format!("made the cluster CA {}", self.cert.display()));
        self.loaded = Some(ca);
        self.fresh = true;
        Ok(())
    }

    fn get(&mut self) -> Result<&CertificateAuthority> {
        if self.loaded.is_none() {
            let read = |path: &Path| {
                fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read {} ({e}); it is needed to issue certificates: restore it, or \
                         delete {} too to make a new CA (every certificate is then issued again)",
                        path.display(),
                        self.cert.display()
                    ))
                })
            };
            let ca = CertificateAuthority::load(&read(self.cert)?, &read(self.key)?)
                .map_err(|e| Error::Config(format!("{}: {e}", self.cert.display())))?;
            self.loaded = Some(ca);
        }
        Ok(self.loaded.as_ref().expect("loaded just above"))
    }

    /// Issues `cert` (over `key` when that is usable) unless the pair is fine.
    fn ensure_leaf(
        &mut self,
        request: &LeafRequest,
        cert: &Path,
        key: &Path,
        note: &mut dyn FnMut(String),
    ) -> Result<()> {
        let old_key = fs::read_to_string(key).ok();
        // Some(""): made for the first time; Some(reason): issued again.
        let why = match (fs::read(cert), &old_key) {
            (Err(_), _) | (_, None) => Some(String::new()),
            _ if self.fresh => Some("the CA is new".to_string()),
            (Ok(cert_pem), Some(key_pem)) => {
                let ca_pem = fs::read(self.cert).map_err(|e| Error::file("read", self.cert, e))?;
                renewal_reason(&cert_pem, key_pem.as_bytes(), &ca_pem)
            }
        };
        let Some(why) = why else {
            return Ok(());
        };
        // Keep the key when it still parses: peers know a node by it.
        let reuse = old_key.filter(|pem| key_is_usable(pem));
        let issued = self.get()?.issue(request, reuse.as_deref())?;
        write_private(key, issued.key_pem.as_bytes())?;
        write_public(cert, issued.cert_pem.as_bytes())?;
        note(if why.is_empty() {
            format!("made {}", cert.display())
        } else {
            format!("issued {} again: {why}", cert.display())
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cluster");
        let mut notes = Vec::new();
        let files = prepare(&dir, 2, &mut |n| notes.push(n)).unwrap();
        assert!(files.dir.is_absolute());
        assert_eq!(mode(&files.dir), 0o700);
        assert_eq!(mode(&files.root_key), 0o600);
        assert_eq!(fs::read(&files.root_key).unwrap().len(), 32);
        assert_eq!(mode(&files.dir.join("ca.key")), 0o600);
        assert_eq!(mode(&files.node_dir(2).join("node.key")), 0o600);
        assert!(files.node_dir(2).join("data").is_dir());
        assert_eq!(notes.len(), 3 + 2 * 2, "{notes:?}");

        let snapshot = |files: &ClusterFiles| -> Vec<Vec<u8>> {
            [
                "ca.crt",
                "admin.crt",
                "root.key",
                "node1/node.crt",
                "node2/server.key",
            ]
            .iter()
            .map(|f| fs::read(files.dir.join(f)).unwrap())
            .collect()
        };
        let before = snapshot(&files);
        let mut notes = Vec::new();
        let again = prepare(&dir, 2, &mut |n| notes.push(n)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(snapshot(&again), before);
        assert_eq!(again.admin_identity, files.admin_identity);

        // A third node is added without touching the others; a lost
        // certificate is issued again over its old key.
        let key = fs::read(files.node_dir(1).join("node.key")).unwrap();
        fs::remove_file(files.node_dir(1).join("node.crt")).unwrap();
        let mut notes = Vec::new();
        prepare(&dir, 3, &mut |n| notes.push(n)).unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(key, fs::read(files.node_dir(1).join("node.key")).unwrap());
    }

    #[test]
    fn a_new_ca_reissues_every_certificate_over_the_old_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let files = prepare(tmp.path(), 1, &mut |_| {}).unwrap();
        let key = fs::read(files.node_dir(1).join("server.key")).unwrap();
        let cert = fs::read(files.node_dir(1).join("server.crt")).unwrap();
        fs::remove_file(&files.ca_cert).unwrap();
        let mut notes = Vec::new();
        prepare(tmp.path(), 1, &mut |n| notes.push(n)).unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(fs::read(files.node_dir(1).join("server.key")).unwrap(), key);
        let new_cert = fs::read(files.node_dir(1).join("server.crt")).unwrap();
        assert_ne!(new_cert, cert);
        let ca = fs::read(&files.ca_cert).unwrap();
        assert_eq!(renewal_reason(&new_cert, &key, &ca), None);
    }

    #[test]
    fn half_an_admin_identity_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let files = prepare(tmp.path(), 1, &mut |_| {}).unwrap();
        fs::remove_file(&files.admin_key).unwrap();
        let err = prepare(tmp.path(), 1, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("admin.key is missing"), "{err}");
        // A missing CA key matters only when something must be issued.
        fs::remove_file(tmp.path().join("ca.key")).unwrap();
        kes_cluster::identity::new_identity("admin", tmp.path()).unwrap();
        // (the admin identity changed, but that is the node's to refuse)
        prepare(tmp.path(), 1, &mut |_| {}).unwrap();
        let err = prepare(tmp.path(), 2, &mut |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("ca.key") && err.contains("restore it"),
            "{err}"
        );
    }
}
