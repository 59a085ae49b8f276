//! No acknowledgement rests on an unsynced byte: a real `kes-node --dev` runs under `strace`
//! through a write-heavy workload (key creates, a seal rekey, a snapshot, and a restore into a
//! second node), and every acknowledgement it sends is checked against the files it wrote
//! before it (rules in `strace_log`).
//!
//! The checked workload runs one request at a time, so the writes in a request's window are
//! that request's own (plus the node's background work). The bulk of the keys is loaded before
//! the trace starts, 16 at a time, only to make the rekey and the snapshot large.

use crate::strace_log::{self, Ack, Effect, Event};
use crate::support::{TestNode, free_port};
use kes_cluster::{Method, Response};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STRACE: &str = "/usr/bin/strace";

/// Enough keys that a rekey's re-sealed batches and a restore's chunks fill whole sled pages
/// with large log entries (with 512 KiB sled segments, that puts pages in `blobs/`, which
/// node a's store has before it is moved to 16 MiB segments).
const KEYS: usize = 5000;

/// A `kes-node --dev` under `strace -f`, and the acknowledgements it sent.
struct TracedNode {
    node: TestNode,
    /// One client, so one connection: the first send in a request's window is its answer,
    /// not a TLS handshake.
    admin: kes_cluster::Client,
    strace: Child,
    trace: PathBuf,
    acks: Vec<(String, f64, f64, bool)>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `kes-node --dev` arguments for a data dir and port.
fn dev_args(data: &Path, port: u16) -> Vec<String> {
    vec![
        "--dev".to_owned(),
        "--addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        data.display().to_string(),
    ]
}

impl TracedNode {
    /// Starts `node` (stopped, or never started) under strace and waits until it is ready.
    async fn start(mut node: TestNode) -> TracedNode {
        let trace = node.dir.path().join("strace.txt");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.path().join("node.log"))
            .expect("log file");
        let strace = Command::new(STRACE)
            .args(["-f", "--seccomp-bpf", "-ttt", "-T", "-yy", "-s", "0", "-qq"])
            .args(["-e", "signal=none", "-e"])
            .arg(format!("trace={}", strace_log::TRACED))
            .arg("-o")
            .arg(&trace)
            .arg("--")
            .arg(crate::support::node_bin())
            .args(&node.args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strace");
        node.wait_ready().await;
        // The connection's TLS handshake now, so that it is not taken for the first checked
        // request's answer.
        let admin = node.admin();
        let r = admin.request(Method::GET, "/v1/status", &[], "").await;
        assert_eq!(r.expect("status").status, 200);
        TracedNode {
            admin,
            node,
            strace,
            trace,
            acks: Vec::new(),
        }
    }

