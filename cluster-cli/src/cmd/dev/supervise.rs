//! The node processes of a local cluster: started, watched, and stopped.
//!
//! ```text
//!   Supervisor ──spawn──▶ one task per node: waits for the process, or for
//!       │                  the stop signal (SIGTERM, then SIGKILL after GRACE)
//!       └─ next_exit() ◀── exits nobody asked for (a crash, a `kill -9`)
//! ```
//!
//! The nodes stay in our process group, so a signal to the group (Ctrl-C in
//! a terminal, `kill -- -PGID`) reaches them too. On Linux each node also
//! gets SIGTERM when the supervisor dies, even by SIGKILL, so no node
//! outlives it holding its ports.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use kes_cluster::{Error, Result};

/// How long a node may take to stop after SIGTERM before it is killed.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// What the nodes are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    Terminate,
    Kill,
}

/// How to start one node.
#[derive(Debug, Clone)]
pub(crate) struct NodeCommand {
    /// 1-based node number.
    pub(crate) index: usize,
    pub(crate) program: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) data_dir: PathBuf,
    /// Where stdout and stderr are appended.
    pub(crate) log: PathBuf,
}

/// A node that exited without being asked to.
#[derive(Debug)]
pub(crate) struct NodeExit {
    pub(crate) index: usize,
    pub(crate) pid: u32,
    /// E.g. `exit code 1` or `signal 9 (SIGKILL)`.
    pub(crate) status: String,
    /// Ended by SIGKILL: someone killed it (`kill -9`), it did not fail on its own.
    pub(crate) killed: bool,
}

/// Starts nodes and keeps track of them.
pub(crate) struct Supervisor {
    stop: watch::Sender<Stop>,
    exit_tx: Option<mpsc::UnboundedSender<NodeExit>>,
    exits: mpsc::UnboundedReceiver<NodeExit>,
    tasks: JoinSet<()>,
}

impl Supervisor {
    pub(crate) fn new() -> Self {
        let (exit_tx, exits) = mpsc::unbounded_channel();
        Supervisor {
            stop: watch::Sender::new(Stop::Run),
            exit_tx: Some(exit_tx),
            exits,
            tasks: JoinSet::new(),
        }
    }

    /// Starts a node; returns its process id.
    pub(crate) fn spawn(&mut self, node: &NodeCommand) -> Result<u32> {
        let io = |e| Error::file("write", &node.log, e);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&node.log)
            .map_err(io)?;
        // A marker per start: the log spans every run, and a failure report
        // shows only what the latest start wrote.
        writeln!(log, "{}", start_marker(node.index)).map_err(io)?;
        let stderr = log.try_clone().map_err(io)?;
        let mut command = Command::new(&node.program);
        command
            .arg("--config")
            .arg(&node.config)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            // Should this task be dropped before stopping its node (the
            // runtime shutting down on an error path), the node goes too.
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|e| Error::Io {
            context: format!("cannot start {}", node.program.display()),
            reason: e.to_string(),
        })?;
        let pid = child.id().ok_or_else(|| Error::Io {
            context: format!("node{} exited at once", node.index),
            reason: format!("see {}", node.log.display()),
        })?;
        let exits = self
            .exit_tx
            .clone()
            .expect("the sender lives as long as the supervisor accepts nodes");
        self.tasks.spawn(watch_node(
            node.index,
            child,
            pid,
            self.stop.subscribe(),
            exits,
        ));
        Ok(pid)
    }

    /// The next node exit nobody asked for; `None` once no node runs.
    pub(crate) async fn next_exit(&mut self) -> Option<NodeExit> {
        // The tasks hold the only senders from now on, so the channel closes
        // when the last node has exited.
        self.exit_tx = None;
        self.exits.recv().await
    }

    /// Stops every node: SIGTERM, then SIGKILL for those still running after
    /// [`GRACE`], or at once when `hurry` completes (a second Ctrl-C).
    pub(crate) async fn stop(mut self, hurry: impl Future<Output = ()>) {
        self.stop.send_replace(Stop::Terminate);
        let tasks = &mut self.tasks;
        let stop = &self.stop;
        tokio::select! {
            () = drain(tasks) => return,
            () = hurry => {}
        }
        stop.send_replace(Stop::Kill);
        drain(tasks).await;
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// Waits for one node: reports an unasked exit, or stops it when told to.
async fn watch_node(
    index: usize,
    mut child: Child,
    pid: u32,
    mut stop: watch::Receiver<Stop>,
    exits: mpsc::UnboundedSender<NodeExit>,
) {
    tokio::select! {
        status = child.wait() => {
            let killed = matches!(&status, Ok(s) if s.signal() == Some(libc::SIGKILL));
            let status = describe(status);
            let _ = exits.send(NodeExit { index, pid, status, killed });
            return;
        }
        _ = stop.wait_for(|s| *s != Stop::Run) => {}
    }
    if *stop.borrow() == Stop::Terminate {
        terminate(pid);
        tokio::select! {
            _ = child.wait() => return,
            () = tokio::time::sleep(GRACE) => {}
            _ = stop.wait_for(|s| *s == Stop::Kill) => {}
        }
    }
    // SIGKILL, then reap.
    let _ = child.kill().await;
}

/// `exit code 1`, `signal 9 (SIGKILL)`, ...
fn describe(status: std::io::Result<ExitStatus>) -> String {
    let status = match status {
        Ok(status) => status,
        Err(e) => return format!("an unknown status ({e})"),
    };
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGINT => " (SIGINT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGSEGV => " (SIGSEGV)",
                _ => "",
            };
            format!("signal {signal}{name}")
        }
        (None, None) => status.to_string(),
    }
}

