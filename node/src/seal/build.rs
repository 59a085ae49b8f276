//! Builds a node's seals from the `seal:` section of its config.

use super::{
    AwsKmsRootKey, FailedSeal, FileRootKey, FileSeal, KesRootKey, Pkcs11RootKey, ProviderError,
    RootKeyProvider, Seals,
};
use crate::config::{Pkcs11Token, SealConfig, SealProvider};
use std::path::Path;
use std::sync::Arc;

/// The seals of `config`, in order. With `dev_root`, a file root key in the data dir is used
/// (and made) when the config names no seal. A `file` seal whose key file is unusable stops
/// start-up; other seals that cannot be set up (wrong PIN, provider down) become
/// [`FailedSeal`]s, so the node starts sealed and says why.
pub async fn build_seals(
    config: &SealConfig,
    dev_root: Option<&Path>,
    data_dir: &Path,
) -> Result<Seals, String> {
    let mut providers: Vec<Arc<dyn RootKeyProvider>> = Vec::new();
    if config.providers.is_empty() {
        let Some(path) = dev_root else {
            return Err("no seal configured: add e.g. `seal: {file: {path: /etc/kes/root.key}}` (outside the data dir), or use --dev".into());
        };
        if !path.exists() {
            FileRootKey::create(path).map_err(|e| e.to_string())?;
        }
        providers.push(Arc::new(FileSeal::new(path).map_err(|e| e.to_string())?));
        return Ok(Seals::new(providers));
    }
    for p in &config.providers {
        let built: Result<Arc<dyn RootKeyProvider>, (String, ProviderError)> = match p {
            SealProvider::File { path } => {
                if dev_root.is_none() {
                    ensure_outside(path, data_dir)?;
                }
                providers.push(Arc::new(FileSeal::new(path).map_err(|e| e.to_string())?));
                continue;
            }
            SealProvider::Pkcs11 {
                module,
                token,
                pin_env,
                key_label,
            } => {
                let id = format!(
                    "pkcs11:{}/{key_label}",
                    match token {
                        Pkcs11Token::Label(l) => l.clone(),
                        Pkcs11Token::Slot(s) => format!("slot-{s}"),
                    }
                );
                let (module, token, pin_env, key_label) = (
                    module.clone(),
                    token.clone(),
                    pin_env.clone(),
                    key_label.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    Pkcs11RootKey::open(&module, &token, &pin_env, &key_label)
                })
                .await
                .map_err(|e| e.to_string())?
                .map(|k| Arc::new(k) as Arc<dyn RootKeyProvider>)
                .map_err(|e| (id, e))
            }
            SealProvider::Kes {
                endpoint,
                cert,
                key,
                ca,
                key_name,
            } => KesRootKey::new(endpoint, cert, key, ca.as_deref(), key_name)
                .map(|k| Arc::new(k) as Arc<dyn RootKeyProvider>)
                .map_err(|e| (KesRootKey::id_for(endpoint, key_name), e)),
            SealProvider::AwsKms {
                endpoint,
                region,
                key_id,
            } => AwsKmsRootKey::new(endpoint.as_deref(), region, key_id)
                .map(|k| Arc::new(k) as Arc<dyn RootKeyProvider>)
                .map_err(|e| (format!("aws-kms:{region}/{key_id}"), e)),
        };
        match built {
            Ok(p) => providers.push(p),
            Err((id, e)) => {
                tracing::error!("seal {id} cannot be used: {e}");
                providers.push(Arc::new(FailedSeal::new(id, e)));
            }
        }
    }
    Ok(Seals::new(providers))
}

/// A backup of the data dir alone must reveal nothing, so a file root key lives elsewhere.
fn ensure_outside(root_key: &Path, data_dir: &Path) -> Result<(), String> {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .map(|a| std::fs::canonicalize(&a).unwrap_or(a))
            .unwrap_or_else(|_| p.to_owned())
    };
    if abs(root_key).starts_with(abs(data_dir)) {
        return Err(format!(
            "the root key {} is inside the data dir {}: move it out, so that a backup of the data alone reveals nothing",
            root_key.display(),
            data_dir.display()
        ));
    }
    Ok(())
}
