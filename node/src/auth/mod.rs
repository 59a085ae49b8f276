//! Authorisation: which identity may call which path.
//!
//! Patterns follow the KES configuration page: a glob per path segment, where `*` matches any
//! run of characters within one segment and `?` exactly one. So `/v1/key/*` allows only the
//! empty key name and `/v1/key/*/*` allows every key operation on every key. Deny patterns are
//! checked before allow patterns, and the admin identity bypasses policies altogether.

mod pattern;
mod policy;

pub use pattern::{PatternError, matches, normalize_path, validate};
pub use policy::Policy;
