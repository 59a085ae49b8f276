//! A clock that keeps counting while the machine is suspended.
//!
//! `std::time::Instant` reads `CLOCK_MONOTONIC` on Linux, which stops during a suspend. A
//! leader whose machine slept through its lease would wake up believing the lease still held,
//! while the others elected a new leader and acknowledged writes it never saw. Leases are
//! therefore dated on `CLOCK_BOOTTIME`, which includes the time spent suspended.

use std::time::Duration;

/// A point on `CLOCK_BOOTTIME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BootInstant(Duration);

impl BootInstant {
    /// Now.
    pub fn now() -> BootInstant {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        BootInstant(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: BootInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The time since `self`.
    pub fn elapsed(self) -> Duration {
        BootInstant::now().saturating_duration_since(self)
    }
}

impl std::ops::Add<Duration> for BootInstant {
    type Output = BootInstant;
    fn add(self, d: Duration) -> BootInstant {
        BootInstant(self.0 + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_never_goes_backwards_and_counts_at_least_what_the_monotonic_clock_counts() {
        let (boot, mono) = (BootInstant::now(), std::time::Instant::now());
        let mut last = boot;
        for _ in 0..1000 {
            let now = BootInstant::now();
            assert!(now >= last);
            last = now;
        }
        std::thread::sleep(Duration::from_millis(5));
        // Read the monotonic clock first: the boot clock, read after it, must be at least as far.
        let mono_elapsed = mono.elapsed();
        assert!(boot.elapsed() >= mono_elapsed);
    }

    #[test]
    fn a_deadline_is_reached_only_after_its_duration() {
        let start = BootInstant::now();
        let deadline = start + Duration::from_secs(3600);
        assert!(BootInstant::now() < deadline);
        assert_eq!(start.saturating_duration_since(deadline), Duration::ZERO);
    }
}
