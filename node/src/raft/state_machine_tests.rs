//! The state machine's snapshots on real sled on disk: a process killed at any step of an
//! install, two writers of the snapshot file at once, an older snapshot arriving after a newer
//! one, and a dump that fails.
//!
//! The kill test re-runs itself in a child process (as `seal::pkcs11::tests` does), which a
//! failpoint aborts in the middle of the install after flushing sled: the longest prefix of the
//! install's writes that a crash at that step can leave. The parent then restarts on that
//! data dir the way `server::startup` does.

use super::*;
use crate::state::{Command, DumpTree, Op, State, failpoint};
use openraft::CommittedLeaderId;
use std::path::Path;
use std::process::Command as Process;

/// Set in the child process: the data dir to install into.
const CHILD_DIR: &str = "KES_SNAPSHOT_TEST_CHILD_DIR";
/// Set in the child process: abort at the n-th failpoint of the install.
const CHILD_KILL_AT: &str = "KES_SNAPSHOT_TEST_KILL_AT";
/// What the child prints just before it aborts.
const KILLED: &str = "aborting at failpoint";

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn meta_at(index: u64) -> Meta {
    SnapshotMeta {
        last_log_id: Some(log_id(index)),
        last_membership: Membership::default(),
        snapshot_id: format!("1-1-{index}"),
    }
}

fn command(op: Op) -> Command {
    Command::test_by_admin(rand::random(), op)
}

fn init() -> Op {
    Op::Init {
        cluster_id: "c".into(),
        admin: "admin".into(),
        wrapped: vec![],
        default_enclave_sig: crate::state::Signature::under_first_key(),
    }
}

fn create_key(name: &str) -> Op {
    Op::CreateKey {
        rotate_every: 0,
        name: name.into(),
        creation_id: 1,
        sealed: crate::seal::record_shaped_under(1),
    }
}

/// The node's state and state machine in `dir`, laid out as `server::startup` does.
fn machine(dir: &Path) -> (State, StateMachine) {
    let state = State::open(&dir.join("state")).expect("open the state");
    let seconds = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
        .expect("histogram");
    let sm = StateMachine::new(
        state.clone(),
        dir.join("snapshot.bin"),
        Arc::new(|_, _| {}),
        seconds,
    );
    (state, sm)
}

/// Applies `ops` as log entries 1, 2, ...
async fn apply_all(sm: &mut StateMachine, ops: Vec<Op>) {
    let entries = ops.into_iter().zip(1..).map(|(op, index)| Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command(op)),
    });
    sm.apply(entries.collect::<Vec<_>>()).await.expect("apply");
}

/// Every record of every snapshotted tree: two states are the same iff these are equal.
fn contents(state: &State) -> Vec<DumpTree> {
    State::parse_dump(&state.dump().expect("dump")).expect("parse the dump")
}

/// Records per tree, to show in a failure which trees are half loaded.
fn sizes(trees: &[DumpTree]) -> String {
    let sizes: Vec<_> = trees
        .iter()
        .map(|(name, items)| format!("{name}={}", items.len()))
        .collect();
    sizes.join(" ")
}

/// A node that has applied 3 entries of its own, about to install a snapshot of another.
async fn old_node(dir: &Path) -> Vec<DumpTree> {
    let (state, mut sm) = machine(dir);
    apply_all(
        &mut sm,
        vec![init(), create_key("old-a"), create_key("old-b")],
    )
    .await;
    state.make_durable().await.expect("durable");
    contents(&state)
}

/// A snapshot of a node that has applied 22 entries (an enclave and 20 keys), and the state
/// that an install of it that nothing interrupts makes of an [`old_node`].
async fn incoming_snapshot() -> (Meta, Vec<u8>, Vec<DumpTree>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, mut sm) = machine(dir.path());
    let mut ops = vec![
        init(),
        Op::CreateEnclave {
            name: "e1".into(),
            admin: String::new(),
            sig: crate::state::Signature::under_first_key(),
        },
    ];
    ops.extend((0..20).map(|i| create_key(&format!("new-{i}"))));
    apply_all(&mut sm, ops).await;
    let mut snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build the snapshot");
    let meta = snapshot.meta;
    let mut data = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut snapshot.snapshot, &mut data)
        .await
        .expect("read the snapshot's dump");
    let reference = tempfile::tempdir().expect("tempdir");
    old_node(reference.path()).await;
    let (state, mut sm) = machine(reference.path());
    install(&mut sm, &meta, data.clone()).await;
    let installed = contents(&state);
    (meta, data, installed)
}

