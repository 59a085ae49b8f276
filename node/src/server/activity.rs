//! Requests in flight on one connection, so an idle connection can be told from a busy one.
//!
//! hyper bounds an HTTP/1 request head, but nothing bounds a connection that simply says
//! nothing: after the handshake, between keep-alive requests, or on h2 (whose keep-alive pings
//! a silent client answers happily). A connection with no request in flight is closed once it
//! has been idle too long; a request counts as in flight until its response body is dropped,
//! so a long log stream keeps its connection.

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The requests of one connection.
#[derive(Debug)]
pub(super) struct Activity {
    open: AtomicUsize,
    /// When the last request ended, or `None` before the first one started.
    last_end: Mutex<Option<Instant>>,
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            last_end: Mutex::new(None),
        })
    }

    /// Marks a request as started.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::SeqCst);
        // A started request also counts as "the connection said something".
        *self.last_end.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        InFlight(self.clone())
    }

    /// Whether no request is in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.open.load(Ordering::SeqCst) == 0
    }

    /// Completes once nothing has been in flight for too long: `first` from now until the
    /// first request starts (a client that connects and never asks), `between` afterwards.
    pub(super) async fn idle(&self, first: Duration, between: Duration) {
        let called = Instant::now();
        loop {
            let wait = if self.open.load(Ordering::SeqCst) > 0 {
                between
            } else {
                let since = *self.last_end.lock().unwrap_or_else(PoisonError::into_inner);
                let (from, limit) = match since {
                    None => (called, first),
                    Some(t) => (t, between),
                };
                match limit.checked_sub(from.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .last_end
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until the body is done with.
pub(super) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub(super) fn wrap(inner: Body, in_flight: InFlight) -> Body {
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

    #[tokio::test]
    async fn idle_waits_for_the_last_request_to_end() {
        let a = Activity::new();
        let ms = Duration::from_millis;
        // Never asked anything: idle after `first`.
        let t0 = Instant::now();
        a.idle(ms(100), ms(10_000)).await;
        assert!(t0.elapsed() >= ms(100) && t0.elapsed() < ms(2_000));
        // A request in flight keeps the connection, however long it takes.
        let req = a.begin();
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.idle(ms(100), ms(200)).await })
        };
        tokio::time::sleep(ms(800)).await;
        assert!(!waiter.is_finished(), "busy is not idle");
        let ended = Instant::now();
        drop(req);
        waiter.await.unwrap();
        assert!(
            ended.elapsed() >= ms(200),
            "idle only `between` after the request ended"
        );
    }
}
