//! The KES HTTP API: the route table, the request pipeline, and one file per API group.
//!
//! Handlers hold no state and do no crypto of their own beyond calling `crypto`: they validate
//! input, read the applied state, or build a [`crate::state::Command`] for the writer.

mod bulk_count;
mod cluster;
mod commit;
mod dispatch;
mod enclave;
mod error;
mod founded;
pub(crate) mod fuzzing;
mod handlers;
mod identity;
mod key;
mod key_versions;
mod list;
mod log;
mod names;
mod policy;
mod request;
mod request_id;
mod route;
mod seal;
mod sys;

pub use commit::new_id;
pub use dispatch::{ConnInfo, dispatch};
pub use error::ApiError;
pub use key::create_key_as;
pub use key_versions::{DEFAULT_MAX_VERSIONS, rotate_as};
pub use names::is_valid_name;
pub use request::Req;
pub use request_id::new_request_id;
pub use route::{Auth, Route, default_routes};
pub use sys::{SystemFacts, system_facts};
