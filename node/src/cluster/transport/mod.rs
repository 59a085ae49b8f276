//! The inter-node channel: gRPC (tonic) over mTLS with node certificates from the node CA.
//!
//! tonic's own TLS settings cannot take a custom verifier and do not expose the peer's
//! certificate the way we need, so both ends use our tokio-rustls acceptor and connector
//! (STACK.md). The server side tags every connection with the peer's SPKI hash, which the
//! service checks against the membership.

mod channels;
mod node_cert;
mod node_tls;
mod server;
#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

pub use channels::PeerChannels;
pub use node_cert::{Candidate, NodeCert};
pub use node_tls::NodeTls;
pub use server::{PeerSpki, serve_grpc};
