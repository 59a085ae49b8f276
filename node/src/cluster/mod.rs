//! The write path: how a [`crate::state::Command`] becomes part of the applied state.
//!
//! Today a node commits locally: it assigns the next log index, applies the command and makes
//! it durable before it answers. The replication issue puts openraft behind the same
//! [`Writer::write`] call, so handlers do not change.

pub mod transport;
mod write;

pub use write::{Committed, WriteError, Writer};
