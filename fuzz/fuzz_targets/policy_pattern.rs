//! Policy patterns: validation, glob-per-segment matching, path normalisation and the
//! deny-before-allow rule.
//!
//! The input is lines: a pattern, a path, and a deny pattern. Invariants: `matches` agrees with
//! an independent reference matcher; a non-empty pattern matches itself; a validated pattern is
//! non-empty, rooted, short and free of `[`, `]`, `\`; deny always wins; normalising is
//! idempotent.
#![no_main]

use kes_node::auth::{Policy, matches, normalize_path, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let deny = lines.next().unwrap_or_default();

    if validate(pattern).is_ok() {
        assert!(pattern.starts_with('/') && pattern.len() <= 1024);
        assert!(!pattern.contains(['[', ']', '\\']));
    }
    let matched = matches(pattern, path);
    assert_eq!(
        matched,
        reference_matches(pattern, path),
        "{pattern:?} vs {path:?}"
    );
    if !pattern.is_empty() {
        assert!(
            matches(pattern, pattern),
            "{pattern:?} does not match itself"
        );
    }

    let normalized = normalize_path(path);
    assert_eq!(normalize_path(&normalized), normalized);

    let policy = Policy {
        allow: vec![pattern.to_owned()],
        deny: vec![deny.to_owned()],
    };
    let allowed = policy.allows(path);
    assert_eq!(allowed, matched && !matches(deny, path));
    let deny_all = Policy {
        allow: vec![pattern.to_owned()],
        deny: vec![pattern.to_owned()],
    };
    assert!(!deny_all.allows(path), "an allow that is also denied");
});

/// Segment by segment, each by dynamic programming over (pattern position, text position):
/// written separately from the node's backtracking matcher so the two check each other.
fn reference_matches(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let pats: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    pats.len() == segs.len()
        && pats
            .iter()
            .zip(&segs)
            .all(|(p, s)| segment_reference(p.as_bytes(), s.as_bytes()))
}

fn segment_reference(p: &[u8], s: &[u8]) -> bool {
    // can[j] after row i: whether p[..i] matches s[..j].
    let mut can = vec![false; s.len() + 1];
    can[0] = true;
    for &pc in p {
        let mut next = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            next[j] = match pc {
                b'*' => can[j] || (j > 0 && next[j - 1]),
                b'?' => j > 0 && can[j - 1],
                c => j > 0 && can[j - 1] && s[j - 1] == c,
            };
        }
        can = next;
    }
    can[s.len()]
}
