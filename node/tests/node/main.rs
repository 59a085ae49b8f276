//! Integration tests: real `kes-node` processes, real mTLS with certificates made here, real
//! sled on disk. One test binary, so the suite links once.

mod support;

mod bootstrap;
mod config;
mod durability;
mod key_versions;
mod keys;
mod observability;
mod persistence;
mod policies;
mod rate_limits;
mod seal;
mod strace_log;
mod tls;
