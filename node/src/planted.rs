//! Deliberate bugs for jepsen-lite's self-test (`cargo run -p jepsen-lite -- --self-test`), which
//! must show that the harness catches each of them. They exist only in a build with the
//! `planted-bugs` feature, which nothing but the self-test enables (it builds into its own
//! target directory); `KES_PLANTED_BUG` then chooses one:
//!
//! - `ack-before-commit`: the leader acknowledges a write as soon as it has proposed it, before
//!   a quorum has made it durable (and with a made-up "done" outcome);
//! - `skip-read-index`: reads skip the read barrier, so a node answers from whatever it has
//!   applied;
//! - `serve-past-lease`: a leader's lease never runs out, so a leader cut off from the others
//!   goes on answering reads on its own.

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// `ack-before-commit`.
    AckBeforeCommit,
    /// `skip-read-index`.
    SkipReadIndex,
    /// `serve-past-lease`.
    ServePastLease,
}

impl Bug {
    /// Every planted bug, with the name `KES_PLANTED_BUG` takes.
    pub const ALL: [(Bug, &'static str); 3] = [
        (Bug::AckBeforeCommit, "ack-before-commit"),
        (Bug::SkipReadIndex, "skip-read-index"),
        (Bug::ServePastLease, "serve-past-lease"),
    ];
}

/// Whether `bug` is planted in this process. Always false without the `planted-bugs` feature.
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        static CHOSEN: std::sync::OnceLock<Option<Bug>> = std::sync::OnceLock::new();
        let chosen = CHOSEN.get_or_init(|| {
            let name = std::env::var("KES_PLANTED_BUG").ok()?;
            let bug = Bug::ALL.iter().find(|(_, n)| *n == name).map(|(b, _)| *b);
            eprintln!(
                "PLANTED BUG: {name} ({bug:?}); this build is for jepsen-lite's self-test only"
            );
            bug
        });
        *chosen == Some(bug)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
