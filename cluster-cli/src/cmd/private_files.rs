//! Writing the files of a cluster directory: private ones (keys) with mode 0600 in 0700
//! directories, public ones (certificates, configs) as usual. Shared by `dev` and `scaffold`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use kes_cluster::{Error, Result, identity_of_cert_pem, new_identity};

/// Creates `dir` (and parents) with mode 0700; an existing one is left as is.
pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::file("create directory", dir, e))
}

/// 32 random bytes, mode 0600, never over an existing file: replacing a root
/// key would make every sealed record unreadable.
pub(crate) fn create_root_key(path: &Path) -> Result<()> {
    let key: [u8; 32] = rand::random();
    let io = |e| Error::file("write", path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(&key).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Writes a secret file with mode 0600, also tightening an existing one.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |e| Error::file("write", path, e);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Writes a file anyone may read (certificates, configs).
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::file("write", path, e))
}

/// `DIR/NAME.crt` and `DIR/NAME.key`, made when both are missing; returns
/// the KES identity. When only one of them exists, the error says what is missing and `fix`.
pub(crate) fn ensure_identity(
    dir: &Path,
    name: &str,
    fix: &str,
    note: &mut dyn FnMut(String),
) -> Result<String> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (false, false) => {
            new_identity(name, dir)?;
            note(format!("made the {name} identity {}", cert.display()));
        }
        (has_cert, _) => {
            let (present, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            return Err(Error::Config(format!(
                "{} exists but {} is missing: restore it, or {fix}",
                present.display(),
                missing.display()
            )));
        }
    }
    let pem = fs::read(&cert).map_err(|e| Error::file("read", &cert, e))?;
    identity_of_cert_pem(&pem).map_err(|e| Error::Config(format!("{}: {e}", cert.display())))
}
