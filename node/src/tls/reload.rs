//! The KES server certificate, replaceable while the node serves: re-read on SIGHUP and every
//! 15 minutes, as KES does (contract §2.2). A handshake picks whichever certificate is current
//! when it starts; connections already open keep theirs. A file that fails to load (half
//! written, wrong key, wrong password) leaves the current certificate in place and is logged,
//! so a botched rotation never takes the port down.

use super::server_config::{ServerTlsOptions, TlsSetupError, load_certs, load_key};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the certificate files are re-read without a SIGHUP.
pub const RELOAD_EVERY: Duration = Duration::from_secs(15 * 60);

/// The current server certificate and where it comes from.
#[derive(Debug)]
pub struct ServerCert {
    opts: ServerTlsOptions,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Loads the certificate and key named by `opts`.
    pub fn load(opts: &ServerTlsOptions) -> Result<ServerCert, TlsSetupError> {
        Ok(ServerCert {
            current: RwLock::new(Arc::new(certified_key(opts)?)),
            opts: opts.clone(),
        })
    }

    /// Re-reads the files. Returns whether the certificate changed; on error the current one
    /// stays.
    pub fn reload(&self) -> Result<bool, TlsSetupError> {
        let fresh = certified_key(&self.opts)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.cert == fresh.cert {
            return Ok(false);
        }
        *current = Arc::new(fresh);
        Ok(true)
    }

    /// The DER of the certificate handshakes present now (its first certificate).
    pub fn current_der(&self) -> Vec<u8> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    /// Reloads on every SIGHUP and every [`RELOAD_EVERY`], until the process ends.
    pub fn spawn_reloader(self: Arc<Self>) {
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = signal(SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.tick().await; // the first tick is immediate; the files were just loaded
            loop {
                let why = match hup.as_mut() {
                    Some(h) => tokio::select! {
                        _ = h.recv() => "SIGHUP",
                        _ = tick.tick() => "periodic check",
                    },
                    None => {
                        tick.tick().await;
                        "periodic check"
                    }
                };
                match self.reload() {
                    Ok(true) => tracing::info!("{why}: loaded a new KES server certificate"),
                    Ok(false) => tracing::debug!("{why}: the KES server certificate is unchanged"),
                    Err(e) => {
                        tracing::warn!("{why}: keeping the current KES server certificate: {e}")
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The chain and key of `opts`, checked to belong together.
fn certified_key(opts: &ServerTlsOptions) -> Result<CertifiedKey, TlsSetupError> {
    let chain = load_certs(&opts.cert, "tls.cert")?;
    let key = load_key(&opts.key, opts.password.as_deref())?;
    CertifiedKey::from_der(chain, key, &super::provider())
        .map_err(|e| TlsSetupError::Rustls(format!("tls.cert and tls.key: {e}")))
}
