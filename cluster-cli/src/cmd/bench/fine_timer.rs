//! A timer with microsecond precision on the bench's runtime: a Linux `timerfd`, watched by the
//! runtime's own epoll.
//!
//! Why: tokio's timer counts whole milliseconds and rounds a deadline up, and its driver parks
//! with a millisecond timeout, so its sleeps end 0 to 2 ms late. A `timerfd` makes epoll return
//! when it expires, to the nanosecond the kernel can manage, on the runtime's own thread: the
//! tasks the waker wakes run there too, with no hand-over from another thread (a clock thread
//! of its own cost the bench 20–30 % more CPU at the same rate, in context switches).

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

pub(super) struct FineTimer {
    fd: AsyncFd<OwnedFd>,
}

impl FineTimer {
    /// A disarmed timer on the current runtime.
    #[allow(unsafe_code)] // tokio registers a descriptor only unsafely since 1.54 (I/O safety)
    pub(super) fn new() -> io::Result<FineTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the `AsyncFd` owns the `OwnedFd`, which stays open and is never swapped for
        // another until the `AsyncFd` drops it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(FineTimer { fd })
    }

    /// Returns at `at` or soon after (at once if it has passed).
    pub(super) async fn sleep_until(&self, at: Instant) -> io::Result<()> {
        let now = Instant::now();
        if at <= now {
            return Ok(());
        }
        // Relative, so that the clocks of `Instant` and of the timer need not be the same.
        let wait = Timespec::try_from(at - now).map_err(io::Error::other)?;
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let spec = Itimerspec {
            it_interval: zero,
            it_value: wait,
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Reading the count of expirations disarms the readiness until the next expiry.
            match rustix::io::read(self.fd.get_ref(), &mut [0u8; 8]) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn it_never_returns_before_the_time_and_returns_at_once_for_a_time_past() {
        let timer = FineTimer::new().unwrap();
        for micros in [50, 300, 1_000, 2_500] {
            let at = Instant::now() + Duration::from_micros(micros);
            timer.sleep_until(at).await.unwrap();
            assert!(Instant::now() >= at, "{micros} µs: returned early");
        }
        // Re-armed after each expiry, and a past time does not wait for a stale expiry.
        let past = Instant::now();
        timer.sleep_until(past).await.unwrap();
    }
}
