//! Abuse tests: a real `kes-node` over real TLS, pushed the way a hostile or broken client
//! pushes it (slow handshakes and bodies, floods of idle connections, oversized and deeply
//! nested JSON, huge bulk requests, stream subscribers), while another client checks that the
//! node keeps serving. Each node gets small `limits:` so the bounds show within seconds.

#[allow(dead_code)] // shared with the `node` test target, which uses all of it
#[path = "../node/support.rs"]
mod support;

mod h2;
mod raw;

mod bodies;
mod connections;
mod files;
mod ready;
mod streams;

/// The tests of this target take turns: each one pushes a node hard on purpose, and on a small
/// machine a neighbour's flood would starve the node under test (its serving lease would
/// expire), which is not what that test is about.
pub async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}
