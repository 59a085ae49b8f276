//! The process's open-file limit, against the connection cap.

/// Descriptors a node needs besides its KES connections: sled, peers, the gRPC port, logs.
const FD_HEADROOM: u64 = 256;

/// Warns when `max_connections` cannot be reached because the process may not open that many
/// files: the cap would then never bite, and accept would fail instead (with `EMFILE`).
pub(super) fn warn_if_above_fd_limit(max_connections: usize) {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_soft_limit(&text))
    else {
        return;
    };
    if max_connections as u64 + FD_HEADROOM > soft {
        tracing::warn!(
            "limits.max_connections is {max_connections}, but this process may open only {soft} files; raise the limit (`ulimit -n`, LimitNOFILE=) or lower limits.max_connections below {}",
            soft.saturating_sub(FD_HEADROOM)
        );
    }
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when unlimited or unknown.
fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_files_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(open_files_soft_limit(text), Some(1024));
        assert_eq!(
            open_files_soft_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(open_files_soft_limit(""), None);
    }
}
