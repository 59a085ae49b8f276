//! `kes-cluster scaffold`: the certificates, keys and node configs of a
//! cluster whose nodes run on named hosts (containers, VMs), written into one
//! directory with a subdirectory per host.
//!
//! ```text
//! DIR/ca.crt ca.key           the cluster CA: signs node HTTPS and gRPC certificates only
//! DIR/admin.crt admin.key     the admin identity, self-signed (never from the CA)
//! DIR/NAME.crt NAME.key       each --identity NAME (e.g. prometheus), self-signed
//! DIR/root.key                32 random bytes: the file root key every node seals with
//! DIR/HOST/                   everything host HOST needs, mounted at --config-dir there:
//!     server.crt server.key   HTTPS (serverAuth); SANs: HOST and every --san
//!     node.crt node.key       inter-node gRPC (serverAuth + clientAuth); the same SANs
//!     ca.crt root.key         copies, so the directory is complete on its own
//!     node.yaml               the first host bootstraps, the others join through the rest
//! ```
//!
//! Like `kes-cluster dev`, a second run keeps what exists, because those
//! files *are* the cluster: a new admin identity or root key would lock the
//! old data away, and peers know a node by its certificate's key. A
//! certificate is issued again (over its old key) only when it is unusable,
//! expiring, from another CA, or names other hosts than asked. The copies and
//! `node.yaml` are rewritten on every run.
//!
//! The PKI is [`kes_cluster::pki`] and [`kes_cluster::identity`], the same
//! code `kes-cluster dev` issues its certificates with.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::extensions::GeneralName;

use crate::cmd::private_files::{
    create_root_key, ensure_identity, make_private_dir, write_private, write_public,
};
use kes_cluster::pki::{
    CertificateAuthority, DEV_CA_NAME, LeafRequest, key_is_usable, renewal_reason,
};
use kes_cluster::{Error, Result};

/// Names `--identity` may not take: they are files the scaffold makes itself.
const RESERVED_NAMES: [&str; 3] = ["admin", "ca", "root"];

#[derive(Debug, Args)]
#[command(after_help = "\
Example, for three containers that mount DIR/nodeN at /etc/kes and keep their data in \
/var/lib/kes:\n  \
kes-cluster scaffold --dir generated --host node1,node2,node3 --identity prometheus --public-ready\n  \
kes-node --config /etc/kes/node.yaml --data-dir /var/lib/kes     (in each container)\n\n\
Existing files are kept (they are the cluster); run it again to add a host or an identity. \
Delete DIR to start a new cluster.")]
pub(crate) struct ScaffoldArgs {
    /// Where to write everything (made with mode 0700).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The nodes' host names, in order; the first one bootstraps the cluster.
    #[arg(
        long = "host",
        value_name = "NAME",
        value_delimiter = ',',
        required = true
    )]
    hosts: Vec<String>,
    /// More DNS names or IP addresses for every node certificate, besides the host name.
    #[arg(
        long = "san",
        value_name = "NAME|IP",
        value_delimiter = ',',
        default_values = ["localhost", "127.0.0.1"]
    )]
    sans: Vec<String>,
    /// Where each host sees its own directory: the paths written into node.yaml.
    #[arg(long, value_name = "PATH", default_value = "/etc/kes")]
    config_dir: PathBuf,
    /// The KES (HTTPS) port every node listens on, on all interfaces.
    #[arg(long, value_name = "PORT", default_value_t = 7373)]
    port: u16,
    /// The inter-node gRPC port every node listens on, on all interfaces.
    #[arg(long, value_name = "PORT", default_value_t = 7473)]
    grpc_port: u16,
    /// Also make the client identity NAME (DIR/NAME.crt, DIR/NAME.key), e.g. for Prometheus.
    #[arg(long = "identity", value_name = "NAME", value_delimiter = ',')]
    identities: Vec<String>,
    /// Serve /v1/ready without a client certificate (api./v1/ready.skip_auth), so that a
    /// health check needs no identity. Every other route still requires one.
    #[arg(long)]
    public_ready: bool,
}

