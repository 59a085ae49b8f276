//! A journaled run killed at every step, on real sled on disk, and the runs that must not be
//! journaled.
//!
//! The kill test re-runs itself in a child process (as `raft::state_machine_tests` does), which
//! a failpoint aborts in the middle of a run: once after flushing sled, which leaves on disk the
//! longest prefix of the run's writes a crash there can leave, and once without, which leaves
//! nothing written since the last flush. The parent then opens the store as a restarting node
//! does, applies the entry again if the Raft layer's mark says it was not applied (as Raft
//! replays its log), and compares the whole state with a store that applied the run uncut.

use super::{JOURNAL_TREE, RUN};
use crate::state::dump_view::tree_number;
use crate::state::snapshot::DATA_TREES;
use crate::state::store::open_when_unlocked;
use crate::state::{Command, Op, Outcome, State, StateError, failpoint};
use std::path::Path;
use std::process::Command as Process;

/// Set in the child process: the data dir to apply the run in.
const CHILD_DIR: &str = "KES_JOURNAL_TEST_CHILD_DIR";
/// Set in the child process: abort at the n-th failpoint of the run.
const CHILD_KILL_AT: &str = "KES_JOURNAL_TEST_KILL_AT";
/// Set in the child process: flush sled before aborting.
const CHILD_FLUSH: &str = "KES_JOURNAL_TEST_FLUSH";
/// What the child prints just before it aborts.
const KILLED: &str = "aborting at failpoint";

/// A short deduplication window, so that the run also sweeps the records of the first entries.
const WINDOW: u64 = 2;
/// The `meta` mark the Raft layer writes with an entry's last run: its log index.
const MARK: &[u8] = b"test_applied_log";
/// The run's log index: it follows the entries of [`earlier_entries`].
const RUN_INDEX: u64 = 4;

/// A command with a request id and creation id fixed by `n`, so the parent and the child apply
/// the same log.
fn command(n: u128, op: Op) -> Command {
    Command::test_by_admin(n << 64, op)
}

fn create(n: u128, name: &str) -> Command {
    let op = Op::CreateKey {
        rotate_every: 0,
        name: name.into(),
        creation_id: n,
        sealed: crate::seal::record_shaped_under(1),
    };
    command(n, op)
}

fn delete(n: u128, name: &str) -> Command {
    command(n, Op::DeleteKey { name: name.into() })
}

/// The entries before the run: the cluster made, and two keys.
fn earlier_entries() -> Vec<Vec<Command>> {
    vec![
        vec![command(1, Op::test_init("admin"))],
        vec![create(2, "old")],
        vec![create(3, "kept")],
    ]
}

/// The run: a create, a second create of the same name, a delete, a delete of a key that is
/// not there, and the deleted key made again.
fn the_run() -> Vec<Command> {
    vec![
        create(10, "new"),
        create(11, "new"),
        delete(12, "old"),
        delete(13, "missing"),
        create(14, "old"),
    ]
}

fn apply(state: &State, index: u64, commands: &[Command]) -> Vec<Outcome> {
    let marks = [(MARK, index.to_be_bytes().to_vec())];
    state
        .apply_batch_in_window(index, commands, &marks, WINDOW)
        .expect("apply")
}

/// A store in `dir` holding [`earlier_entries`], flushed.
fn store_before_the_run(dir: &Path) -> State {
    let state = State::open(dir).expect("open");
    for (index, commands) in (1..).zip(earlier_entries()) {
        apply(&state, index, &commands);
    }
    state.flush_now();
    state
}

/// The whole state, as a snapshot carries it.
fn contents(state: &State) -> Vec<u8> {
    state.dump().expect("dump")
}

/// The child: applies the run in `dir`, and aborts at the `kill_at`-th failpoint.
fn apply_until_killed(dir: &Path, kill_at: usize, flush: bool) {
    let state = State::open(dir).expect("open");
    let mut passed = 0;
    let in_hook = state.clone();
    failpoint::set(move |point| {
        passed += 1;
        if passed == kill_at {
            if flush {
                in_hook.flush_now();
            }
            println!("{KILLED} {kill_at} ({point})");
            std::process::abort();
        }
        Ok(())
    });
    apply(&state, RUN_INDEX, &the_run());
    failpoint::clear();
}

/// Whether the store in `dir` holds a journal record, read with sled alone, before the
/// store is opened as a node opens it.
fn journal_holds_a_run(dir: &Path) -> bool {
    let config = State::sled_config(dir).expect("config");
    let db = open_when_unlocked(&config).expect("open sled");
    let held = db
        .open_tree(JOURNAL_TREE)
        .expect("tree")
        .get(RUN)
        .expect("read");
    held.is_some()
}

