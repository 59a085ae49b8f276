//! Applying a group-committed entry: several clients' commands in one log entry.

use super::super::command::{Command, Outcome};
use super::super::store::{State, StateError};
use super::pending::joins_a_run;

impl State {
    /// Applies the commands of a batch entry at `index`, in order, each as [`State::apply`]
    /// would apply it alone: authorised against the state the commands before it left,
    /// deduplicated by its own request id, with its own outcome.
    ///
    /// A run of key creates and deletes commits at once (`pending.rs`), journaled
    /// (`journal.rs`); any other command commits in its own transaction. Only the last write
    /// carries `marks` (the Raft layer's record that the entry is applied). A crash in the
    /// middle therefore has the entry applied again at start: the commands already applied
    /// find their request ids in the deduplication table and return their first outcomes, so
    /// none is applied twice.
    pub fn apply_batch(
        &self,
        index: u64,
        commands: &[Command],
        marks: &[(&[u8], Vec<u8>)],
    ) -> Result<Vec<Outcome>, StateError> {
        self.apply_batch_in_window(index, commands, marks, super::DEDUP_WINDOW)
    }

    /// [`State::apply_batch`], remembering request ids for `window` log indexes.
    pub(super) fn apply_batch_in_window(
        &self,
        index: u64,
        commands: &[Command],
        marks: &[(&[u8], Vec<u8>)],
        window: u64,
    ) -> Result<Vec<Outcome>, StateError> {
        if commands.is_empty() {
            self.record_applied(index, marks)?;
            return Ok(Vec::new());
        }
        let mut outcomes = Vec::with_capacity(commands.len());
        let mut start = 0;
        while start < commands.len() {
            let joined = match joins_a_run(&commands[start].op) {
                true => commands[start + 1..]
                    .iter()
                    .take_while(|c| joins_a_run(&c.op))
                    .count(),
                false => 0,
            };
            let len = 1 + joined;
            let end = start + len;
            let run: Vec<&Command> = commands[start..end].iter().collect();
            let marks = if end == commands.len() { marks } else { &[] };
            // Positions past u32::MAX cannot occur: an entry is at most MAX_ENTRY_BYTES.
            let position = u32::try_from(start).unwrap_or(u32::MAX);
            outcomes.extend(self.apply_run(index, position, &run, marks, window)?);
            start = end;
        }
        Ok(outcomes)
    }
}
