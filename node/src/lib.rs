//! kes-node: one node of kes-cluster, a drop-in server for the MinIO KES HTTP API.
//!
//! Each node serves the whole KES API over mTLS, so MinIO's KES client, the kes CLI and curl
//! keep working unchanged. Unlike upstream KES, which is a stateless front of an external key
//! store, a node keeps keys, policies, identities and enclaves itself, in a sled state machine
//! that is fed only by [`state::Command`]s. Every secret that reaches disk is sealed under a
//! cluster key, which in turn is wrapped by a root key held outside the data directory.
//!
//! ```text
//!  client ──mTLS──▶ tls ──identity──▶ api (route table) ──▶ auth (policy)
//!                                         │
//!                     reads: state query ─┤─ writes: Command ─▶ writer ─▶ state::apply (sled)
//!                                         │
//!                         crypto ◀── unsealed-key cache ◀── seal (cluster key)
//! ```
//!
//! Non-features: no external key stores (the node *is* the key store), no TLS proxy support
//! (upstream made it dead code in 2023, see the contract §2.4).
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod dev;
pub(crate) mod dir_sync;
#[doc(hidden)]
pub mod fuzzing;
pub mod msgpack;
pub mod obs;
pub mod planted;
pub mod raft;
pub mod seal;
pub mod server;
pub mod state;
pub(crate) mod test_hooks;
pub mod tls;