async fn install(sm: &mut StateMachine, meta: &Meta, data: Vec<u8>) {
    let body = receive(sm, &data).await;
    sm.install_snapshot(meta, body)
        .await
        .expect("install the snapshot");
}

/// A snapshot body that has received `data`, in two chunks as openraft writes them.
async fn receive(sm: &mut StateMachine, data: &[u8]) -> Box<SnapshotBody> {
    use tokio::io::AsyncWriteExt;
    let mut body = sm.begin_receiving_snapshot().await.expect("begin");
    let (first, rest) = data.split_at(data.len() / 2);
    body.write_all(first).await.expect("write a chunk");
    body.write_all(rest).await.expect("write a chunk");
    body
}

/// The child: installs `incoming.bin` into the data dir, and aborts at the n-th failpoint.
async fn install_until_killed(dir: &Path, kill_at: usize) {
    let (state, mut sm) = machine(dir);
    let (meta, data): (Meta, serde_bytes::ByteBuf) =
        decode(&std::fs::read(dir.join("incoming.bin")).expect("read incoming.bin"))
            .expect("decode incoming.bin");
    let mut passed = 0;
    failpoint::set(move |point| {
        passed += 1;
        if passed == kill_at {
            state.flush_now();
            println!("{KILLED} {kill_at} ({point})");
            std::process::abort();
        }
        Ok(())
    });
    install(&mut sm, &meta, data.into_vec()).await;
}

#[tokio::test]
async fn dump_and_install_round_trip() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let a = State::open(a_dir.path()).expect("open");
    let b = State::open(b_dir.path()).expect("open");
    a.apply(1, &command(init()), &[]).expect("apply");
    a.apply(2, &command(create_key("k")), &[(b"mark", vec![7])])
        .expect("apply");
    let gone = Op::CreateEnclave {
        admin: String::new(),
        name: "gone".into(),
        sig: crate::state::Signature::under_first_key(),
    };
    b.apply(1, &command(init()), &[]).expect("apply");
    b.apply(2, &command(gone), &[]).expect("apply");
    assert!(b.enclave("gone").expect("read").is_some());
    assert!(b.install(&b"garbage".to_vec(), 9, &[], b"s").await.is_err());
    assert!(
        b.enclave("gone").expect("read").is_some(),
        "a bad dump changed the state"
    );
    let dump = a.dump().expect("dump");
    b.install(&dump, 2, &[(b"installed", vec![8])], b"s")
        .await
        .expect("install");
    assert_eq!(b.applied_index(), 2);
    let key = b.key("default", "k").expect("read").expect("the key");
    assert_eq!(key.creation_id, 1);
    assert_eq!(
        b.meta_get(b"mark")
            .expect("read")
            .expect("the mark")
            .as_ref(),
        &[7]
    );
    assert_eq!(
        b.meta_get(b"installed")
            .expect("read")
            .expect("the mark")
            .as_ref(),
        &[8]
    );
    assert!(b.enclave("gone").expect("read").is_none());
    assert_eq!(b.unfinished_install().expect("read"), None);
}

#[tokio::test]
async fn a_kill_at_any_step_of_an_install_restarts_on_the_old_or_the_new_state() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let kill_at = std::env::var(CHILD_KILL_AT).expect("kill step");
        install_until_killed(Path::new(&dir), kill_at.parse().expect("a number")).await;
        return;
    }
    let (meta, data, new) = incoming_snapshot().await;

    let (_, in_crate) = module_path!().split_once("::").expect("crate::path");
    let name = format!(
        "{in_crate}::a_kill_at_any_step_of_an_install_restarts_on_the_old_or_the_new_state"
    );
    // Which state each restart came up on: both must occur, or the kills missed the install.
    let (mut came_up_old, mut came_up_new) = (0, 0);
    for kill_at in 1.. {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = old_node(dir.path()).await;
        let incoming = encode(&(&meta, serde_bytes::Bytes::new(&data)));
        std::fs::write(dir.path().join("incoming.bin"), incoming).expect("write incoming.bin");
        let child = Process::new(std::env::current_exe().expect("test binary"))
            .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_KILL_AT, kill_at.to_string())
            .output()
            .expect("run the install in a child process");
        let out = String::from_utf8_lossy(&child.stdout);
        if child.status.success() {
            // The install ran to its end: a kill at every step before has been tried.
            assert!(kill_at > 10, "the install passed only {kill_at} failpoints");
            assert!(
                came_up_old > 0 && came_up_new > 0,
                "restarts on the old state: {came_up_old}, on the new: {came_up_new}"
            );
            return;
        }
        assert!(
            out.contains(KILLED),
            "the child failed without being killed:\n{out}\n{}",
            String::from_utf8_lossy(&child.stderr)
        );
        let (state, _sm) = machine(dir.path());
        // What `server::startup` does before Raft starts. Refusing to start would be safe
        // too, but this design never needs to: the snapshot is on disk before the install.
        recover_snapshot_install(&state, &dir.path().join("snapshot.bin"))
            .await
            .unwrap_or_else(|e| panic!("killed at failpoint {kill_at}, the restart fails: {e}"));
        assert_eq!(state.unfinished_install().expect("read"), None);
        let now = contents(&state);
        assert!(
            now == old || now == new,
            "killed at failpoint {kill_at}, the node restarts on a half-loaded state:\n\
             restarted: {}\nold:       {}\nnew:       {}",
            sizes(&now),
            sizes(&old),
            sizes(&new)
        );
        if now == old {
            came_up_old += 1;
        } else {
            came_up_new += 1;
        }
    }
}

