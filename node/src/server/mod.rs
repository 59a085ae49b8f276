//! Running a node: start-up, the HTTPS listener, and the shared request context.

mod key_cache;
mod listener;
mod node;
mod startup;
mod unseal;

pub use key_cache::KeyCache;
pub use listener::serve;
pub use node::Node;
pub use startup::{RUNBOOK, StartError, StartOptions, start};
