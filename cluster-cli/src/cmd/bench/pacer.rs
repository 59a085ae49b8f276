//! The open loop's clock: a task that hands each worker its requests' due times, at those
//! times, woken by a timer precise to microseconds (`fine_timer.rs`).
//!
//! Why not `tokio::time::sleep_until` in each worker: its sleeps end 0 to 2 ms late, and a
//! request's latency is counted from its due time, so it carried that lateness, which was the
//! bench's own: at a quarter of the peak rate, decrypts the server answers in about 0.1 ms were
//! reported at p50 1.3 ms, and the requests left in bursts, once a millisecond.
//!
//! The schedule: slot k (from 0) is due at `start + k / rate` and goes to worker `k mod conns`,
//! so each worker sends once every `conns / rate`, and the workers are spread evenly over it.
//! A worker that is behind (an answer came after its next due time) finds its due times
//! queued, and counts each request from its own due time: a slow server cannot hide its queue
//! (no coordinated omission).

use super::fine_timer::FineTimer;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The due times of one worker's requests, in order; the channel closes at the run's end.
pub(super) type Dues = UnboundedReceiver<Instant>;

/// Starts the clock for `conns` workers sharing `rate` requests per second from `start` until
/// `end` (no request is due at or after `end`), on the current runtime. Returns each worker's
/// due times.
pub(super) fn start(
    rate: u64,
    conns: usize,
    start: Instant,
    end: Instant,
) -> std::io::Result<Vec<Dues>> {
    let timer = FineTimer::new()?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..conns).map(|_| unbounded_channel()).unzip();
    tokio::spawn(async move {
        if let Err(e) = release(&timer, rate, &senders, start, end).await {
            // The workers' channels close with the senders: the run ends early, and says why.
            eprintln!("the bench's clock stopped: {e}");
        }
    });
    Ok(receivers)
}

/// The due time of slot `k`. Computed from `start` for every slot, so rounding never adds up.
fn due(start: Instant, rate: u64, k: u64) -> Instant {
    start + Duration::from_secs_f64(k as f64 / rate as f64)
}

/// The clock wakes at most once per this long: each wake-up costs the machine the bench shares
/// with the server, and waking for every slot cost more than the server under test at high
/// rates. So a slot leaves up to this much after it is due (and that lateness is in its
/// latency).
const QUANTUM: Duration = Duration::from_micros(250);

/// Sleeps until the next slot is due (at least [`QUANTUM`] after the last wake-up) and hands
/// every slot due by then to its worker, so a late wake-up sends what is owed rather than
/// falling behind. Returns at `end`, dropping the senders, which ends the workers once they
/// have sent what they hold.
async fn release(
    timer: &FineTimer,
    rate: u64,
    workers: &[UnboundedSender<Instant>],
    start: Instant,
    end: Instant,
) -> std::io::Result<()> {
    let mut k = 0u64;
    // As if it had woken a quantum before the start, so the first slot leaves when it is due.
    let mut woke = start.checked_sub(QUANTUM).unwrap_or(start);
    loop {
        let next = due(start, rate, k);
        if next >= end {
            return Ok(());
        }
        timer.sleep_until(next.max(woke + QUANTUM)).await?;
        let now = Instant::now();
        woke = now;
        loop {
            let at = due(start, rate, k);
            if at > now || at >= end {
                break;
            }
            let worker = &workers[(k % workers.len() as u64) as usize];
            // A worker that is gone (its task ended) needs no more due times.
            let _ = worker.send(at);
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_worker_gets_its_share_of_slots_in_order_and_none_before_it_is_due() {
        let (rate, conns) = (4_000u64, 4usize);
        let t0 = Instant::now();
        let end = t0 + Duration::from_millis(250);
        let receivers = start(rate, conns, t0, end).unwrap();
        let gap = Duration::from_secs_f64(conns as f64 / rate as f64);
        let mut total = 0;
        for (w, mut rx) in receivers.into_iter().enumerate() {
            let mut last: Option<Instant> = None;
            while let Some(at) = rx.recv().await {
                assert!(at < end, "worker {w}: a slot due at or after the end");
                assert!(at >= t0);
                if let Some(last) = last {
                    let step = at - last;
                    // Slots are computed from the start: steps differ from the gap by rounding only.
                    assert!(
                        step.abs_diff(gap) < Duration::from_micros(2),
                        "worker {w}: step {step:?}, gap {gap:?}"
                    );
                } else {
                    assert!(at - t0 < gap, "worker {w} starts after a whole gap");
                }
                last = Some(at);
                total += 1;
            }
        }
        // 250 ms at 4,000/s: slots 0..=999 (slot 1000 is due at the end itself).
        assert_eq!(total, 1000);
    }

    #[tokio::test]
    async fn no_slot_is_released_before_it_is_due() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_millis(100);
        let (tx, mut rx) = unbounded_channel();
        let timer = FineTimer::new().unwrap();
        let clock = async move {
            // The sender is dropped when the clock ends, which closes the channel.
            let workers = [tx];
            release(&timer, 10_000, &workers, t0, end).await.unwrap();
        };
        let (_, seen) = tokio::join!(clock, async {
            let mut seen = 0;
            while let Some(at) = rx.recv().await {
                assert!(Instant::now() >= at, "slot released before it was due");
                seen += 1;
            }
            seen
        });
        assert_eq!(seen, 1000);
    }
}
