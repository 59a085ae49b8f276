//! A dump written while applies go on is the state as it stood when the dump began.

use super::super::failpoint;
use crate::state::{Command, Op, Outcome, State};
use std::sync::mpsc;

fn command(request_id: u128, op: Op) -> Command {
    Command::test_by_admin(request_id, op)
}

fn create(name: &str, creation_id: u128) -> Op {
    Op::CreateKey {
        rotate_every: 0,
        name: name.into(),
        creation_id,
        sealed: crate::seal::record_shaped_under(1),
    }
}

fn delete(name: &str) -> Op {
    Op::DeleteKey { name: name.into() }
}

/// Applies `ops` after the `applied` entries already there, each as one entry.
fn apply_all(state: &State, applied: &mut u64, ops: &[Command]) {
    for cmd in ops {
        *applied += 1;
        assert_eq!(state.apply(*applied, cmd, &[]).unwrap(), Outcome::Done);
    }
}

fn store() -> (State, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (State::open(dir.path()).unwrap(), dir)
}

#[test]
fn a_dump_is_the_state_at_its_start_whatever_is_applied_while_it_writes() {
    let mut before = vec![command(1, Op::test_init("admin"))];
    for i in 0..200u128 {
        before.push(command(100 + i, create(&format!("k{i:03}"), i)));
    }
    // Made while the dump is at record 100 of `keys` (k099 in this store, after the init's
    // records): changes on both sides of the dump's place, records deleted, made anew, made and
    // deleted again, and, with every entry, the applied index and the dedup records.
    let during = vec![
        command(1_000, delete("k010")),
        command(1_001, delete("k150")),
        command(1_002, create("k005a", 9_000)),
        command(1_003, create("k180a", 9_001)),
        command(1_004, delete("k100")),
        command(1_005, create("k100", 9_002)),
        command(1_006, create("k050b", 9_003)),
        command(1_007, delete("k050b")),
        command(1_008, create("zzz", 9_004)),
    ];

    let (replica, _replica_dir) = store();
    apply_all(&replica, &mut 0, &before);
    let as_it_began = replica.dump().unwrap();

    let (state, _dir) = store();
    let mut applied = 0;
    apply_all(&state, &mut applied, &before);
    let dump = state.begin_dump();

    // Another thread applies `during` while the dump is paused half-way through `keys`.
    let (go, wait_for_go) = mpsc::channel::<()>();
    let (done, wait_for_done) = mpsc::channel::<()>();
    let writer = {
        let state = state.clone();
        let during = during.clone();
        std::thread::spawn(move || {
            wait_for_go.recv().unwrap();
            apply_all(&state, &mut applied, &during);
            done.send(()).unwrap();
        })
    };
    let (mut trees, mut records) = (0, 0);
    failpoint::set(move |point| {
        match point {
            "dump: tree" => trees += 1,
            "dump: record" if trees == 1 => {
                records += 1;
                if records == 100 {
                    go.send(()).unwrap();
                    wait_for_done.recv().unwrap();
                }
            }
            _ => {}
        }
        Ok(())
    });
    let written = dump.write_into(std::io::Cursor::new(Vec::new()));
    failpoint::clear();
    writer.join().unwrap();
    let written = written.unwrap().into_inner();
    drop(dump);

    assert!(
        written == as_it_began,
        "the dump holds changes applied after it began"
    );
    // The changes were applied, and once the dump is over nothing is kept for it any more.
    let (after, _after_dir) = store();
    let mut n = 0;
    apply_all(&after, &mut n, &before);
    apply_all(&after, &mut n, &during);
    assert!(state.dump().unwrap() == after.dump().unwrap());
    assert!(state.dump_view.lock().is_none(), "no dump runs");
}

#[tokio::test]
async fn a_snapshot_install_waits_for_the_dump_that_runs() {
    let (source, _source_dir) = store();
    apply_all(&source, &mut 0, &[command(1, Op::test_init("admin"))]);
    let snapshot = source.dump().unwrap();

    let (state, _dir) = store();
    let dump = state.begin_dump();
    let installing = {
        let state = state.clone();
        tokio::spawn(async move { state.install(&snapshot, 1, &[], b"test").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !installing.is_finished(),
        "an install cleared the trees a running dump reads"
    );
    drop(dump);
    installing.await.unwrap().unwrap();
    assert_eq!(state.dump().unwrap(), source.dump().unwrap());
}

#[test]
fn every_data_tree_has_a_number() {
    for (n, name) in super::super::snapshot::DATA_TREES.iter().enumerate() {
        assert_eq!(usize::from(super::tree_number(name)), n);
    }
}
