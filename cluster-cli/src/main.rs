//! `kes-cluster`: the command line for KES servers and kes-cluster nodes.

// Unsafe code is needed only to signal and supervise node processes
// (`cmd::dev::supervise`), where each use is allowed and explained.
#![deny(unsafe_code)]

mod cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli).await {
        Ok(outcome) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`kes-cluster key ls | head -1`) is not an error.
            match stdout
                .write_all(outcome.stdout.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("Error: cannot write output: {e}");
                    return ExitCode::FAILURE;
                }
                _ => {}
            }
            match outcome.failure {
                Some((code, message)) => {
                    eprintln!("Error: {message}");
                    ExitCode::from(code)
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