    /// Sends one request and records its window.
    async fn call(
        &mut self,
        what: &str,
        write: bool,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Response {
        let sent = now();
        let r = self
            .admin
            .request(method, path, &[], body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        self.acks.push((what.to_owned(), sent, now(), write));
        assert_eq!(r.status, 200, "{what}: {}\n{}", r.text(), self.node.log());
        r
    }

    /// Stops the node (strace exits with it) and checks its trace.
    fn stop_and_check(mut self) -> Checked {
        let children = format!("/proc/{0}/task/{0}/children", self.strace.id());
        let pid = std::fs::read_to_string(children).expect("strace's child");
        let pid = pid
            .split_whitespace()
            .next()
            .expect("the node runs under strace");
        let _ = Command::new("kill").arg(pid).status();
        let t0 = Instant::now();
        while self.strace.try_wait().expect("wait").is_none() {
            assert!(t0.elapsed() < Duration::from_secs(20), "node did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.trace).expect("trace");
        let events = strace_log::parse(&text);
        let data = self.node.data.display().to_string();
        let acks = self.acks_in(&events);
        let layout = strace_log::Layout {
            data_dir: &data,
            replayed: &format!("{data}/state/db"),
            log_dir: &format!("{data}/state/raft-log"),
        };
        let found = strace_log::violations(&events, &layout, &acks);
        // An unsynced file fails every later acknowledgement too: show each file once.
        let mut first: Vec<&strace_log::Violation> = Vec::new();
        for v in &found {
            if !first
                .iter()
                .any(|f| (&f.path, f.problem) == (&v.path, v.problem))
            {
                first.push(v);
            }
        }
        let kept = std::env::temp_dir().join(format!("kes-durability-{}.strace", self.node.port));
        if !found.is_empty() {
            let _ = std::fs::copy(&self.trace, &kept);
        }
        // Blob files of the store the node serves from: after a move from 512 KiB segments
        // (`state/migrate.rs`) has put the new store in place. Before it, `state/` is the old
        // store, which sled may still write blobs into while the copy reads it; the move
        // discards it.
        let store = format!("{data}/state");
        let serving_since = events
            .iter()
            .filter(|e| matches!(&e.effect, Effect::Rename(from, to) if *to == store && from.ends_with(".migrating")))
            .map(|e| e.end)
            .fold(f64::NEG_INFINITY, f64::max);
        let blobs = format!("{store}/blobs/");
        let blob_creations: Vec<String> = events
            .iter()
            .filter(|e| matches!(&e.effect, Effect::Create(p) if p.starts_with(&blobs)))
            .map(|e| {
                let when = if e.start > serving_since {
                    "serving"
                } else {
                    "old store, during the move"
                };
                format!("{:?} at {:.6} ({when})", e.effect, e.start)
            })
            .collect();
        if !blob_creations.is_empty() {
            eprintln!("blob files made: {blob_creations:?}");
        }
        Checked {
            acks: acks.len(),
            events: events.len(),
            failures: found.len(),
            first: first.iter().map(|v| v.to_string()).collect(),
            kept,
            blobs_written: events
                .iter()
                .filter(|e| e.start > serving_since)
                .filter(|e| matches!(&e.effect, Effect::Create(p) if p.starts_with(&blobs)))
                .count(),
        }
    }

    fn acks_in(&self, events: &[Event]) -> Vec<Ack> {
        self.acks
            .iter()
            .map(|(what, sent, received, write)| Ack {
                what: what.clone(),
                sent: *sent,
                at: strace_log::ack_instant(events, self.node.port, *sent, *received)
                    .unwrap_or_else(|| panic!("{what}: no send on the API port in its window")),
                write: *write,
            })
            .collect()
    }
}

/// What one node's trace showed.
struct Checked {
    acks: usize,
    events: usize,
    failures: usize,
    /// Each unsynced file's first failure.
    first: Vec<String>,
    /// Where the trace was kept when something failed.
    kept: PathBuf,
    /// How many files sled made in `state/blobs/`.
    blobs_written: usize,
}

impl Checked {
    /// The report of what failed, if anything did.
    fn failures(&self, node: &str) -> Option<String> {
        (self.failures > 0).then(|| {
            format!(
                "node {node}: {} failures: acknowledgements rest on unsynced bytes. Each file's first:\n{}\n(trace kept in {})",
                self.failures,
                self.first.join("\n"),
                self.kept.display()
            )
        })
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Rewrites the store in `dir` as versions before the 16 MiB segments made it: with sled's
/// default 512 KiB segments.
fn to_older_segments(dir: &Path) {
    let older = dir.with_file_name("state-older");
    let current = sled::Config::new()
        .path(dir)
        .segment_size(16 << 20)
        .open()
        .expect("the store");
    let old = sled::Config::new()
        .path(&older)
        .segment_size(512 * 1024)
        .open()
        .expect("a store with older segments");
    for name in current.tree_names() {
        let (from, to) = (
            current.open_tree(&name).unwrap(),
            old.open_tree(&name).unwrap(),
        );
        for item in from.iter() {
            let (k, v) = item.expect("item");
            to.insert(k, v).expect("insert");
        }
    }
    // Older versions kept the Raft log in the sled tree `raft_log`, keyed by big-endian index;
    // it now has files of its own (`raft/log_files.rs`: magic, then records of length, CRC,
    // index and entry). The tree held only the entries past the purge mark: a purge removed
    // the others, where the files keep them until a whole file is purged.
    let purged = current
        .open_tree("raft_meta")
        .unwrap()
        .get("last_purged")
        .unwrap()
        .map(|v| {
            let id: serde_json::Value = rmp_serde::from_slice(&v).expect("the purge mark");
            id["index"].as_u64().expect("its index")
        });
    let log = old.open_tree("raft_log").unwrap();
    for (index, entry) in log_file_entries(&dir.join("raft-log")) {
        if purged.is_none_or(|p| index > p) {
            log.insert(index.to_be_bytes(), entry).expect("insert");
        }
    }
    old.flush().expect("flush");
    drop((current, old));
    std::fs::remove_dir_all(dir).expect("remove the store");
    std::fs::rename(&older, dir).expect("rename");
}

/// Every entry in the Raft log files in `dir`, with its index.
fn log_file_entries(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut entries = Vec::new();
    for name in files_in(dir) {
        let bytes = std::fs::read(dir.join(&name)).expect("log file");
        let mut at = 8;
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let index = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
            entries.push((index, bytes[at + 16..at + 16 + len].to_vec()));
            at += 16 + len;
        }
    }
    entries
}

/// Creates `n` keys, 16 requests at a time.
async fn load_keys(node: &TestNode, n: usize) {
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let admin = node.admin();
            tokio::spawn(async move {
                for i in (w..n).step_by(16) {
                    let path = format!("/v1/key/create/bulk-{i}");
                    let r = admin.request(Method::PUT, &path, &[], "").await;
                    let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("load worker");
    }
}

#[tokio::test]
async fn no_acknowledgement_rests_on_an_unsynced_file() {
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is missing: scripts/test.sh installs it (apt-get install strace)"
    );
    let t0 = Instant::now();
    // Node a's store is made as older versions made it (sled's default 512 KiB segments, which
    // put large pages in blob files that sled never syncs). Its traced restart copies it into
    // a store with 16 MiB segments, and that copy must be durable before the first ack too.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let args = dev_args(&data, port);
    let mut seed = TestNode::with_args(dir, data, port, args);
    seed.start().await;
    load_keys(&seed, KEYS).await;
    // A rekey fills the log with entries of up to 64 KiB, whose pages 512 KiB segments put in
    // blob files.
    let r = seed
        .admin()
        .request(Method::POST, "/v1/cluster/seal/rekey", &[], "")
        .await;
    assert_eq!(r.expect("rekey").status, 200);
    seed.stop();
    to_older_segments(&seed.data.join("state"));
    let legacy_blobs = files_in(&seed.data.join("state/blobs"));
    eprintln!(
        "{KEYS} keys loaded after {:?}; the old-layout store holds {} blob files",
        t0.elapsed(),
        legacy_blobs.len()
    );
    assert!(
        !legacy_blobs.is_empty(),
        "the old-layout store made no blob file: the test no longer covers moving such a store"
    );

    // Node a, traced from its restart: the move to 16 MiB segments, creates, a snapshot file,
    // a rekey of every key.
    let mut a = TracedNode::start(seed).await;
    let path = format!("/v1/key/describe/bulk-{}", KEYS - 1);
    a.call(&path, false, Method::GET, &path, Vec::new()).await;
    let conf = std::fs::read(a.node.data.join("state/conf")).expect("sled conf");
    assert!(
        String::from_utf8_lossy(&conf).contains(&format!("segment_size: {}", 16 << 20)),
        "node a's store was not moved to 16 MiB segments at its restart"
    );
    for i in 0..20 {
        let path = format!("/v1/key/create/key-{i}");
        a.call(&path, true, Method::PUT, &path, Vec::new()).await;
    }
    let path = "/v1/cluster/snapshot";
    let backup = a.call(path, false, Method::GET, path, Vec::new()).await;
    let path = "/v1/cluster/seal/rekey";
    a.call(path, true, Method::POST, path, Vec::new()).await;
    let path = "/v1/key/create/after-rekey";
    a.call(path, true, Method::PUT, path, Vec::new()).await;
    let root_key = std::fs::read(a.node.file("root.key")).expect("root key");
    let blobs_a = files_in(&a.node.data.join("state/blobs"));
    let left_over: Vec<String> = files_in(&a.node.data)
        .into_iter()
        .filter(|f| f.starts_with("state."))
        .collect();
    eprintln!("node a: rekey done after {:?}", t0.elapsed());

    // Node b, traced from its first start, with a store made by this version: a restore (it
    // needs a new cluster under the same root key, so its data dir holds only a's root key),
    // then a rekey of every restored key.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .expect("data dir");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data.join("root.key"))
        .and_then(|mut f| f.write_all(&root_key))
        .expect("root key");
    let port = free_port();
    let args = dev_args(&data, port);
    let mut b = TracedNode::start(TestNode::with_args(dir, data, port, args)).await;
    let path = "/v1/cluster/restore";
    b.call(path, true, Method::POST, path, backup.body.to_vec())
        .await;
    let path = "/v1/cluster/seal/rekey";
    b.call(path, true, Method::POST, path, Vec::new()).await;
    let path = "/v1/key/create/after-rekey";
    b.call(path, true, Method::PUT, path, Vec::new()).await;
    let blobs_b = files_in(&b.node.data.join("state/blobs"));
    eprintln!("node b: restore and rekey done after {:?}", t0.elapsed());

    let a = a.stop_and_check();
    let b = b.stop_and_check();
    eprintln!(
        "after {:?}: checked {} + {} acknowledgements against {} + {} traced syscalls; \
         blob files written: {} + {}",
        t0.elapsed(),
        a.acks,
        b.acks,
        a.events,
        b.events,
        a.blobs_written,
        b.blobs_written
    );
    assert!(
        left_over.is_empty(),
        "the move to 16 MiB segments left {left_over:?} in node a's data dir"
    );
    let failures: Vec<String> = [
        a.failures("a (creates, snapshot, rekey)"),
        b.failures("b (restore)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        a.blobs_written == 0 && blobs_a.is_empty() && b.blobs_written == 0 && blobs_b.is_empty(),
        "sled moved pages to blob files during creates, a snapshot, a restore and a rekey: \
         {blobs_a:?} {blobs_b:?}, {} + {} made in the traces",
        a.blobs_written,
        b.blobs_written
    );
}
