//! Sequential specifications that the checker holds a history to, one per partition (key name
//! or identity).
//!
//! A model is deterministic: from a state, an input gives exactly one next state and one
//! answer ([`Model::apply`]). An operation with a known answer can be placed at a point only if
//! the model gives that same answer there; an operation with an unknown outcome (`info`) can be
//! placed anywhere after its invoke, taking whatever answer the model gives. States are small,
//! hashable values so that the checker can remember which (placed set, state) pairs it has
//! already explored.

mod key_register;
mod revocation;

pub use key_register::{KeyInput, KeyOutput, KeyRegister, Material, create_race_winners};
pub use revocation::{AuthInput, AuthOutput, Revocation};

use std::fmt::Debug;
use std::hash::Hash;

/// A deterministic sequential specification of one partition.
pub trait Model {
    /// What a client asks. (Equal inputs are interchangeable: the checker places equal
    /// unknown operations in invoke order only.)
    type Input: Debug + Eq + Hash;
    /// What the cluster answers.
    type Output: Debug + PartialEq;
    /// The partition's state; every partition starts from [`Model::init`].
    type State: Clone + Eq + Hash + Debug;

    /// The state of a partition nobody has touched.
    fn init(&self) -> Self::State;

    /// The state after `input`, and the answer a correct single copy would give.
    fn apply(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);

    /// True if `input` never changes the state (a read). The checker uses it only to shrink a
    /// violation: such an operation with an unknown outcome can simply be left out.
    fn is_read_only(&self, input: &Self::Input) -> bool;

    /// Places `input` at `state` with the recorded answer (`None` = unknown): the next state,
    /// or `None` if the answer is not the one the model gives there.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        let (next, expected) = self.apply(state, input);
        match output {
            Some(seen) if *seen != expected => None,
            _ => Some(next),
        }
    }
}
