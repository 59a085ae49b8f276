//! The key lifecycle of one key name, checked as a register whose value is the key material
//! and its versions.
//!
//! The harness imports keys with material it chose (every value unique), so each answer says
//! which write, if any, it saw: a describe returns the material, a decrypt of a ciphertext made
//! under material `m` succeeds only while the key holds `m` as a version that may decrypt. A
//! create race (several clients importing the same new name) needs nothing more: a second
//! `Created` without a delete between is not linearizable under this register, and
//! [`create_race_winners`] counts the winners for the report's `double_wins`.
//!
//! Versions: an import is version 1 (the harness's material); a rotation adds the next number,
//! which its answer names, so a rotation lost or applied twice shows as a number out of place.
//! A minimum version above 1, or a retirement of the versions below 2, makes the imported
//! material refuse to decrypt: once either is acknowledged, no node may decrypt with it.

use super::Model;
use crate::history::{History, OpId, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key material, as the harness names it (unique per import, e.g. its hex or a tag).
pub type Material = String;

/// The most versions a key retains: the node's default `limits.max_versions`.
pub const MAX_VERSIONS: u32 = 32;

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
    /// Add a version (`PUT /v1/key/rotate`).
    Rotate,
    /// Make versions below this one refuse to decrypt (`PUT /v1/key/min-version`).
    MinVersion(u32),
    /// Delete the versions below this one for good (`PUT /v1/key/retire`).
    Retire(u32),
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
    /// Generate, decrypt, delete or min-version: done.
    Done,
    /// Decrypt: the key exists but no version that may decrypt opens it.
    WrongKey,
    /// Rotate: the new version's number.
    Rotated(u32),
    /// Retire: the oldest version kept.
    Retired(u32),
    /// Rotate, min-version or retire refused as a bad request: too many versions, a minimum
    /// above the newest, or a retirement of the newest.
    Refused,
}

/// A key that exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    /// Version 1's material, which the harness imported.
    pub material: Material,
    /// The newest version.
    pub newest: u32,
    /// The oldest version retained.
    pub oldest: u32,
    /// Versions below this refuse to decrypt (0 or 1: none do).
    pub min_decrypt: u32,
}

impl Held {
    fn imported(material: &Material) -> Held {
        Held {
            material: material.clone(),
            newest: 1,
            oldest: 1,
            min_decrypt: 0,
        }
    }

    /// Whether version 1, the imported material, may decrypt.
    fn first_decrypts(&self) -> bool {
        self.oldest <= 1 && self.min_decrypt <= 1
    }
}

/// The register model: the state is the key, or `None` when absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyRegister;

impl Model for KeyRegister {
    type Input = KeyInput;
    type Output = KeyOutput;
    type State = Option<Held>;

    fn init(&self) -> Self::State {
        None
    }

    fn apply(&self, state: &Self::State, input: &KeyInput) -> (Self::State, KeyOutput) {
        let unchanged = state.clone();
        let Some(held) = state else {
            return match input {
                KeyInput::Import(m) => (Some(Held::imported(m)), KeyOutput::Created),
                _ => (None, KeyOutput::NotFound),
            };
        };
        let changed = |change: &dyn Fn(&mut Held)| {
            let mut next = held.clone();
            change(&mut next);
            Some(next)
        };
        match input {
            KeyInput::Import(_) => (unchanged, KeyOutput::AlreadyExists),
            KeyInput::Describe => (unchanged, KeyOutput::Found(held.material.clone())),
            KeyInput::Generate => (unchanged, KeyOutput::Done),
            KeyInput::Decrypt(wanted) if *wanted == held.material && held.first_decrypts() => {
                (unchanged, KeyOutput::Done)
            }
            KeyInput::Decrypt(_) => (unchanged, KeyOutput::WrongKey),
            KeyInput::Delete => (None, KeyOutput::Done),
            KeyInput::Rotate if held.newest - held.oldest + 1 >= MAX_VERSIONS => {
                (unchanged, KeyOutput::Refused)
            }
            KeyInput::Rotate => (
                changed(&|h| h.newest += 1),
                KeyOutput::Rotated(held.newest + 1),
            ),
            KeyInput::MinVersion(n) if *n > held.newest => (unchanged, KeyOutput::Refused),
            KeyInput::MinVersion(n) => (changed(&|h| h.min_decrypt = *n), KeyOutput::Done),
            KeyInput::Retire(below) if *below > held.newest => (unchanged, KeyOutput::Refused),
            KeyInput::Retire(below) => {
                let oldest = held.oldest.max(*below);
                (changed(&|h| h.oldest = oldest), KeyOutput::Retired(oldest))
            }
        }
    }

