//! Connection slots of the KES port: a total cap and a cap per client address.
//!
//! A slot is taken when a TCP connection is accepted, before the TLS handshake, and given back
//! when the connection ends, however it ends. Over either cap the connection is closed at
//! once: waiting in the accept queue would only hand the backlog to whoever floods it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The slots of one listener.
#[derive(Debug, Clone)]
pub(super) struct ConnectionSlots {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_ip: usize,
}

/// One open connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub(super) struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl ConnectionSlots {
    pub(super) fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionSlots {
            counts: Arc::default(),
            max_total,
            max_per_ip,
        }
    }

    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    pub(super) fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.max_total || from_ip >= self.max_per_ip {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        Some(Slot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

/// Descriptors a node needs besides its KES connections: sled, peers, the gRPC port, logs.
const FD_HEADROOM: u64 = 256;

/// Warns when `max_connections` cannot be reached because the process may not open that many
/// files: the cap would then never bite, and accept would fail instead (with `EMFILE`).
pub(super) fn warn_if_above_fd_limit(max_connections: usize) {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_soft_limit(&text))
    else {
        return;
    };
    if max_connections as u64 + FD_HEADROOM > soft {
        tracing::warn!(
            "limits.max_connections is {max_connections}, but this process may open only {soft} files; raise the limit (`ulimit -n`, LimitNOFILE=) or lower limits.max_connections below {}",
            soft.saturating_sub(FD_HEADROOM)
        );
    }
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when unlimited or unknown.
fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Forget the address, so a scan from many addresses leaves no map behind.
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(open_files_soft_limit(text), Some(1024));
        assert_eq!(
            open_files_soft_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(open_files_soft_limit(""), None);
    }

    #[test]
    fn caps_hold_and_slots_come_back() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = slots.take(a).expect("first from a");
        let _a2 = slots.take(a).expect("second from a");
        assert!(slots.take(a).is_none(), "per-address cap");
        let _b1 = slots.take(b).expect("b has its own share");
        assert!(slots.take(b).is_none(), "total cap");
        drop(a1);
        assert!(slots.take(b).is_some(), "a freed slot is usable again");
        assert_eq!(
            slots.counts.lock().unwrap().per_ip.len(),
            2,
            "only open addresses are remembered"
        );
    }
}