#[tokio::test]
async fn an_install_cut_short_is_redone_at_start_or_refused_without_its_snapshot() {
    let (meta, data, new) = incoming_snapshot().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let old = old_node(dir.path()).await;
    let (state, mut sm) = machine(dir.path());
    failpoint::set(|point| match point {
        "install: filled" => Err(std::io::Error::other("injected write failure")),
        _ => Ok(()),
    });
    let body = receive(&mut sm, &data).await;
    let cut = sm.install_snapshot(&meta, body).await;
    failpoint::clear();
    assert!(cut.is_err(), "the failpoint did not cut the install short");
    assert!(state.unfinished_install().expect("read").is_some());
    assert_ne!(contents(&state), old);

    let file = dir.path().join("snapshot.bin");
    let saved = std::fs::read(&file).expect("the install saved the snapshot first");
    std::fs::remove_file(&file).expect("remove the snapshot file");
    let refused = recover_snapshot_install(&state, &file).await;
    assert!(
        matches!(refused, Err(RecoverError::SnapshotGone)),
        "{refused:?}"
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("empty this node's data dir")
    );

    std::fs::write(&file, saved).expect("put the snapshot file back");
    recover_snapshot_install(&state, &file)
        .await
        .expect("redo the install");
    assert_eq!(state.unfinished_install().expect("read"), None);
    assert!(
        contents(&state) == new,
        "the redone install differs from an uninterrupted one"
    );
}

fn assert_file_holds(sm: &StateMachine, index: u64, data: &[u8]) {
    let held = sm
        .snapshot_file
        .load()
        .expect("read")
        .expect("a snapshot file");
    assert_eq!((held.0, held.1.as_slice()), (meta_at(index), data));
}

#[test]
fn two_writers_of_the_snapshot_file_do_not_share_a_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, sm) = machine(dir.path());
    let (paused, wait_paused) = std::sync::mpsc::channel();
    let (resume, wait_resume) = std::sync::mpsc::channel::<()>();
    // The newer writer stops between writing its temp file and renaming it; meanwhile an
    // older one (a build that started before an install) saves its own.
    let newer = std::thread::spawn({
        let sm = sm.clone();
        move || {
            failpoint::set(move |point| {
                if point == "snapshot file: written" {
                    paused.send(()).expect("signal the pause");
                    wait_resume.recv().expect("wait to resume");
                }
                Ok(())
            });
            sm.snapshot_file.save(&meta_at(9), b"newer")
        }
    });
    wait_paused.recv().expect("the newer writer pauses");
    let older = sm.snapshot_file.save(&meta_at(5), b"older");
    resume.send(()).expect("resume the newer writer");
    let newer = newer.join().expect("the newer writer's thread");
    assert!(older.is_ok(), "the older writer failed: {older:?}");
    assert!(newer.is_ok(), "the newer writer failed: {newer:?}");
    assert_file_holds(&sm, 9, b"newer");
}

#[test]
fn an_older_snapshot_never_replaces_a_newer_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, sm) = machine(dir.path());
    assert!(sm.snapshot_file.save(&meta_at(9), b"newer").expect("save"));
    assert!(!sm.snapshot_file.save(&meta_at(5), b"older").expect("save"));
    assert_file_holds(&sm, 9, b"newer");
    drop(sm);
    // After a restart too, when the newer file was written by an earlier process.
    let (_, sm) = machine(dir.path());
    assert!(!sm.snapshot_file.save(&meta_at(7), b"older").expect("save"));
    assert_file_holds(&sm, 9, b"newer");
}

