//! Requests in flight on one connection, so an idle connection can be told from a busy one.
//!
//! hyper bounds an HTTP/1 request head, but nothing bounds a connection that simply says
//! nothing: after the handshake, between keep-alive requests, or on h2 (whose keep-alive pings
//! a silent client answers happily). A connection with no request in flight is closed once it
//! has been idle too long; a request counts as in flight until its response body is dropped,
//! so a long log stream keeps its connection.
//!
//! A client can also keep a request "in flight" by not taking the answer: an h2 client that
//! grants no flow-control window gets its response headers but never its body. So an answer
//! of known size that is still unsent `send_timeout` after it was ready no longer counts as
//! busy: a connection whose every request is stuck that way is closed like an idle one.

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Requests {
    /// Requests in flight, each with `None` while it is being answered (or streams), and
    /// `Some(t)` once an answer of known size waits to be sent: past `t` the client is not
    /// taking it.
    in_flight: HashMap<u64, Option<Instant>>,
    next_id: u64,
    /// When the last request started or ended; `None` before the first one.
    last_change: Option<Instant>,
}

impl Requests {
    fn all_stuck(&self, now: Instant) -> bool {
        self.in_flight.values().all(|d| d.is_some_and(|d| d <= now))
    }
}

/// The requests of one connection.
#[derive(Debug, Default)]
pub(super) struct Activity {
    requests: Mutex<Requests>,
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub(super) struct InFlight {
    activity: Arc<Activity>,
    id: u64,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn requests(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a request as started.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        let mut r = self.requests();
        let id = r.next_id;
        r.next_id += 1;
        r.in_flight.insert(id, None);
        r.last_change = Some(Instant::now());
        InFlight {
            activity: self.clone(),
            id,
        }
    }

    /// Whether no request is in flight, or every one is stuck with a client that does not
    /// take its answer.
    pub(super) fn is_idle(&self) -> bool {
        self.requests().all_stuck(Instant::now())
    }

    /// Completes once the connection has been idle too long: `first` from now until the first
    /// request starts (a client that connects and never asks), `between` afterwards; or as
    /// soon as every request in flight is stuck.
    pub(super) async fn idle(&self, first: Duration, between: Duration) {
        let called = Instant::now();
        loop {
            let wait = {
                let r = self.requests();
                let now = Instant::now();
                if r.in_flight.is_empty() {
                    let (from, limit) = match r.last_change {
                        None => (called, first),
                        Some(t) => (t, between),
                    };
                    match limit.checked_sub(now - from) {
                        Some(left) if !left.is_zero() => left,
                        _ => return,
                    }
                } else if r.all_stuck(now) {
                    return;
                } else {
                    // Look again when the next answer would count as stuck, and at least
                    // every `between`.
                    r.in_flight
                        .values()
                        .flatten()
                        .filter(|d| **d > now)
                        .map(|d| *d - now)
                        .fold(between, Duration::min)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl InFlight {
    /// The answer is ready and has a known size: it counts as stuck if still unsent after
    /// `within`.
    fn sending(&self, within: Duration) {
        let mut r = self.activity.requests();
        if let Some(deadline) = r.in_flight.get_mut(&self.id) {
            *deadline = Some(Instant::now() + within);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut r = self.activity.requests();
        r.in_flight.remove(&self.id);
        r.last_change = Some(Instant::now());
    }
}

/// A response body that keeps its request in flight until the body is done with.
pub(super) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    /// Tracks `inner`. A body of known size must be taken within `send_timeout`; a stream
    /// (unknown size: the log streams) stays busy for as long as it runs.
    pub(super) fn wrap(inner: Body, in_flight: InFlight, send_timeout: Duration) -> Body {
        if inner.size_hint().exact().is_some() {
            in_flight.sending(send_timeout);
        }
        Body::new(TrackedBody {
            inner,
            _in_flight: in_flight,
        })
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test]
    async fn idle_waits_for_the_last_request_to_end() {
        let a = Activity::new();
        // Never asked anything: idle after `first`.
        let t0 = Instant::now();
        a.idle(MS(100), MS(10_000)).await;
        assert!(t0.elapsed() >= MS(100) && t0.elapsed() < MS(2_000));
        // A request in flight keeps the connection, however long it takes.
        let req = a.begin();
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.idle(MS(100), MS(200)).await })
        };
        tokio::time::sleep(MS(800)).await;
        assert!(!waiter.is_finished(), "busy is not idle");
        assert!(!a.is_idle());
        let ended = Instant::now();
        drop(req);
        waiter.await.unwrap();
        assert!(
            ended.elapsed() >= MS(200),
            "idle only `between` after the request ended"
        );
    }

    #[tokio::test]
    async fn an_answer_nobody_takes_stops_counting_as_busy() {
        let a = Activity::new();
        let stuck = a.begin();
        let streaming = a.begin();
        stuck.sending(MS(200));
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.idle(MS(100), MS(300)).await })
        };
        tokio::time::sleep(MS(600)).await;
        assert!(
            !waiter.is_finished(),
            "a stream in flight keeps the connection"
        );
        assert!(!a.is_idle());
        drop(streaming);
        assert!(a.is_idle(), "only the stuck answer is left");
        tokio::time::timeout(MS(2_000), waiter)
            .await
            .expect("idle at once when every answer is stuck")
            .unwrap();
        drop(stuck);
    }
}
