//! Connection slots of the KES port: a total cap and a cap per client address.
//!
//! A slot is taken when a TCP connection is accepted, before the TLS handshake, and given back
//! when the connection ends, however it ends. At a cap, the oldest connection with no request
//! in flight (still in its handshake, or idle) is told to close and the new one takes its
//! place: a flood of silent connections then only pushes out its own kind, and a client that
//! is actually asking something gets in. Only when every connection is busy is the new one
//! closed at once; waiting in the accept queue would hand the backlog to whoever floods it.

use super::activity::Activity;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

#[derive(Debug)]
struct Open {
    ip: IpAddr,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    /// Open connections by age (accept order).
    open: BTreeMap<u64, Open>,
    next_id: u64,
}

impl Counts {
    /// Tells the oldest connection with no request in flight (from `ip`, when given) to close,
    /// and counts its slot as free from now on. `false` when every candidate is busy.
    fn evict_oldest_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, o)| ip.is_none_or(|ip| o.ip == ip) && o.activity.is_idle())
            .map(|(id, _)| *id);
        let Some(victim) = victim.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        victim.evict.notify_one();
        self.forget(victim.ip);
        true
    }

    fn forget(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                // Forget the address, so a scan from many addresses leaves no map behind.
                self.per_ip.remove(&ip);
            }
        }
    }
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
    id: u64,
    ip: IpAddr,
    /// The connection's requests; a connection with none in flight may be evicted.
    pub(super) activity: Arc<Activity>,
    /// Notified when the connection must close to make room for a new one.
    pub(super) evicted: Arc<Notify>,
}

impl ConnectionSlots {
    pub(super) fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionSlots {
            counts: Arc::default(),
            max_total,
            max_per_ip,
        }
    }

    /// A slot for a connection from `ip`, evicting an idle connection at a cap; `None` when
    /// a cap is reached and every connection it could evict is busy.
    pub(super) fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        let room = if from_ip >= self.max_per_ip {
            c.evict_oldest_idle(Some(ip))
        } else if c.open.len() >= self.max_total {
            c.evict_oldest_idle(None)
        } else {
            true
        };
        if !room {
            return None;
        }
        let id = c.next_id;
        c.next_id += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        let slot = Slot {
            counts: self.counts.clone(),
            id,
            ip,
            activity: Activity::new(),
            evicted: Arc::new(Notify::new()),
        };
        c.open.insert(
            id,
            Open {
                ip,
                activity: slot.activity.clone(),
                evict: slot.evicted.clone(),
            },
        );
        Some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        // An evicted connection's slot was freed when it was evicted.
        if c.open.remove(&self.id).is_some() {
            c.forget(self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_count(slots: &ConnectionSlots) -> usize {
        slots.counts.lock().unwrap().open.len()
    }

    #[test]
    fn caps_hold_for_busy_connections_and_slots_come_back() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let busy = |s: &Slot| s.activity.begin();
        let a1 = slots.take(a).expect("first from a");
        let a2 = slots.take(a).expect("second from a");
        let _r = (busy(&a1), busy(&a2));
        assert!(slots.take(a).is_none(), "per-address cap, all busy");
        let b1 = slots.take(b).expect("b has its own share");
        let _rb = busy(&b1);
        assert!(slots.take(b).is_none(), "total cap, all busy");
        drop(a1);
        assert!(slots.take(b).is_some(), "a freed slot is usable again");
        assert_eq!(
            slots.counts.lock().unwrap().per_ip.len(),
            2,
            "only open addresses are remembered"
        );
    }

    #[tokio::test]
    async fn at_a_cap_the_oldest_idle_connection_makes_room() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let a2 = slots.take(a).unwrap();
        let _busy = a1.activity.begin();
        // Per-address cap: the idle one of a's connections goes, the busy one stays.
        let a3 = slots.take(a).expect("room made");
        a2.evicted.notified().await;
        assert_eq!(open_count(&slots), 2);
        // Total cap: the oldest idle connection from anyone goes.
        let _b1 = slots.take(b).unwrap();
        let _b2 = slots.take(b).expect("room made");
        a3.evicted.notified().await;
        drop((a2, a3));
        assert_eq!(
            open_count(&slots),
            3,
            "dropping evicted slots frees nothing twice"
        );
    }
}
