//! The key lifecycle of one key name, checked as a register whose value is the key material.
//!
//! The harness imports keys with material it chose (every value unique), so each answer says
//! which write, if any, it saw: a describe returns the material, a decrypt of a ciphertext made
//! under material `m` succeeds only while the key holds `m`. A create race (several clients
//! importing the same new name) needs nothing more: a second `Created` without a delete between
//! is not linearizable under this register, and [`create_race_winners`] counts the winners for
//! the report's `double_wins`.

use super::Model;
use crate::history::{History, OpId, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key material, as the harness names it (unique per import, e.g. its hex or a tag).
pub type Material = String;

/// An operation on one key name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyInput {
    /// Create the key with this material; refused if the name exists.
    Import(Material),
    /// Read the key (its material, or not found).
    Describe,
    /// Generate a DEK under the key: works iff the key exists.
    Generate,
    /// Decrypt a ciphertext made under this material: works iff the key exists and holds it.
    Decrypt(Material),
    /// Delete the key.
    Delete,
}

/// What the cluster answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOutput {
    /// Import: the key was created.
    Created,
    /// Import: "key already exists".
    AlreadyExists,
    /// Describe: the key holds this material.
    Found(Material),
    /// Describe, generate, decrypt or delete: "key does not exist".
    NotFound,
    /// Generate, decrypt or delete: done.
    Done,
    /// Decrypt: the key exists but holds other material (authentication failed).
    WrongKey,
}

/// The register model: the state is the material the key holds, or `None` when absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyRegister;

impl Model for KeyRegister {
    type Input = KeyInput;
    type Output = KeyOutput;
    type State = Option<Material>;

    fn init(&self) -> Self::State {
        None
    }

    fn apply(&self, state: &Self::State, input: &KeyInput) -> (Self::State, KeyOutput) {
        let unchanged = state.clone();
        match (input, state) {
            (KeyInput::Import(m), None) => (Some(m.clone()), KeyOutput::Created),
            (KeyInput::Import(_), Some(_)) => (unchanged, KeyOutput::AlreadyExists),
            (KeyInput::Describe, Some(m)) => (unchanged.clone(), KeyOutput::Found(m.clone())),
            (KeyInput::Generate, Some(_)) => (unchanged, KeyOutput::Done),
            (KeyInput::Decrypt(wanted), Some(held)) if wanted == held => {
                (unchanged, KeyOutput::Done)
            }
            (KeyInput::Decrypt(_), Some(_)) => (unchanged, KeyOutput::WrongKey),
            (KeyInput::Delete, Some(_)) => (None, KeyOutput::Done),
            (KeyInput::Describe | KeyInput::Generate | KeyInput::Decrypt(_), None)
            | (KeyInput::Delete, None) => (None, KeyOutput::NotFound),
        }
    }

    fn is_read_only(&self, input: &KeyInput) -> bool {
        !matches!(input, KeyInput::Import(_) | KeyInput::Delete)
    }
}

/// The imports acknowledged as `Created`, per key name. In a create race (no deletes), a name
/// with more than one winner is a double win.
pub fn create_race_winners(history: &History<KeyInput, KeyOutput>) -> BTreeMap<String, Vec<OpId>> {
    let mut winners: BTreeMap<String, Vec<OpId>> = BTreeMap::new();
    for op in &history.ops {
        if let (KeyInput::Import(_), Outcome::Ok(KeyOutput::Created)) = (&op.input, &op.outcome) {
            winners.entry(op.key.clone()).or_default().push(op.id);
        }
    }
    winners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_answers_like_a_single_copy() {
        let m = KeyRegister;
        let (s, out) = m.apply(&None, &KeyInput::Import("a".into()));
        assert_eq!((s.as_deref(), out), (Some("a"), KeyOutput::Created));
        let (s2, out) = m.apply(&s, &KeyInput::Import("b".into()));
        assert_eq!((s2.as_deref(), out), (Some("a"), KeyOutput::AlreadyExists));
        assert_eq!(
            m.apply(&s, &KeyInput::Describe).1,
            KeyOutput::Found("a".into())
        );
        assert_eq!(m.apply(&s, &KeyInput::Generate).1, KeyOutput::Done);
        assert_eq!(
            m.apply(&s, &KeyInput::Decrypt("a".into())).1,
            KeyOutput::Done
        );
        assert_eq!(
            m.apply(&s, &KeyInput::Decrypt("b".into())).1,
            KeyOutput::WrongKey
        );
        assert_eq!(m.apply(&s, &KeyInput::Delete), (None, KeyOutput::Done));
        for input in [KeyInput::Describe, KeyInput::Generate, KeyInput::Delete] {
            assert_eq!(m.apply(&None, &input), (None, KeyOutput::NotFound));
        }
        assert_eq!(
            m.step(&s, &KeyInput::Describe, Some(&KeyOutput::NotFound)),
            None
        );
        assert_eq!(m.step(&s, &KeyInput::Delete, None), Some(None));
    }
}