/// What node.yaml is made from: the settings shared by every host.
#[derive(Debug, Clone)]
struct Layout {
    hosts: Vec<String>,
    config_dir: PathBuf,
    port: u16,
    grpc_port: u16,
    admin_identity: String,
    public_ready: bool,
}

pub(crate) async fn run(args: ScaffoldArgs) -> Result<String> {
    check_args(&args)?;
    let sans = parse_sans(&args.sans);
    let made = scaffold(&args, &sans, &mut |note| eprintln!("{note}"))?;
    let width = made.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, identity) in &made {
        let _ = writeln!(out, "{name:<width$}  {identity}");
    }
    Ok(out)
}

/// Refuses what would make a broken cluster, before anything is written.
fn check_args(args: &ScaffoldArgs) -> Result<()> {
    let mut seen = BTreeSet::new();
    for host in &args.hosts {
        if !is_host_name(host) {
            return Err(Error::Config(format!(
                "--host {host:?} is not a host name: use letters, digits, '-' and '.', as the \
                 nodes' DNS names (it also names the host's directory and its certificates)"
            )));
        }
        if !seen.insert(host.to_ascii_lowercase()) {
            return Err(Error::Config(format!("--host {host} is given twice")));
        }
    }
    let mut seen = BTreeSet::new();
    for name in &args.identities {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return Err(Error::Config(format!(
                "--identity {name:?}: use letters, digits, '.', '_' and '-' (it names the files \
                 NAME.crt and NAME.key)"
            )));
        }
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(Error::Config(format!(
                "--identity {name} clashes with the {name}.* files the scaffold makes itself; \
                 pick another name"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Config(format!("--identity {name} is given twice")));
        }
    }
    if !args.config_dir.is_absolute() {
        return Err(Error::Config(format!(
            "--config-dir {} must be absolute: it is where each host finds its files",
            args.config_dir.display()
        )));
    }
    if args.port == 0 || args.grpc_port == 0 || args.port == args.grpc_port {
        return Err(Error::Config(format!(
            "--port {} and --grpc-port {} must be two different, non-zero ports",
            args.port, args.grpc_port
        )));
    }
    Ok(())
}

/// A DNS name of letters, digits and hyphens between dots (RFC 1123 labels).
fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Splits `--san` values into DNS names and IP addresses.
fn parse_sans(sans: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for san in sans.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.to_string()),
        }
    }
    (dns, ips)
}

/// Writes whatever is missing and rewrites the per-host copies and configs.
/// Returns (name, KES identity) of the admin and of each extra identity.
fn scaffold(
    args: &ScaffoldArgs,
    (extra_dns, ips): &(Vec<String>, Vec<IpAddr>),
    note: &mut dyn FnMut(String),
) -> Result<Vec<(String, String)>> {
    make_private_dir(&args.dir)?;
    let dir = fs::canonicalize(&args.dir).map_err(|e| Error::file("resolve", &args.dir, e))?;
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let root_key = dir.join("root.key");

    // A new CA voids every certificate the old one issued.
    let (ca, fresh_ca) = if ca_cert.exists() {
        (load_ca(&ca_cert, &ca_key)?, false)
    } else {
        let ca = CertificateAuthority::new(DEV_CA_NAME)?;
        write_private(&ca_key, ca.key_pem().as_bytes())?;
        write_public(&ca_cert, ca.cert_pem().as_bytes())?;
        note(format!("made the cluster CA {}", ca_cert.display()));
        (ca, true)
    };

    let mut identities = Vec::new();
    for name in std::iter::once("admin").chain(args.identities.iter().map(String::as_str)) {
        let fix = format!("delete both to make a new {name} identity");
        let identity = ensure_identity(&dir, name, &fix, note)?;
        identities.push((name.to_string(), identity));
    }
    if !root_key.exists() {
        create_root_key(&root_key)?;
        note(format!("made the root key {}", root_key.display()));
    }
    let ca_pem = fs::read(&ca_cert).map_err(|e| Error::file("read", &ca_cert, e))?;
    let root_bytes = fs::read(&root_key).map_err(|e| Error::file("read", &root_key, e))?;

    let layout = Layout {
        hosts: args.hosts.clone(),
        config_dir: args.config_dir.clone(),
        port: args.port,
        grpc_port: args.grpc_port,
        admin_identity: identities[0].1.clone(),
        public_ready: args.public_ready,
    };
    for (index, host) in args.hosts.iter().enumerate() {
        let host_dir = dir.join(host);
        make_private_dir(&host_dir)?;
        let mut dns = vec![host.clone()];
        dns.extend(extra_dns.iter().filter(|d| *d != host).cloned());
        for (stem, client_auth) in [("server", false), ("node", true)] {
            let request = LeafRequest {
                common_name: host.clone(),
                dns: dns.clone(),
                ips: ips.clone(),
                client_auth,
            };
            let cert = host_dir.join(format!("{stem}.crt"));
            let key = host_dir.join(format!("{stem}.key"));
            ensure_leaf(&ca, &ca_pem, fresh_ca, &request, &cert, &key, note)?;
        }
        write_public(&host_dir.join("ca.crt"), &ca_pem)?;
        write_private(&host_dir.join("root.key"), &root_bytes)?;
        write_public(
            &host_dir.join("node.yaml"),
            node_yaml(&layout, index).as_bytes(),
        )?;
    }
    note(format!(
        "wrote node.yaml for {} in {}",
        args.hosts.join(", "),
        dir.display()
    ));
    Ok(identities)
}

