//! Reads an `strace -f -ttt -T -yy` log of a node and finds every acknowledgement that rests on
//! a byte the node had not synced.
//!
//! The rule, checked at the instant the node starts sending each acknowledgement:
//! * every file under the data directory that was written before that instant was fsync'ed or
//!   fdatasync'ed after its last write (a sync covers the writes that ended before it started);
//! * every entry created under the data directory before that instant (an `O_CREAT` open, a
//!   `mkdir`, the target of a `rename`), and the data directory itself, had its parent
//!   directory fsync'ed after it was made.
//!
//! One file is exempt: sled's `state/db` holds the applied state, which the synced Raft log and
//! snapshot rebuild after a crash, and sled writes it whenever it likes. (What it holds that
//! they do not, the vote and the log's purge mark, is synced when written; no acknowledgement
//! waits for either.) Instead, the Raft log's own files answer for every acknowledged write:
//! in the write's window (request sent .. acknowledgement) a file under the log's directory is
//! written, and then synced before the acknowledgement.
//!
//! `sync_file_range` is not a sync: it neither flushes the disk's cache nor the metadata.

use std::collections::HashMap;

/// The syscalls the checker needs, as `strace -e trace=` takes them.
pub const TRACED: &str = "openat,creat,write,pwrite64,writev,pwritev,pwritev2,ftruncate,\
fallocate,fsync,fdatasync,sync_file_range,rename,renameat,renameat2,mkdir,mkdirat,unlink,\
unlinkat,rmdir,sendto,sendmsg";

/// What one traced syscall did to the things the checker follows.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Bytes (or the length) of a regular file changed.
    Write(String),
    /// The file or directory was fsync'ed or fdatasync'ed.
    Sync(String),
    /// A directory entry may have been made (the path is new, or was opened with `O_CREAT`).
    Create(String),
    /// A file moved: its unsynced writes move with it, and the new name is a new entry.
    Rename(String, String),
    /// A directory entry went away.
    Remove(String),
    /// Bytes went out on a TCP socket whose local port is this one.
    Send(u16),
}

/// One completed syscall: when it started, when it returned, and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub start: f64,
    pub end: f64,
    pub effect: Effect,
}

/// Parses a whole trace. Lines the checker does not need (failed calls, signals, exits, other
/// syscalls) are skipped; `<unfinished ...>` halves are joined with their `resumed` halves.
pub fn parse(text: &str) -> Vec<Event> {
    let mut pending: HashMap<&str, (f64, String)> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        // `pid ts call`; strace pads the pid with spaces.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let (start, call) = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, (ts, head.to_owned()));
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            // `<... name resumed>rest`: the head was printed by the unfinished line.
            let Some((_, tail)) = tail.split_once(" resumed>") else {
                continue;
            };
            let Some((start, head)) = pending.remove(pid) else {
                continue;
            };
            (start, format!("{head}{tail}"))
        } else {
            (ts, rest.to_owned())
        };
        if let Some(e) = parse_call(start, &call) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.end.total_cmp(&b.end));
    out
}

/// The size of a TLS 1.3 alert record as sent.
const TLS13_ALERT_RECORD: &str = "24";

