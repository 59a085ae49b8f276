//! The journal record of the state's apply (`node/src/state/apply/journal.rs`), as the redo at
//! open reads it from a data dir a crash left behind: the run's log index and its changes
//! (tree name, key, new value or removal).
//!
//! Invariants: no panic and no stack overflow on a tokio worker's stack; a record that reads
//! writes again to a record that reads back and writes again to the same bytes (a fixed
//! point); a refusal names the journal tree, so an operator knows which record stopped the open.
#![no_main]

use kes_node::fuzzing::reencode_journal_record;
use kes_node_fuzz::on_worker_stack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    on_worker_stack(|| match reencode_journal_record(data) {
        Ok(Some(again)) => {
            let twice = reencode_journal_record(&again)
                .expect("a record written from a parsed one reads back");
            assert_eq!(
                twice.as_deref(),
                Some(again.as_slice()),
                "not a fixed point"
            );
        }
        Ok(None) => {}
        Err(why) => assert!(why.contains("apply_journal"), "{why}"),
    });
});
