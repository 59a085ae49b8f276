//! Revocation, per identity: the set of grants in force, and requests that must be answered by
//! the set as it is at their linearization point.
//!
//! A grant is whatever makes one kind of request allowed for the identity; the harness names it
//! (e.g. `"generate:k1"`) and maps each admin operation onto it: assigning the identity a policy
//! that allows the request, or writing such a policy, is a [`AuthInput::Grant`]; deleting the
//! policy, rewriting it without the rule, or assigning the identity elsewhere is a
//! [`AuthInput::Revoke`]. A request the identity sends is [`AuthInput::Request`] with the grant it
//! needs. An `Allowed` answer to a request that began after a revoke was acknowledged cannot be
//! placed: that is the stale authorisation the harness counts.

use super::Model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An admin change, or a request from the identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthInput {
    /// The grant is now in force (idempotent).
    Grant(String),
    /// The grant is no longer in force (idempotent).
    Revoke(String),
    /// A request that needs this grant.
    Request(String),
}

/// What the cluster answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutput {
    /// Grant or revoke: acknowledged.
    Done,
    /// Request: authorised.
    Allowed,
    /// Request: refused (403).
    Denied,
}

/// The revocation model: the state is the set of grants in force.
#[derive(Clone, Copy, Debug, Default)]
pub struct Revocation;

impl Model for Revocation {
    type Input = AuthInput;
    type Output = AuthOutput;
    type State = BTreeSet<String>;

    fn init(&self) -> Self::State {
        BTreeSet::new()
    }

    fn apply(&self, state: &Self::State, input: &AuthInput) -> (Self::State, AuthOutput) {
        let mut next = state.clone();
        let output = match input {
            AuthInput::Grant(g) => {
                next.insert(g.clone());
                AuthOutput::Done
            }
            AuthInput::Revoke(g) => {
                next.remove(g);
                AuthOutput::Done
            }
            AuthInput::Request(g) if state.contains(g) => AuthOutput::Allowed,
            AuthInput::Request(_) => AuthOutput::Denied,
        };
        (next, output)
    }

    fn is_read_only(&self, input: &AuthInput) -> bool {
        matches!(input, AuthInput::Request(_))
    }
}