    fn is_read_only(&self, input: &KeyInput) -> bool {
        matches!(
            input,
            KeyInput::Describe | KeyInput::Generate | KeyInput::Decrypt(_)
        )
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
        assert_eq!(out, KeyOutput::Created);
        assert_eq!(s.as_ref().map(|h| h.material.as_str()), Some("a"));
        let (s2, out) = m.apply(&s, &KeyInput::Import("b".into()));
        assert_eq!((&s2, out), (&s, KeyOutput::AlreadyExists));
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
        for input in [
            KeyInput::Describe,
            KeyInput::Generate,
            KeyInput::Delete,
            KeyInput::Rotate,
            KeyInput::MinVersion(2),
            KeyInput::Retire(2),
        ] {
            assert_eq!(m.apply(&None, &input), (None, KeyOutput::NotFound));
        }
        assert_eq!(
            m.step(&s, &KeyInput::Describe, Some(&KeyOutput::NotFound)),
            None
        );
        assert_eq!(m.step(&s, &KeyInput::Delete, None), Some(None));
    }

    #[test]
    fn versions_number_in_order_and_take_the_imported_material_away() {
        let m = KeyRegister;
        let decrypt = KeyInput::Decrypt("a".into());
        let (s, _) = m.apply(&None, &KeyInput::Import("a".into()));
        // The newest version cannot be restricted or retired.
        assert_eq!(m.apply(&s, &KeyInput::MinVersion(2)).1, KeyOutput::Refused);
        assert_eq!(m.apply(&s, &KeyInput::Retire(2)).1, KeyOutput::Refused);
        let (s, out) = m.apply(&s, &KeyInput::Rotate);
        assert_eq!(out, KeyOutput::Rotated(2));
        assert_eq!(
            m.step(&s, &KeyInput::Rotate, Some(&KeyOutput::Rotated(2))),
            None,
            "a rotation that repeats a number is not a single copy's"
        );
        assert_eq!(
            m.apply(&s, &decrypt).1,
            KeyOutput::Done,
            "old versions decrypt"
        );
        let (restricted, out) = m.apply(&s, &KeyInput::MinVersion(2));
        assert_eq!(out, KeyOutput::Done);
        assert_eq!(m.apply(&restricted, &decrypt).1, KeyOutput::WrongKey);
        let (undone, _) = m.apply(&restricted, &KeyInput::MinVersion(0));
        assert_eq!(m.apply(&undone, &decrypt).1, KeyOutput::Done);
        let (retired, out) = m.apply(&undone, &KeyInput::Retire(2));
        assert_eq!(out, KeyOutput::Retired(2));
        assert_eq!(m.apply(&retired, &decrypt).1, KeyOutput::WrongKey);
        let (still, out) = m.apply(&retired, &KeyInput::MinVersion(0));
        assert_eq!(out, KeyOutput::Done);
        assert_eq!(m.apply(&still, &decrypt).1, KeyOutput::WrongKey, "for good");
        assert_eq!(
            m.apply(&retired, &KeyInput::Retire(1)).1,
            KeyOutput::Retired(2)
        );
        // At MAX_VERSIONS retained versions a rotation is refused until some are retired.
        let mut full = s;
        for n in 3..=MAX_VERSIONS {
            let (next, out) = m.apply(&full, &KeyInput::Rotate);
            assert_eq!(out, KeyOutput::Rotated(n));
            full = next;
        }
        assert_eq!(m.apply(&full, &KeyInput::Rotate).1, KeyOutput::Refused);
        let (fewer, _) = m.apply(&full, &KeyInput::Retire(2));
        assert_eq!(
            m.apply(&fewer, &KeyInput::Rotate).1,
            KeyOutput::Rotated(MAX_VERSIONS + 1)
        );
    }
}
