//! Glob-per-segment matching of policy patterns against request paths.

/// Whether `pattern` matches `path`. Both are split at `/`; they must have the same number of
/// segments, and each pattern segment must match its path segment, with `*` standing for any
/// run of non-`/` characters and `?` for one. An empty pattern never matches.
pub fn matches(pattern: &str, path: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let mut pat = pattern.split('/');
    let mut seg = path.split('/');
    loop {
        match (pat.next(), seg.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if segment_matches(p.as_bytes(), s.as_bytes()) => {}
            _ => return false,
        }
    }
}

/// Matches one segment, iteratively with one backtrack point for the last `*`, so a hostile
/// pattern cannot make matching exponential.
fn segment_matches(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) && pat[p] != b'*' {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// A pattern that policies refuse to store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The offending pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a pattern when a policy is written. KES eras before 2023 allowed `[...]` classes and
/// `\` escapes; we do not, and say so instead of silently never matching.
pub fn validate(pattern: &str) -> Result<(), PatternError> {
    let err = |reason| {
        Err(PatternError {
            pattern: pattern.to_owned(),
            reason,
        })
    };
    if pattern.is_empty() {
        return err("a pattern must not be empty");
    }
    if !pattern.starts_with('/') {
        return err("a pattern is an API path and starts with '/'");
    }
    if pattern.contains(['[', ']', '\\']) {
        return err("'*' and '?' are the only wildcards; '[', ']' and '\\' are not supported");
    }
    if pattern.len() > 1024 {
        return err("a pattern is at most 1024 bytes");
    }
    Ok(())
}

/// The path a policy is matched against: the bare list routes are taken in their slash form,
/// so `/v1/key/list/*` also allows MinIO's empty-prefix listing of `/v1/key/list`.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    const BARE_LISTS: [&str; 4] = [
        "/v1/key/list",
        "/v1/policy/list",
        "/v1/identity/list",
        "/v1/enclave/list",
    ];
    if BARE_LISTS.contains(&path) {
        std::borrow::Cow::Owned(format!("{path}/"))
    } else {
        std::borrow::Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_within_one_segment() {
        assert!(matches("/v1/key/*", "/v1/key/"));
        assert!(!matches("/v1/key/*", "/v1/key/create/my-key"));
        assert!(matches("/v1/key/*/*", "/v1/key/create/my-key"));
        assert!(matches("/v1/key/*/*", "/v1/key/list/"));
        assert!(!matches("/v1/key/*/*", "/v1/policy/read/x"));
        assert!(matches(
            "/v1/key/generate/minio-*",
            "/v1/key/generate/minio-1"
        ));
        assert!(!matches(
            "/v1/key/generate/minio-*",
            "/v1/key/generate/other"
        ));
        assert!(matches("/v1/*/decrypt/*", "/v1/key/decrypt/k"));
        assert!(matches("/v1/metrics", "/v1/metrics"));
        assert!(!matches("/v1/metrics", "/v1/metrics/"));
        assert!(!matches("", "/"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(matches("/v1/key/create/k?", "/v1/key/create/k1"));
        assert!(!matches("/v1/key/create/k?", "/v1/key/create/k"));
        assert!(!matches("/v1/key/create/k?", "/v1/key/create/k12"));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pat = format!("/{}b", "*a".repeat(40));
        let path = format!("/{}", "a".repeat(200));
        assert!(!matches(&pat, &path));
        assert!(matches("/a*b*c", "/axxbyyc"));
        assert!(matches("/**", "/anything"));
    }

    #[test]
    fn validation_refuses_classes_and_escapes() {
        assert!(validate("/v1/key/[ab]").is_err());
        assert!(validate("/v1/key/\\*").is_err());
        assert!(validate("").is_err());
        assert!(validate("v1/key").is_err());
        assert!(validate("/v1/key/*/*").is_ok());
    }

    #[test]
    fn bare_lists_take_the_slash_form() {
        assert_eq!(normalize_path("/v1/key/list"), "/v1/key/list/");
        assert_eq!(normalize_path("/v1/key/list/a"), "/v1/key/list/a");
        assert!(matches("/v1/key/list/*", &normalize_path("/v1/key/list")));
    }
}
