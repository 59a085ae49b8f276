//! `/v1/log/error` and `/v1/log/audit`: ndjson streams that last until the client leaves.
//!
//! Upstream KES swallows every write to these streams (issue #480); here each event is written
//! and flushed as it happens. A subscriber that falls behind loses events instead of slowing
//! requests down. At most `limits.max_log_streams` streams are open at once: each holds a
//! permit, and the permit and the subscription live inside the response body, so both are
//! released the moment the server drops the body because its client went away.

use super::{ApiError, Req};
use crate::server::Node;
use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use prometheus::Counter;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, broadcast};

type Answer = Result<Response<Body>, ApiError>;

/// What a stream body owns: dropping it unsubscribes and frees the slot.
struct Subscription {
    rx: broadcast::Receiver<String>,
    counter: Counter,
    _slot: OwnedSemaphorePermit,
}

fn stream(node: &Node, rx: broadcast::Receiver<String>, counter: Counter) -> Answer {
    let slot = node.log_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many log streams are open; try again later",
        )
    })?;
    let sub = Subscription {
        rx,
        counter,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        loop {
            match sub.rx.recv().await {
                Ok(mut line) => {
                    line.push('\n');
                    sub.counter.inc();
                    return Some((Ok::<_, Infallible>(Bytes::from(line)), sub));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(events));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// `GET /v1/log/error`
pub(super) async fn error(node: Arc<Node>, _: Req) -> Answer {
    stream(
        &node,
        node.events.subscribe_error(),
        node.metrics.log_error_events.clone(),
    )
}

/// `GET /v1/log/audit`
pub(super) async fn audit(node: Arc<Node>, _: Req) -> Answer {
    stream(
        &node,
        node.events.subscribe_audit(),
        node.metrics.log_audit_events.clone(),
    )
}