#[test]
fn a_run_killed_at_any_step_restarts_on_the_whole_run_or_none_of_it() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let kill_at = std::env::var(CHILD_KILL_AT).expect("kill step");
        let flush = std::env::var_os(CHILD_FLUSH).is_some();
        apply_until_killed(Path::new(&dir), kill_at.parse().expect("a number"), flush);
        return;
    }
    let reference_dir = tempfile::tempdir().expect("tempdir");
    let reference = store_before_the_run(reference_dir.path());
    let outcomes = apply(&reference, RUN_INDEX, &the_run());
    assert_eq!(
        outcomes,
        [
            Outcome::Done,
            Outcome::KeyExists,
            Outcome::Done,
            Outcome::KeyNotFound,
            Outcome::Done
        ]
    );
    let whole = contents(&reference);

    let (_, in_crate) = module_path!().split_once("::").expect("crate::path");
    let name =
        format!("{in_crate}::a_run_killed_at_any_step_restarts_on_the_whole_run_or_none_of_it");
    // How restarts went: the run finished from its journal, or applied again by the log.
    let (mut finished, mut replayed) = (0, 0);
    for flush in [true, false] {
        for kill_at in 1.. {
            let dir = tempfile::tempdir().expect("tempdir");
            drop(store_before_the_run(dir.path()));
            let mut child = Process::new(std::env::current_exe().expect("test binary"));
            child
                .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_KILL_AT, kill_at.to_string());
            if flush {
                child.env(CHILD_FLUSH, "1");
            }
            let child = child.output().expect("run the apply in a child process");
            let out = String::from_utf8_lossy(&child.stdout);
            if child.status.success() {
                // The run went to its end: a kill at every step before has been tried.
                assert!(kill_at > 5, "the run passed only {kill_at} failpoints");
                break;
            }
            assert!(
                out.contains(KILLED),
                "the child failed without being killed:\n{out}\n{}",
                String::from_utf8_lossy(&child.stderr)
            );
            let journaled = journal_holds_a_run(dir.path());
            let state = State::open(dir.path()).unwrap_or_else(|e| {
                panic!("killed at failpoint {kill_at}, the restart fails: {e}")
            });
            let marked = state.meta_get(MARK).expect("read");
            if marked.as_deref() == Some(RUN_INDEX.to_be_bytes().as_slice()) {
                finished += usize::from(journaled);
            } else {
                assert_eq!(
                    apply(&state, RUN_INDEX, &the_run()),
                    outcomes,
                    "killed at failpoint {kill_at} (flushed: {flush}), the run applied again \
                     answers otherwise"
                );
                replayed += 1;
            }
            assert!(
                contents(&state) == whole,
                "killed at failpoint {kill_at} (flushed: {flush}), the node restarts on \
                 another state than the run's"
            );
        }
    }
    assert!(
        finished > 0 && replayed > 0,
        "restarts that finished the run from its journal: {finished}, that applied it again: \
         {replayed}"
    );
}

/// The failpoints one apply of `commands` at `index` passes.
fn failpoints_of(state: &State, index: u64, commands: &[Command]) -> Vec<String> {
    let passed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = passed.clone();
    failpoint::set(move |point| {
        seen.lock().unwrap().push(point.to_owned());
        Ok(())
    });
    apply(state, index, commands);
    failpoint::clear();
    passed.lock().unwrap().clone()
}

#[test]
fn only_runs_that_fit_one_record_and_meet_no_dump_are_journaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = store_before_the_run(dir.path());
    let journaled = |points: &[String]| points.iter().any(|p| p == "apply: journaled");

    let points = failpoints_of(&state, RUN_INDEX, &the_run());
    assert!(journaled(&points), "a small run was not journaled");

    // Some 400 creates: their changes are larger than one record may be.
    let many: Vec<Command> = (100..500).map(|n| create(n, &format!("k{n}"))).collect();
    let points = failpoints_of(&state, RUN_INDEX + 1, &many);
    assert!(
        !journaled(&points),
        "a run too large for one record was journaled"
    );
    assert!(state.key("default", "k499").expect("read").is_some());

    let policy = Op::WritePolicy {
        name: "p".into(),
        policy: crate::auth::Policy {
            allow: vec!["/v1/key/create/*".into()],
            deny: vec![],
        },
        sig: crate::state::Signature::under_first_key(),
    };
    let points = failpoints_of(&state, RUN_INDEX + 2, &[command(600, policy)]);
    assert!(!journaled(&points), "a policy write was journaled");

    let dump = state.begin_dump();
    let points = failpoints_of(&state, RUN_INDEX + 3, &[create(601, "during")]);
    assert!(!journaled(&points), "a run was journaled while a dump ran");
    drop(dump);
}

#[test]
fn a_journal_record_that_does_not_decode_or_names_another_tree_stops_the_open() {
    // A change to a tree that is not a data tree (here the journal itself) is refused too: the
    // redo writes only where a run writes.
    let bytes = |b: &[u8]| Some(serde_bytes::ByteBuf::from(b.to_vec()));
    let other_tree =
        crate::state::encode_record(&(9u64, vec![(JOURNAL_TREE, bytes(RUN), bytes(b""))]));
    for damaged in [b"not a run".to_vec(), other_tree] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = store_before_the_run(dir.path());
        state
            .tree(JOURNAL_TREE)
            .expect("tree")
            .insert(RUN, damaged.as_slice())
            .expect("insert");
        state.flush_now();
        drop(state);
        match State::open(dir.path()) {
            Err(StateError::Corrupt { tree, .. }) => assert_eq!(tree, JOURNAL_TREE),
            other => panic!("opened over a damaged journal: {other:?}"),
        }
    }
}

#[test]
fn a_record_read_back_writes_the_same_bytes() {
    let bytes = |b: &[u8]| Some(serde_bytes::ByteBuf::from(b.to_vec()));
    let rows = vec![
        ("keys", bytes(b"k"), bytes(b"v")),
        ("meta", bytes(b"m"), None),
    ];
    let record = crate::state::encode_record(&(3u64, rows));
    assert_eq!(
        super::reencode_record(&record).expect("reads"),
        Some(record)
    );
}

#[test]
fn the_data_trees_are_listed_in_the_order_of_their_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = State::open(dir.path()).expect("open");
    for (n, tree) in state.data_trees().into_iter().enumerate() {
        assert_eq!(tree.name(), DATA_TREES[n].as_bytes());
        assert_eq!(usize::from(tree_number(DATA_TREES[n])), n);
    }
}
