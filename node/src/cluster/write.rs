//! The local commit path of a single node.

use crate::state::{Command, Outcome, State, StateError};
use tokio::sync::Mutex;

/// A command that was committed and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The log index it was applied at; sent back as `Kes-Cluster-Index`.
    pub index: u64,
    /// What `apply` decided.
    pub outcome: Outcome,
}

/// Why a write did not commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store failed; the write may or may not be durable.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Serialises commands into the state machine: one index after another.
#[derive(Debug)]
pub struct Writer {
    state: State,
    lock: Mutex<()>,
}

impl Writer {
    /// A writer over `state`.
    pub fn new(state: State) -> Self {
        Writer {
            state,
            lock: Mutex::new(()),
        }
    }

    /// Commits `cmd`: applies it at the next index and makes it durable before returning, so
    /// an acknowledged write survives a crash.
    pub async fn write(&self, cmd: Command) -> Result<Committed, WriteError> {
        let _serial = self.lock.lock().await;
        let index = self.state.applied_index() + 1;
        let outcome = self.state.apply(index, &cmd, &[])?;
        self.state.make_durable().await?;
        Ok(Committed { index, outcome })
    }
}