fn load_ca(cert: &Path, key: &Path) -> Result<CertificateAuthority> {
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read {} ({e}); it is needed to issue certificates: restore it, or delete \
                 {} to start a new cluster",
                path.display(),
                cert.parent().unwrap_or(cert).display()
            ))
        })
    };
    CertificateAuthority::load(&read(cert)?, &read(key)?)
        .map_err(|e| Error::Config(format!("{}: {e}", cert.display())))
}

/// Issues `cert` (over `key` when that is usable) unless the pair is fine.
fn ensure_leaf(
    ca: &CertificateAuthority,
    ca_pem: &[u8],
    fresh_ca: bool,
    request: &LeafRequest,
    cert: &Path,
    key: &Path,
    note: &mut dyn FnMut(String),
) -> Result<()> {
    let old_key = fs::read_to_string(key).ok();
    // Some(""): made for the first time; Some(reason): issued again.
    let why = match (fs::read(cert), &old_key) {
        (Err(_), _) | (_, None) => Some(String::new()),
        _ if fresh_ca => Some("the CA is new".to_string()),
        (Ok(cert_pem), Some(key_pem)) => renewal_reason(&cert_pem, key_pem.as_bytes(), ca_pem)
            .or_else(|| names_differ(&cert_pem, request)),
    };
    let Some(why) = why else {
        return Ok(());
    };
    // Keep the key when it still parses: peers know a node by it.
    let reuse = old_key.filter(|pem| key_is_usable(pem));
    let issued = ca.issue(request, reuse.as_deref())?;
    write_private(key, issued.key_pem.as_bytes())?;
    write_public(cert, issued.cert_pem.as_bytes())?;
    note(if why.is_empty() {
        format!("made {}", cert.display())
    } else {
        format!("issued {} again: {why}", cert.display())
    });
    Ok(())
}