#[tokio::test]
async fn a_dump_that_fails_fails_the_snapshot_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, mut sm) = machine(dir.path());
    apply_all(&mut sm, vec![init(), create_key("k")]).await;
    failpoint::set(|point| match point {
        "dump: tree" => Err(std::io::Error::other("injected read failure")),
        _ => Ok(()),
    });
    let mut builder = sm.get_snapshot_builder().await;
    let built = builder.build_snapshot().await;
    assert!(
        failpoint::hit("dump: tree").is_err(),
        "the hook the build carried came back"
    );
    failpoint::clear();
    assert!(
        built.is_err(),
        "a failed dump built snapshot {:?}",
        built.map(|s| s.meta)
    );
    assert!(
        !dir.path().join("snapshot.bin").exists(),
        "a failed dump wrote a snapshot file"
    );
}

/// The snapshot a leader sends is the dump alone, read from the file where it starts: seeks
/// are relative to the dump, and the end is the dump's end. A file written by an older version
/// (rmp-serde's encoding of `(meta, dump)`) reads the same.
#[tokio::test]
async fn a_snapshot_is_sent_as_its_dump_read_from_the_file() {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (meta, data, _) = incoming_snapshot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, mut sm) = machine(dir.path());
    let streamed = sm.snapshot_file.save(&meta, &data).expect("save");
    assert!(streamed);
    let older = dir.path().join("older.bin");
    std::fs::write(&older, encode(&(&meta, serde_bytes::Bytes::new(&data)))).expect("write");
    for file in [dir.path().join("snapshot.bin"), older] {
        std::fs::rename(&file, dir.path().join("snapshot.bin")).expect("put in place");
        let mut sent = sm
            .get_current_snapshot()
            .await
            .expect("open")
            .expect("a snapshot");
        assert_eq!(sent.meta, meta);
        let body = &mut sent.snapshot;
        let end = body.seek(std::io::SeekFrom::End(0)).await.expect("seek");
        assert_eq!(end, data.len() as u64, "{}", file.display());
        body.seek(std::io::SeekFrom::Start(5)).await.expect("seek");
        let mut rest = Vec::new();
        body.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, data[5..], "{}", file.display());
    }
    // A file cut short is refused, not sent as a shorter dump.
    let file = dir.path().join("snapshot.bin");
    let whole = std::fs::read(&file).expect("read");
    std::fs::write(&file, &whole[..whole.len() - 1]).expect("cut");
    let cut = sm.get_current_snapshot().await;
    assert!(cut.is_err(), "a cut file was sent");
}

/// A received snapshot that does not decode changes nothing: not the state, not the snapshot
/// file. Its temp file goes, and so does that of a transfer the leader abandons.
#[tokio::test]
async fn a_damaged_or_abandoned_received_snapshot_leaves_nothing_behind() {
    let (meta, data, _) = incoming_snapshot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let old = old_node(dir.path()).await;
    let (state, mut sm) = machine(dir.path());
    assert!(
        sm.snapshot_file
            .save(&meta_at(2), &state.dump().expect("dump"))
            .expect("save")
    );
    let before = std::fs::read(dir.path().join("snapshot.bin")).expect("read");
    let mut damaged = data.clone();
    damaged.truncate(data.len() - 3);
    let body = receive(&mut sm, &damaged).await;
    assert!(sm.install_snapshot(&meta, body).await.is_err());
    assert_eq!(
        contents(&state),
        old,
        "a damaged snapshot changed the state"
    );
    assert_eq!(
        std::fs::read(dir.path().join("snapshot.bin")).expect("read"),
        before,
        "a damaged snapshot replaced the snapshot file"
    );
    drop(receive(&mut sm, &data).await);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

/// A crash after the received snapshot was saved to the file and before its install began
/// leaves no install record: the node installs the file at start all the same, and a file that
/// is not ahead of the state (one the node built itself) changes nothing.
#[tokio::test]
async fn a_snapshot_saved_but_never_installed_is_installed_at_start() {
    let (meta, data, new) = incoming_snapshot().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let old = old_node(dir.path()).await;
    let (state, sm) = machine(dir.path());
    let file = dir.path().join("snapshot.bin");
    // The node's own snapshot of what it applied: not ahead, nothing to do.
    assert!(
        sm.snapshot_file
            .save(&meta_at(3), &state.dump().expect("dump"))
            .expect("save")
    );
    recover_snapshot_install(&state, &file)
        .await
        .expect("start");
    assert_eq!(contents(&state), old, "a snapshot not ahead was installed");
    // The received one, saved, then the crash.
    std::fs::remove_file(&file).expect("remove");
    assert!(sm.snapshot_file.save(&meta, &data).expect("save"));
    recover_snapshot_install(&state, &file)
        .await
        .expect("start");
    assert!(
        contents(&state) == new,
        "the saved snapshot was not installed"
    );
    assert_eq!(state.applied_index(), meta.last_log_id.unwrap().index);
}
