//! `cache:` — how long unsealed keys stay in a node's memory.

use std::time::Duration;

use super::ConfigError;
use super::duration::show;
use super::reader::Field;

/// The `cache.expiry` settings. The defaults are the ones KES documents (5m, 30s, off), not the
/// ones KES's code ends up with (the contract §3.2: a missing `cache` there means a full flush
/// every 30 s and no unused-eviction at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// `cache.expiry.any`: every cached key is dropped after this long.
    pub any: Duration,
    /// `cache.expiry.unused`: a cached key not used for this long is dropped.
    pub unused: Duration,
    /// `cache.expiry.offline`: kept for compatibility. kes-cluster has no external key store
    /// to be offline from, so a non-zero value has no effect (and draws a warning);
    /// `seal.offline_grace` bounds a seal-provider outage instead.
    pub offline: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            any: Duration::from_secs(5 * 60),
            unused: Duration::from_secs(30),
            offline: Duration::ZERO,
        }
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<CacheConfig, ConfigError> {
    let mut sec = field.section()?;
    let expiry = sec.take("expiry");
    sec.finish()?;
    let mut cache = CacheConfig::default();
    let Some(expiry) = expiry else {
        return Ok(cache);
    };
    let mut sec = expiry.section()?;
    let any = sec.take("any");
    let unused = sec.take("unused");
    let offline = sec.take("offline");
    sec.finish()?;

    // KES reads zero as "use the default"; so do we, but say so, because zero could also be
    // read as "do not cache", which is not what happens.
    for (slot, field) in [(&mut cache.any, any), (&mut cache.unused, unused)] {
        let Some(field) = field else { continue };
        match field.duration()? {
            Some(d) if d.is_zero() => field.warn(format!(
                "`{}` is 0s, which means the default: {}",
                field.path(),
                show(*slot)
            )),
            Some(d) => *slot = d,
            None => {}
        }
    }
    if let Some(field) = offline
        && let Some(d) = field.duration()?
    {
        if !d.is_zero() {
            field.warn(format!(
                "`{}` ({}) has no effect: kes-cluster keeps keys itself, so there is no key store to be offline from; `seal.offline_grace` bounds a seal-provider outage",
                field.path(),
                show(d)
            ));
        }
        cache.offline = d;
    }
    Ok(cache)
}
