//! Applying a group-committed entry: several clients' commands in one log entry.

use super::super::command::{Command, Outcome};
use super::super::store::{State, StateError};

impl State {
    /// Applies the commands of a batch entry at `index`, in order, each as [`State::apply`]
    /// would apply it alone: authorised against the state the commands before it left,
    /// deduplicated by its own request id, with its own outcome.
    ///
    /// Each command commits in its own transaction, and only the last carries `marks` (the
    /// Raft layer's record that the entry is applied). A crash in the middle therefore has the
    /// entry applied again at start: the commands already applied find their request ids in
    /// the deduplication table and return their first outcomes, so none is applied twice.
    pub fn apply_batch(
        &self,
        index: u64,
        commands: &[Command],
        marks: &[(&[u8], Vec<u8>)],
    ) -> Result<Vec<Outcome>, StateError> {
        let Some(last) = commands.len().checked_sub(1) else {
            self.record_applied(index, marks)?;
            return Ok(Vec::new());
        };
        commands
            .iter()
            .enumerate()
            .map(|(i, cmd)| self.apply(index, cmd, if i == last { marks } else { &[] }))
            .collect()
    }
}
