//! `/v1/log/error` and `/v1/log/audit`: ndjson streams that last until the client leaves.
//!
//! Upstream KES swallows every write to these streams (issue #480); here each event is written
//! and flushed as it happens. A subscriber that falls behind loses events instead of slowing
//! requests down.

use super::{ApiError, Req};
use crate::server::Node;
use axum::body::Body;
use axum::http::{HeaderValue, Response, header};
use bytes::Bytes;
use prometheus::Counter;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast;

type Answer = Result<Response<Body>, ApiError>;

fn stream(mut rx: broadcast::Receiver<String>, counter: Counter) -> Response<Body> {
    let events = async_stream(
        move |tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>| async move {
            loop {
                match rx.recv().await {
                    Ok(mut line) => {
                        line.push('\n');
                        if tx.send(Ok(Bytes::from(line))).await.is_err() {
                            return;
                        }
                        counter.inc();
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(events));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Runs `producer` in a task and exposes what it sends as a stream; the task ends when the
/// client disconnects and the stream is dropped.
fn async_stream<F, Fut>(producer: F) -> impl futures_core::Stream<Item = Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    ReceiverStream(rx)
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `GET /v1/log/error`
pub(super) async fn error(node: Arc<Node>, _: Req) -> Answer {
    Ok(stream(
        node.events.subscribe_error(),
        node.metrics.log_error_events.clone(),
    ))
}

/// `GET /v1/log/audit`
pub(super) async fn audit(node: Arc<Node>, _: Req) -> Answer {
    Ok(stream(
        node.events.subscribe_audit(),
        node.metrics.log_audit_events.clone(),
    ))
}
