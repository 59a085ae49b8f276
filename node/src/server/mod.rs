//! Running a node: start-up, the HTTPS listener, and the shared request context.

mod activity;
mod body_deadline;
mod conn_threads;
mod data_dir;
mod fd_limit;
mod founding;
mod key_cache;
mod key_change_locks;
mod listener;
mod node;
mod rate_limiter;
mod rotation_schedule;
mod slots;
mod startup;
mod unseal;

pub use key_cache::{KeyCache, LoadedKey};
pub use key_change_locks::KeyChangeLocks;
pub use listener::serve;
pub use node::{CurrentKeys, Node};
pub use rate_limiter::{RateLimiter, RetryAfter};
pub use rotation_schedule::RotationSchedule;
pub use startup::{RUNBOOK, StartError, StartOptions, start};
