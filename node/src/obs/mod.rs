//! Observability: Prometheus metrics with KES's names, and the audit and error event streams.
//!
//! Events go through tokio broadcast channels, so a slow `/v1/log/*` subscriber only loses
//! events (it lags) and never blocks a request.

mod audit_sinks;
mod events;
mod laps;
mod metrics;

pub use audit_sinks::AuditSinks;
pub use events::{AuditEvent, AuditRequest, AuditResponse, ErrorLogLayer, EventBus};
pub use laps::Laps;
pub use metrics::Metrics;