/// `name(args) = ret <duration>` into an event, or `None` when it failed or does not matter.
fn parse_call(start: f64, call: &str) -> Option<Event> {
    let (name, rest) = call.split_once('(')?;
    let (args, result) = rest.rsplit_once(") = ")?;
    let (ret, duration) = result.rsplit_once(" <")?;
    if ret.starts_with('-') || ret.starts_with('?') {
        return None; // failed: nothing changed
    }
    let duration: f64 = duration.strip_suffix('>')?.parse().ok()?;
    let end = start + duration;
    let fd_path = || decoration(args);
    let effect = match name {
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "ftruncate" | "fallocate"
        | "sendto" | "sendmsg" => {
            let target = fd_path()?;
            match tcp_local_port(&target) {
                // 24 bytes is a TLS 1.3 alert record (5 of header, 2 of alert, 1 of content
                // type, 16 of tag): the close_notify of a connection that is ending, such as
                // one of the readiness polls, never an answer.
                Some(_) if ret == TLS13_ALERT_RECORD => return None,
                Some(port) => Effect::Send(port),
                // A regular file; devices carry a nested decoration (`/dev/null<char 1:3>`).
                None if target.starts_with('/')
                    && !target.contains('<')
                    && !name.starts_with("send") =>
                {
                    Effect::Write(live(&target)?)
                }
                None => return None,
            }
        }
        "fsync" | "fdatasync" => Effect::Sync(live(&fd_path()?)?),
        "openat" | "creat" => {
            let flags = if name == "creat" { "O_CREAT" } else { args };
            if !flags.contains("O_CREAT") {
                return None;
            }
            Effect::Create(live(&decoration(ret)?)?)
        }
        "mkdir" => Effect::Create(quoted(args, 0, None)?),
        "mkdirat" => Effect::Create(at_path(args, 0)?),
        "rename" => Effect::Rename(quoted(args, 0, None)?, quoted(args, 1, None)?),
        "renameat" | "renameat2" => Effect::Rename(at_path(args, 0)?, at_path(args, 2)?),
        "unlink" | "rmdir" => Effect::Remove(quoted(args, 0, None)?),
        "unlinkat" => Effect::Remove(at_path(args, 0)?),
        _ => return None,
    };
    Some(Event { start, end, effect })
}

