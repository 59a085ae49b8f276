//! The audit and error event buses behind `/v1/log/audit` and `/v1/log/error`.

use serde::Serialize;
use tokio::sync::broadcast;

/// One audit record in KES's JSON shape.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 time of the response.
    pub time: String,
    /// The request.
    pub request: AuditRequest,
    /// The response.
    pub response: AuditResponse,
}

/// The request part of an audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRequest {
    /// Client IP.
    pub ip: String,
    /// Request path.
    pub path: String,
    /// Client identity (empty when there was none).
    pub identity: String,
}

/// The response part of an audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditResponse {
    /// HTTP status.
    pub code: u16,
    /// Time to answer, in milliseconds, as the current KES server sends it.
    pub time: u64,
}

/// Fan-out of audit and error events to stream subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    audit: broadcast::Sender<String>,
    error: broadcast::Sender<String>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus whose subscribers may lag by up to 1024 events before they lose some.
    pub fn new() -> Self {
        EventBus {
            audit: broadcast::channel(1024).0,
            error: broadcast::channel(1024).0,
        }
    }

    /// Publishes an audit event, encoded as one JSON line (an [`AuditEvent`]).
    pub fn audit(&self, line: &str) {
        if self.audit.receiver_count() > 0 {
            let _ = self.audit.send(line.to_owned());
        }
    }

    /// Publishes an error-log line as `{"message": ...}`.
    pub fn error(&self, message: &str) {
        if self.error.receiver_count() > 0 {
            let line = serde_json::json!({ "message": message }).to_string();
            let _ = self.error.send(line);
        }
    }

    /// Whether anyone listens to the audit stream (so callers can skip building events).
    pub fn has_audit_subscribers(&self) -> bool {
        self.audit.receiver_count() > 0
    }

    /// A receiver of audit lines.
    pub fn subscribe_audit(&self) -> broadcast::Receiver<String> {
        self.audit.subscribe()
    }

    /// A receiver of error lines.
    pub fn subscribe_error(&self) -> broadcast::Receiver<String> {
        self.error.subscribe()
    }
}

/// A `tracing` layer that copies WARN and ERROR events to the error stream, so
/// `/v1/log/error` shows what stderr shows.
#[derive(Debug, Clone)]
pub struct ErrorLogLayer {
    bus: EventBus,
}

impl ErrorLogLayer {
    /// A layer feeding `bus`.
    pub fn new(bus: EventBus) -> Self {
        ErrorLogLayer { bus }
    }
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        self.bus.error(&format!(
            "{} {}",
            event.metadata().level(),
            v.0.trim_start()
        ));
    }
}
