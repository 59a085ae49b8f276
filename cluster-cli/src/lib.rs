//! `kes_cluster`: a typed Rust client for the MinIO KES HTTP API over mutual
//! TLS, and the identity helpers behind the `kes-cluster` command line.
//!
//! It talks to any KES-compatible server (kes-cluster nodes, upstream KES)
//! and is what the CLI, the fault-injection tests and the benchmarks use.
//!
//! ```text
//!   kes-cluster (bin) ──▶ client::Client ──HTTP/1.1 + rustls mTLS──▶ KES node
//!                             │
//!   identity ─ SHA-256(SPKI) of a client certificate, new client certificates
//!   pki      ─ a private CA for local clusters: server and node certificates
//! ```
//!
//! Non-features: no HTTP/2 (one keep-alive HTTP/1.1 connection per
//! concurrent request is enough for a CLI and for tests), no client-side
//! load balancing over several servers, no API-key authentication (API keys
//! can be turned into identities, not yet used to connect).

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod client;
mod error;
pub mod identity;
pub mod pki;

pub use client::{Client, ClientConfig, Response};
pub use error::{Error, Result};
pub use identity::{identity_of_cert_pem, new_identity};

/// Re-exported so callers of [`Client::request`] need no direct `hyper` dependency.
pub use hyper::{HeaderMap, Method};
