//! Client connections are served on threads of their own, one single-threaded runtime each.
//!
//! On the node's multi-threaded runtime a connection's socket events, its TLS and HTTP work and
//! its handler could run on any worker, and every hand-over between workers is a futex wake:
//! under 32 keep-alive clients decrypting, the kernel's wake-up path was the largest single item
//! of the node's profile, and the same node on one worker thread answered 21 % more decrypts
//! per second. Here a connection stays on one thread from the accept to the close, as in
//! nginx's worker processes. Only what a request hands to the cluster (a write, a read-index
//! round) crosses to the main runtime, where Raft runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// What a thread runs for one connection, given the socket registered with its own runtime.
pub(super) type ServeFn =
    Box<dyn FnOnce(tokio::net::TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

struct Accepted {
    stream: std::net::TcpStream,
    serve: ServeFn,
}

/// The connection threads. Dropping this ends them: each thread's runtime stops, dropping the
/// connections it served.
pub(super) struct ConnThreads {
    threads: Vec<mpsc::UnboundedSender<Accepted>>,
    next: AtomicUsize,
}

impl ConnThreads {
    /// One thread per core.
    pub(super) fn start() -> std::io::Result<ConnThreads> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
            std::thread::Builder::new()
                .name(format!("kes-conn-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(Accepted { stream, serve }) = rx.recv().await {
                            match tokio::net::TcpStream::from_std(stream) {
                                Ok(stream) => {
                                    tokio::spawn(serve(stream));
                                }
                                Err(e) => tracing::warn!("cannot serve a connection: {e}"),
                            }
                        }
                    });
                })?;
            threads.push(tx);
        }
        Ok(ConnThreads {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// Hands `stream` to the next thread in turn, which runs `serve` on it.
    pub(super) fn hand_over(&self, stream: tokio::net::TcpStream, serve: ServeFn) {
        // Out of the main runtime's reactor, into the thread's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection over: {e}");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        if self.threads[i].send(Accepted { stream, serve }).is_err() {
            tracing::warn!("connection thread {i} has stopped; dropping a connection");
        }
    }
}
