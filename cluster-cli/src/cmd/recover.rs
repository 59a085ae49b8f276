//! `kes-cluster recover`: lost-quorum recovery on a stopped node's data dir. The data dir is
//! the node's own storage, which only `kes-node` reads and writes, so this runs
//! `kes-node recover` (found as `dev` finds it: next to kes-cluster, then on PATH) with the
//! same arguments, in the foreground. Its flags and help are kes-node's.

use super::Outcome;
use kes_cluster::{Error, Result};
use std::ffi::OsString;

/// `kes-cluster recover --data-dir DIR --force-new-cluster [--yes]`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct RecoverArgs {
    /// kes-node recover's arguments: --data-dir DIR --force-new-cluster [--yes] (--help: all).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(super) args: Vec<OsString>,
}

pub(crate) fn run(args: RecoverArgs) -> Result<Outcome> {
    let bin = super::dev::find_kes_node(None)?;
    let status = std::process::Command::new(&bin)
        .arg("recover")
        .args(&args.args)
        .status()
        .map_err(|e| Error::file("run", &bin, e))?;
    Ok(match status.code() {
        Some(0) => Outcome::default(),
        code => Outcome {
            stdout: String::new(),
            failure: Some((
                code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
                format!("{} recover did not carry out a recovery", bin.display()),
            )),
        },
    })
}