/// The line written to a node's log before each start.
fn start_marker(index: usize) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!("=== kes-cluster dev: starting node{index} at {now} ===")
}

/// The last `lines` lines a node wrote since its latest start, for a
/// failure report.
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read(log) else {
        return String::new();
    };
    // Only the end matters; a long-lived log can be large.
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(64 * 1024)..]).into_owned();
    let since_start = match text.rfind("=== kes-cluster dev: starting node") {
        Some(at) => text[at..].split_once('\n').map_or("", |(_, rest)| rest),
        None => &text,
    };
    let all: Vec<&str> = since_start.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends SIGTERM to a child of ours.
#[allow(unsafe_code)] // std can send only SIGKILL; a node shuts down cleanly on SIGTERM
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is that of a
    // child we have not reaped yet, so it cannot name another process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Asks Linux to send the node SIGTERM when the supervisor dies, however
/// it dies: a group signal misses a supervisor killed alone with SIGKILL.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // pre_exec and prctl have no safe equivalent
fn die_with_parent(command: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe system calls (prctl, getppid, _exit) and does not
    // allocate. The death signal is tied to the thread that forks: this runs
    // on the runtime's only thread, which lives as long as the process.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_well() {
        assert_eq!(describe(Ok(ExitStatus::from_raw(1 << 8))), "exit code 1");
        assert_eq!(describe(Ok(ExitStatus::from_raw(9))), "signal 9 (SIGKILL)");
        assert_eq!(describe(Ok(ExitStatus::from_raw(10))), "signal 10");
    }

    #[test]
    fn the_tail_starts_at_the_latest_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("node.log");
        let text = format!(
            "{}\nold 1\nold 2\n{}\nnew 1\nnew 2\nnew 3\n",
            start_marker(1),
            start_marker(1)
        );
        std::fs::write(&log, text).unwrap();
        assert_eq!(log_tail(&log, 2), "new 2\nnew 3");
        assert_eq!(log_tail(&log, 10), "new 1\nnew 2\nnew 3");
        assert_eq!(log_tail(&dir.path().join("none"), 5), "");
    }

    /// A real child: an unasked exit is reported, and stop() ends the rest
    /// (SIGTERM first; a child that ignores it is killed after a hurry).
    #[tokio::test(flavor = "current_thread")]
    async fn children_are_watched_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            path
        };
        let node = |index: usize, program: PathBuf| NodeCommand {
            index,
            program,
            config: "c.yaml".into(),
            data_dir: "data".into(),
            log: dir.path().join(format!("node{index}.log")),
        };
        let mut sup = Supervisor::new();
        sup.spawn(&node(1, script("fails", "echo \"args: $*\"; exit 3")))
            .unwrap();
        sup.spawn(&node(2, script("waits", "exec sleep 30")))
            .unwrap();
        sup.spawn(&node(3, script("stubborn", "trap '' TERM; exec sleep 30")))
            .unwrap();
        let exit = sup.next_exit().await.unwrap();
        assert_eq!((exit.index, exit.status.as_str()), (1, "exit code 3"));
        assert_eq!(
            log_tail(&dir.path().join("node1.log"), 1),
            "args: --config c.yaml --data-dir data"
        );
        let started = std::time::Instant::now();
        sup.stop(tokio::time::sleep(Duration::from_millis(300)))
            .await;
        assert!(started.elapsed() < GRACE, "{:?}", started.elapsed());
    }
}