/// Why a certificate must be issued again because its subject alternative
/// names are not the ones asked for, or `None` when they are.
fn names_differ(cert_pem: &[u8], request: &LeafRequest) -> Option<String> {
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let mut have = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    have.insert(dns.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    have.insert(ip.map_or_else(|| hex::encode(bytes), |ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let want: BTreeSet<String> = request
        .dns
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .chain(request.ips.iter().map(IpAddr::to_string))
        .collect();
    (have != want).then(|| {
        format!(
            "it names {} instead of {}",
            have.into_iter().collect::<Vec<_>>().join(", "),
            want.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The text of host `index`'s node.yaml (0-based: host 0 bootstraps).
fn node_yaml(layout: &Layout, index: usize) -> String {
    let host = &layout.hosts[index];
    let path = |name: &str| quoted(&layout.config_dir.join(name).to_string_lossy());
    let mut y = String::new();
    // `write!` to a String cannot fail; the results are ignored for brevity.
    let _ = writeln!(
        y,
        "# {host}: node {n} of {total}. Written by `kes-cluster scaffold` on every run: edits here \
         are overwritten.\n\
         # Run it with: kes-node --config {config} --data-dir DATA_DIR",
        n = index + 1,
        total = layout.hosts.len(),
        config = layout.config_dir.join("node.yaml").display(),
    );
    let _ = writeln!(y, "address: 0.0.0.0:{}", layout.port);
    let _ = writeln!(y, "admin:\n  identity: {}", quoted(&layout.admin_identity));
    let _ = writeln!(
        y,
        "tls:\n  key: {}\n  cert: {}",
        path("server.key"),
        path("server.crt")
    );
    if layout.public_ready {
        let _ = writeln!(
            y,
            "api:\n  # Health checks ask without a client certificate; every other route needs one.\n  \
             /v1/ready:\n    skip_auth: true"
        );
    }
    let _ = writeln!(y, "seal:\n  file:\n    path: {}", path("root.key"));
    let _ = writeln!(
        y,
        "cluster:\n  grpc:\n    listen: 0.0.0.0:{grpc}\n    advertise: {}\n  \
         tls:\n    cert: {}\n    key: {}\n    ca: {}",
        quoted(&format!("{host}:{grpc}", grpc = layout.grpc_port)),
        path("node.crt"),
        path("node.key"),
        path("ca.crt"),
        grpc = layout.grpc_port,
    );
    if index == 0 {
        let _ = writeln!(
            y,
            "  # Creates the cluster on an empty data dir, unless the peers below already form\n  \
             # one (then it refuses); on later starts it just starts.\n  \
             bootstrap: true"
        );
    }
    if layout.hosts.len() > 1 {
        let _ = writeln!(y, "  join:");
        for (_, other) in layout.hosts.iter().enumerate().filter(|(i, _)| *i != index) {
            let _ = writeln!(
                y,
                "    - {}",
                quoted(&format!("https://{other}:{}", layout.port))
            );
        }
    }
    y
}

/// A YAML double-quoted scalar (a JSON string is one), so no value is ever
/// misread as a number, boolean, comment or mapping.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    fn args(dir: &Path, extra: &[&str]) -> ScaffoldArgs {
        let cli = super::super::Cli::try_parse_from(
            ["kes-cluster", "scaffold", "--dir"]
                .into_iter()
                .chain([dir.to_str().unwrap()])
                .chain(extra.iter().copied()),
        )
        .unwrap();
        match cli.command {
            super::super::Command::Scaffold(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    fn run_quiet(args: &ScaffoldArgs) -> (Vec<(String, String)>, Vec<String>) {
        check_args(args).unwrap();
        let mut notes = Vec::new();
        let ids = scaffold(args, &parse_sans(&args.sans), &mut |n| notes.push(n)).unwrap();
        (ids, notes)
    }

    fn yaml(path: &Path) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn three_hosts_get_complete_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gen");
        let a = args(
            &dir,
            &[
                "--host",
                "node1,node2",
                "--host",
                "node3",
                "--identity",
                "prometheus",
                "--public-ready",
            ],
        );
        let (ids, notes) = run_quiet(&a);
        assert_eq!(ids.len(), 2);
        assert_eq!(
            (ids[0].0.as_str(), ids[1].0.as_str()),
            ("admin", "prometheus")
        );
        // CA, admin, prometheus, root key, 2 certificates × 3 hosts, the summary.
        assert_eq!(notes.len(), 4 + 6 + 1, "{notes:?}");

        let one = yaml(&dir.join("node1/node.yaml"));
        assert_eq!(one["address"].as_str(), Some("0.0.0.0:7373"));
        assert_eq!(one["admin"]["identity"].as_str(), Some(ids[0].1.as_str()));
        assert_eq!(one["tls"]["cert"].as_str(), Some("/etc/kes/server.crt"));
        assert_eq!(
            one["seal"]["file"]["path"].as_str(),
            Some("/etc/kes/root.key")
        );
        assert_eq!(one["api"]["/v1/ready"]["skip_auth"].as_bool(), Some(true));
        assert_eq!(
            one["cluster"]["grpc"]["listen"].as_str(),
            Some("0.0.0.0:7473")
        );
        assert_eq!(
            one["cluster"]["grpc"]["advertise"].as_str(),
            Some("node1:7473")
        );
        assert_eq!(
            one["cluster"]["tls"]["ca"].as_str(),
            Some("/etc/kes/ca.crt")
        );
        assert_eq!(one["cluster"]["bootstrap"].as_bool(), Some(true));
        // The peers node 1 asks before founding: never a second cluster beside theirs.
        assert_eq!(
            one["cluster"]["join"].as_sequence().map(|s| s.len()),
            Some(2)
        );

        let two = yaml(&dir.join("node2/node.yaml"));
        assert!(two["cluster"]["bootstrap"].is_null());
        let join: Vec<&str> = two["cluster"]["join"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(join, ["https://node1:7373", "https://node3:7373"]);

        // Each host directory is complete, and secrets are private.
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for host in ["node1", "node2", "node3"] {
            for file in ["server.crt", "server.key", "node.crt", "node.key", "ca.crt"] {
                assert!(dir.join(host).join(file).is_file(), "{host}/{file}");
            }
            assert_eq!(
                fs::read(dir.join(host).join("root.key")).unwrap(),
                fs::read(dir.join("root.key")).unwrap()
            );
            assert_eq!(mode(&dir.join(host).join("root.key")), 0o600);
            assert_eq!(mode(&dir.join(host).join("node.key")), 0o600);
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("prometheus.key")), 0o600);

        // Host certificates name the host and the extra SANs, and chain to the CA.
        let cert = fs::read(dir.join("node2/node.crt")).unwrap();
        let want = LeafRequest {
            dns: vec!["node2".into(), "localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            ..LeafRequest::default()
        };
        assert_eq!(names_differ(&cert, &want), None);
        let key = fs::read(dir.join("node2/node.key")).unwrap();
        let ca = fs::read(dir.join("ca.crt")).unwrap();
        assert_eq!(renewal_reason(&cert, &key, &ca), None);
    }

    #[test]
    fn a_second_run_keeps_the_cluster_and_notices_new_names() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["--host", "a,b"]);
        let (first, _) = run_quiet(&a);
        let keep = [
            "ca.crt",
            "admin.crt",
            "root.key",
            "a/node.crt",
            "b/server.key",
        ];
        let read = |names: &[&str]| -> Vec<Vec<u8>> {
            names
                .iter()
                .map(|n| fs::read(tmp.path().join(n)).unwrap())
                .collect()
        };
        let before = read(&keep);
        let (again, notes) = run_quiet(&a);
        assert_eq!(again, first);
        assert_eq!(notes.len(), 1, "only the summary: {notes:?}");
        assert_eq!(read(&keep), before);

        // Another SAN: every certificate is issued again over its old key.
        let key = fs::read(tmp.path().join("a/node.key")).unwrap();
        let (_, notes) = run_quiet(&args(
            tmp.path(),
            &["--host", "a,b", "--san", "kes.example"],
        ));
        assert_eq!(notes.len(), 4 + 1, "{notes:?}");
        assert!(notes[0].contains("again: it names"), "{notes:?}");
        assert_eq!(fs::read(tmp.path().join("a/node.key")).unwrap(), key);
        assert_eq!(read(&keep[..3]), before[..3]);
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let refused = |extra: &[&str]| {
            check_args(&args(tmp.path(), extra))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["--host", "node_1"]).contains("not a host name"));
        assert!(refused(&["--host", "a,b,a"]).contains("given twice"));
        assert!(refused(&["--host", "a", "--identity", "admin"]).contains("clashes"));
        assert!(refused(&["--host", "a", "--identity", "../x"]).contains("letters"));
        assert!(refused(&["--host", "a", "--config-dir", "etc"]).contains("absolute"));
        assert!(refused(&["--host", "a", "--grpc-port", "7373"]).contains("different"));
        assert!(!tmp.path().join("ca.crt").exists());
    }

    #[test]
    fn half_an_identity_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["--host", "a", "--identity", "prom"]);
        run_quiet(&a);
        fs::remove_file(tmp.path().join("prom.key")).unwrap();
        let err = scaffold(&a, &parse_sans(&a.sans), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("prom.key is missing"), "{err}");
    }
}