/// The `-yy` decoration of the first fd in `s`: `7</a/b>` gives `/a/b` (nested `<>`, as in
/// `2</dev/null<char 1:3>>`, are kept whole, and so is the arrow of a socket's
/// `[local->peer]`).
fn decoration(s: &str) -> Option<String> {
    let open = s.find('<')?;
    let mut depth = 0;
    let mut prev = ' ';
    for (i, c) in s[open..].char_indices() {
        let arrow = prev == '-';
        prev = c;
        match c {
            '<' => depth += 1,
            '>' if !arrow => {
                depth -= 1;
                if depth == 0 {
                    return Some(s[open + 1..open + i].to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// A path that still names the file (strace marks unlinked ones ` (deleted)`).
fn live(path: &str) -> Option<String> {
    (!path.ends_with(" (deleted)")).then(|| path.to_owned())
}

/// `TCP:[127.0.0.1:7373->127.0.0.1:40000]` (or `TCPv6:[[::1]:7373->...]`) gives 7373.
fn tcp_local_port(decoration: &str) -> Option<u16> {
    let inner = decoration.strip_prefix("TCP")?;
    let (local, _) = inner.split_once("->")?;
    local.rsplit_once(':')?.1.parse().ok()
}

/// The `n`th quoted string of `args`, joined to `dir` when it is relative.
fn quoted(args: &str, n: usize, dir: Option<&str>) -> Option<String> {
    let s = args.split('"').nth(2 * n + 1)?;
    Some(match dir {
        Some(d) if !s.starts_with('/') => format!("{d}/{s}"),
        _ => s.to_owned(),
    })
}

/// The path of an `*at` call: the directory fd's decoration (argument `fd_arg`, counted by
/// commas) joined with the quoted name that follows it.
fn at_path(args: &str, fd_arg: usize) -> Option<String> {
    let from_fd = args.split(", ").skip(fd_arg).collect::<Vec<_>>().join(", ");
    let dir = decoration(&from_fd)?;
    quoted(&from_fd, 0, Some(&dir))
}

/// One acknowledgement the workload received.
#[derive(Debug, Clone)]
pub struct Ack {
    /// What it acknowledged, for the report.
    pub what: String,
    /// When the request was sent (wall clock, as strace prints it).
    pub sent: f64,
    /// When the node started sending the answer.
    pub at: f64,
    /// Whether it acknowledged a write (the Raft log rule applies to it).
    pub write: bool,
}

/// The first send on `port` in `[sent, received]`: the moment the node acknowledged.
pub fn ack_instant(events: &[Event], port: u16, sent: f64, received: f64) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.effect == Effect::Send(port) && e.start >= sent && e.start <= received)
        .map(|e| e.start)
        .min_by(f64::total_cmp)
}

/// One acknowledgement that rests on something unsynced.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The acknowledgement (`Ack::what`).
    pub ack: String,
    /// The file or entry that was not synced.
    pub path: String,
    /// `"written"` (its bytes) or `"created"` (its directory entry).
    pub problem: &'static str,
    /// When it was written or made, and when the ack went out.
    pub made: f64,
    pub ack_at: f64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.problem {
            "created" => "its directory was not synced",
            _ => "it was not synced",
        };
        write!(
            f,
            "{}: {} was {} at {:.6} and {what} before the ack at {:.6}",
            self.ack, self.path, self.problem, self.made, self.ack_at
        )
    }
}

/// Moves every entry of `map` whose key `moved` renames to the new key, its value passed
/// through `fix`.
fn rename_keys<V>(
    map: &mut HashMap<String, V>,
    moved: &dyn Fn(&String) -> Option<String>,
    fix: impl Fn(V) -> V,
) {
    let keys: Vec<String> = map.keys().filter(|k| moved(k).is_some()).cloned().collect();
    for k in keys {
        let v = map.remove(&k).expect("listed above");
        map.insert(moved(&k).expect("listed above"), fix(v));
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// Where a node keeps what the rules look at.
pub struct Layout<'a> {
    /// Everything under it is checked.
    pub data_dir: &'a str,
    /// The one file rebuilt from the log after a crash (see the module doc).
    pub replayed: &'a str,
    /// The Raft log's directory.
    pub log_dir: &'a str,
}

/// Every way the acknowledgements in `acks` rest on something unsynced under the data dir.
pub fn violations(events: &[Event], layout: &Layout, acks: &[Ack]) -> Vec<Violation> {
    let (data_dir, log_file) = (layout.data_dir, layout.replayed);
    let ours = |p: &str| p == data_dir || p.starts_with(&format!("{data_dir}/"));
    let mut acks: Vec<&Ack> = acks.iter().collect();
    acks.sort_by(|a, b| a.at.total_cmp(&b.at));
    // Unsynced write end times per file; unsynced entries (path, made at) per directory.
    let mut unsynced: HashMap<String, Vec<f64>> = HashMap::new();
    let mut entries: HashMap<String, Vec<(String, f64)>> = HashMap::new();
    let mut found = Vec::new();
    let mut next = 0;
    for ack in acks {
        while next < events.len() && events[next].end <= ack.at {
            let e = &events[next];
            next += 1;
            match &e.effect {
                Effect::Write(p) if ours(p) && p != log_file => {
                    unsynced.entry(p.clone()).or_default().push(e.end)
                }
                Effect::Sync(p) => {
                    if let Some(w) = unsynced.get_mut(p) {
                        w.retain(|t| *t > e.start);
                    }
                    if let Some(made) = entries.get_mut(p) {
                        made.retain(|(_, t)| *t > e.start);
                    }
                }
                Effect::Create(p) if ours(p) => entries
                    .entry(parent(p).to_owned())
                    .or_default()
                    .push((p.clone(), e.end)),
                Effect::Rename(from, to) => {
                    // A renamed directory takes what is unsynced under it along.
                    let moved = |p: &String| {
                        p.strip_prefix(from.as_str())
                            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                            .map(|rest| format!("{to}{rest}"))
                    };
                    rename_keys(&mut unsynced, &moved, |w| w);
                    rename_keys(&mut entries, &moved, |made| {
                        made.into_iter()
                            .map(|(q, t)| (moved(&q).unwrap_or(q), t))
                            .collect()
                    });
                    if ours(to) {
                        let dir = entries.entry(parent(to).to_owned()).or_default();
                        dir.push((to.clone(), e.end));
                    }
                }
                Effect::Remove(p) => {
                    // A removed directory takes everything under it along.
                    let under = |q: &String| {
                        q.strip_prefix(p.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                    };
                    unsynced.retain(|q, _| !under(q));
                    entries.retain(|dir, _| !under(dir));
                    if let Some(made) = entries.get_mut(parent(p)) {
                        made.retain(|(q, _)| q != p);
                    }
                }
                _ => {}
            }
        }
        for (path, writes) in &unsynced {
            if let Some(t) = writes.first() {
                found.push(Violation {
                    ack: ack.what.clone(),
                    path: path.clone(),
                    problem: "written",
                    made: *t,
                    ack_at: ack.at,
                });
            }
        }
        for made in entries.values() {
            for (path, t) in made {
                found.push(Violation {
                    ack: ack.what.clone(),
                    path: path.clone(),
                    problem: "created",
                    made: *t,
                    ack_at: ack.at,
                });
            }
        }
        if ack.write {
            found.extend(log_rule(events, layout.log_dir, ack));
        }
    }
    found
}

/// The Raft log rule in one acknowledged write's window: a log file is written, and synced
/// after its first write in the window.
fn log_rule(events: &[Event], log_dir: &str, ack: &Ack) -> Option<Violation> {
    let in_window = |e: &&Event| e.start >= ack.sent && e.end <= ack.at;
    let in_log = |p: &str| p.starts_with(&format!("{log_dir}/"));
    let violation = |problem, made| Violation {
        ack: ack.what.clone(),
        path: log_dir.to_owned(),
        problem,
        made,
        ack_at: ack.at,
    };
    let Some(first_write) = events
        .iter()
        .filter(in_window)
        .filter_map(|e| match &e.effect {
            Effect::Write(p) if in_log(p) => Some((p, e.end)),
            _ => None,
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return Some(violation("never written", ack.sent));
    };
    let synced = events.iter().filter(in_window).any(|e| {
        matches!(&e.effect, Effect::Sync(p) if p == first_write.0) && e.start >= first_write.1
    });
    (!synced).then(|| violation("written", first_write.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as strace 6.1 prints them with `-f -ttt -T -yy -s 0`.
    const SAMPLE: &str = r#"20779  1000.000000 mkdir("/d", 0777) = 0 <0.001000>
20779 1000.010000 openat(AT_FDCWD</tmp>, "/d/a", O_WRONLY|O_CREAT|O_CLOEXEC, 0600) = 3</d/a> <0.000100>
20779 1000.020000 write(3</d/a>, ""..., 10) = 10 <0.000100>
20779 1000.030000 pwrite64(3</d/a>, ""..., 1, 3) = 1 <0.000100>
20780 1000.040000 fdatasync(3</d/a> <unfinished ...>
20779 1000.041000 openat(AT_FDCWD</tmp>, "/etc/x", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000091>
20780 1000.050000 <... fdatasync resumed>) = 0 <0.010000>
20779 1000.060000 rename("/d/a", "/d/b") = 0 <0.001000>
20779 1000.070000 fsync(4</d>) = 0 <0.002000>
20779 1000.080000 sendto(5<TCP:[127.0.0.1:7373->127.0.0.1:42480]>, ""..., 5, 0, NULL, 0) = 5 <0.000087>
20779 1000.090000 write(2</dev/null<char 1:3>>, ""..., 221) = 221 <0.000084>
20779 1000.100000 renameat2(AT_FDCWD</d>, "c.tmp", AT_FDCWD</d>, "c", RENAME_NOREPLACE) = 0 <0.000100>
20779 1000.110000 unlinkat(AT_FDCWD</d>, "c", 0) = 0 <0.000100>
20779 1000.120000 +++ exited with 0 +++
"#;

    fn at(t: f64) -> impl Fn(&Event) -> bool {
        move |e| (e.start - t).abs() < 1e-9
    }

    #[test]
    fn parses_each_kind_of_line() {
        let ev = parse(SAMPLE);
        let find = |t| ev.iter().find(|e| at(t)(e)).map(|e| e.effect.clone());
        assert_eq!(find(1000.0), Some(Effect::Create("/d".into())));
        assert_eq!(find(1000.01), Some(Effect::Create("/d/a".into())));
        assert_eq!(find(1000.02), Some(Effect::Write("/d/a".into())));
        assert_eq!(find(1000.03), Some(Effect::Write("/d/a".into())));
        assert_eq!(
            find(1000.04),
            Some(Effect::Sync("/d/a".into())),
            "joined halves"
        );
        assert_eq!(find(1000.041), None, "failed calls change nothing");
        assert_eq!(
            find(1000.06),
            Some(Effect::Rename("/d/a".into(), "/d/b".into()))
        );
        assert_eq!(find(1000.07), Some(Effect::Sync("/d".into())));
        assert_eq!(find(1000.08), Some(Effect::Send(7373)));
        assert_eq!(find(1000.09), None, "not a path: a device");
        assert_eq!(
            find(1000.1),
            Some(Effect::Rename("/d/c.tmp".into(), "/d/c".into()))
        );
        assert_eq!(find(1000.11), Some(Effect::Remove("/d/c".into())));
        let joined = ev.iter().find(|e| at(1000.04)(e)).unwrap();
        assert!((joined.end - 1000.05).abs() < 1e-9, "ends when it returned");
    }

    const LAYOUT: Layout = Layout {
        data_dir: "/d",
        replayed: "/d/db",
        log_dir: "/d/log",
    };

    fn ack(at: f64) -> Ack {
        Ack {
            what: "ack".into(),
            sent: 999.0,
            at,
            write: false,
        }
    }

    fn ev(start: f64, end: f64, effect: Effect) -> Event {
        Event { start, end, effect }
    }

    #[test]
    fn a_write_needs_a_sync_that_starts_after_it_and_ends_before_the_ack() {
        let w = ev(1.0, 1.1, Effect::Write("/d/f".into()));
        let early = ev(1.05, 1.3, Effect::Sync("/d/f".into()));
        let late = ev(1.2, 1.6, Effect::Sync("/d/f".into()));
        let events = [w, early, late];
        assert_eq!(violations(&events, &LAYOUT, &[ack(1.5)]).len(), 1);
        assert!(violations(&events, &LAYOUT, &[ack(1.7)]).is_empty());
        assert!(
            violations(&events, &LAYOUT, &[ack(0.5)]).is_empty(),
            "nothing written yet"
        );
    }

    #[test]
    fn a_new_entry_needs_its_directory_synced() {
        let events = [
            ev(1.0, 1.1, Effect::Create("/d/f".into())),
            ev(1.2, 1.3, Effect::Sync("/d/f".into())),
            ev(1.4, 1.5, Effect::Rename("/d/f".into(), "/d/g".into())),
            ev(1.6, 1.7, Effect::Sync("/d".into())),
        ];
        let v = violations(&events, &LAYOUT, &[ack(1.35)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].path.as_str(), v[0].problem), ("/d/f", "created"));
        let v = violations(&events, &LAYOUT, &[ack(1.55)]);
        assert_eq!(v.len(), 2, "both names still unsynced: {v:?}");
        assert!(violations(&events, &LAYOUT, &[ack(1.8)]).is_empty());
    }

    #[test]
    fn unsynced_writes_follow_their_directory_renamed_and_go_with_it_removed() {
        let events = [
            ev(1.0, 1.1, Effect::Write("/d/s/blobs/1".into())),
            ev(1.2, 1.3, Effect::Rename("/d/s".into(), "/d/s.old".into())),
            ev(1.4, 1.5, Effect::Sync("/d".into())),
            ev(1.6, 1.7, Effect::Create("/d/s.old/snap.tmp".into())),
            ev(
                1.6,
                1.7,
                Effect::Rename("/d/s.old/snap.tmp".into(), "/d/s.old/snap".into()),
            ),
            ev(1.8, 1.9, Effect::Remove("/d/s.old/blobs/1".into())),
            ev(1.8, 1.9, Effect::Remove("/d/s.old/snap".into())),
            ev(1.8, 1.9, Effect::Remove("/d/s.old".into())),
            ev(2.0, 2.1, Effect::Sync("/d".into())),
        ];
        let v = violations(&events, &LAYOUT, &[ack(1.55)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, "/d/s.old/blobs/1");
        let v = violations(&events, &LAYOUT, &[ack(2.2)]);
        assert!(
            v.is_empty(),
            "the directory is gone, with what was unsynced in it: {v:?}"
        );
    }

    #[test]
    fn a_tls_alert_is_not_an_answer() {
        let close_notify =
            "writev(5<TCP:[127.0.0.1:7373->127.0.0.1:4000]>, [...], 1) = 24 <0.000010>";
        assert_eq!(parse_call(1000.0, close_notify), None);
        let answer = "writev(5<TCP:[127.0.0.1:7373->127.0.0.1:4000]>, [...], 1) = 97 <0.000010>";
        assert_eq!(
            parse_call(1000.0, answer).map(|e| e.effect),
            Some(Effect::Send(7373))
        );
    }

    #[test]
    fn unsynced_writes_follow_a_rename() {
        let events = [
            ev(1.0, 1.1, Effect::Write("/d/f.tmp".into())),
            ev(1.2, 1.3, Effect::Rename("/d/f.tmp".into(), "/d/f".into())),
            ev(1.4, 1.5, Effect::Sync("/d".into())),
        ];
        let v = violations(&events, &LAYOUT, &[ack(1.6)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].path.as_str(), v[0].problem), ("/d/f", "written"));
    }

    #[test]
    fn files_outside_the_data_dir_and_removed_files_do_not_count() {
        let events = [
            ev(1.0, 1.1, Effect::Write("/elsewhere/log".into())),
            ev(1.0, 1.1, Effect::Create("/d/blob".into())),
            ev(1.0, 1.1, Effect::Write("/d/blob".into())),
            ev(1.2, 1.3, Effect::Remove("/d/blob".into())),
        ];
        assert!(violations(&events, &LAYOUT, &[ack(1.5)]).is_empty());
    }

    #[test]
    fn a_write_ack_needs_a_log_write_in_its_window_synced_after_it() {
        let log = || "/d/log/1.log".to_string();
        let write_ack = |sent, at| Ack {
            what: "put".into(),
            sent,
            at,
            write: true,
        };
        let events = [
            ev(1.0, 1.1, Effect::Write(log())),
            ev(1.2, 1.3, Effect::Sync(log())),
            ev(1.4, 1.5, Effect::Write("/d/db".into())), // applied state: replayable, allowed
            ev(2.0, 2.1, Effect::Sync(log())),           // a sync before the write: not enough
            ev(2.2, 2.3, Effect::Write(log())),
            ev(2.6, 2.7, Effect::Sync(log())),
        ];
        assert!(violations(&events, &LAYOUT, &[write_ack(0.9, 1.6)]).is_empty());
        let v = violations(&events, &LAYOUT, &[write_ack(1.9, 2.4)]);
        assert_eq!(
            v.len(),
            2,
            "unsynced, and not synced after its write: {v:?}"
        );
        let v = violations(&events, &LAYOUT, &[write_ack(3.0, 3.5)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].problem, "never written");
        let read = Ack {
            write: false,
            ..write_ack(3.0, 3.5)
        };
        assert!(violations(&events, &LAYOUT, &[read]).is_empty());
    }

    #[test]
    fn the_ack_is_the_first_send_on_the_port_in_the_window() {
        let events = [
            ev(1.0, 1.0, Effect::Send(1)),
            ev(2.0, 2.0, Effect::Send(2)),
            ev(3.0, 3.0, Effect::Send(1)),
            ev(4.0, 4.0, Effect::Send(1)),
        ];
        assert_eq!(ack_instant(&events, 1, 1.5, 5.0), Some(3.0));
        assert_eq!(ack_instant(&events, 1, 4.5, 5.0), None);
    }
}
