//! The thread that makes the Raft log's appends durable, and only then tells openraft.
//!
//! An append writes its records (`log_files.rs`) and hands the files to this thread, which
//! fdatasyncs them off the async runtime's threads. openraft 0.9 waits for each append to be
//! reported before it goes on (`RaftCore::append_to_log`), so there is one append in flight;
//! should a later openraft let appends overlap, those that arrive during one fdatasync share
//! the next. An append is reported flushed, and its last index published for read leases,
//! only after an fdatasync that began after its write.
//!
//! A failed fdatasync is final: the kernel may have dropped the dirty pages it could not
//! write, so a later fdatasync that succeeds proves nothing about them. Every append from then
//! on is reported failed, which stops Raft on this node.

use super::LastAppended;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

/// What is told once an append is durable, or can never be: openraft's `LogFlushed`.
pub(super) type Done = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Work for the syncer.
enum Job {
    /// Sync `files`, then report the append ending at `last` flushed.
    Flush {
        files: Vec<Arc<File>>,
        last: Option<u64>,
        publish: LastAppended,
        done: Done,
    },
    /// Answer once every job sent before has been reported.
    Barrier(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The sending side; clones share the one thread, which ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct LogSyncer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for LogSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSyncer")
    }
}

impl LogSyncer {
    /// Starts the thread. `state_dir` is what the disk-image test hook copies after each sync.
    pub(super) fn start(state_dir: PathBuf) -> std::io::Result<LogSyncer> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run(queue, &state_dir))?;
        Ok(LogSyncer { jobs })
    }

    /// Reports `done` once `files` are synced; publishes `last` in `publish` first.
    pub(super) fn flush(
        &self,
        files: Vec<Arc<File>>,
        last: Option<u64>,
        publish: LastAppended,
        done: Done,
    ) {
        let job = Job::Flush {
            files,
            last,
            publish,
            done,
        };
        if let Err(mpsc::SendError(Job::Flush { done, .. })) = self.jobs.send(job) {
            done(Err(std::io::Error::other("the Raft log syncer stopped")));
        }
    }

    /// Waits until every append handed over so far is reported; an error if any failed.
    pub(super) async fn drain(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Barrier(tx))
            .map_err(|_| "the Raft log syncer stopped".to_owned())?;
        rx.await
            .map_err(|_| "the Raft log syncer stopped".to_owned())?
    }
}

fn run(queue: mpsc::Receiver<Job>, state_dir: &std::path::Path) {
    let mut failed: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let mut files: Vec<&Arc<File>> = Vec::new();
        for job in &jobs {
            if let Job::Flush { files: f, .. } = job {
                for file in f {
                    if !files.iter().any(|seen| Arc::ptr_eq(seen, file)) {
                        files.push(file);
                    }
                }
            }
        }
        if failed.is_none() {
            if !files.is_empty() {
                crate::test_hooks::slow_log_sync();
            }
            let synced = files
                .iter()
                .try_for_each(|f| f.sync_data())
                .and_then(|()| crate::test_hooks::disk_image(state_dir));
            if let Err(e) = synced {
                tracing::error!("the Raft log cannot be made durable, Raft stops: {e}");
                failed = Some(format!("cannot make the Raft log durable: {e}"));
            }
        }
        for job in jobs {
            match job {
                Job::Flush {
                    last,
                    publish,
                    done,
                    ..
                } => match &failed {
                    None => {
                        if let Some(last) = last {
                            publish.set(last);
                        }
                        done(Ok(()));
                    }
                    Some(why) => done(Err(std::io::Error::other(why.clone()))),
                },
                Job::Barrier(answer) => {
                    let _ = answer.send(failed.clone().map_or(Ok(()), Err));
                }
            }
        }
    }
}
