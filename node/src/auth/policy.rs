//! A policy: allow and deny patterns, deny checked first.

use super::matches;
use serde::{Deserialize, Serialize};

/// The rules of one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Paths this policy allows.
    pub allow: Vec<String>,
    /// Paths this policy denies, even when an allow pattern matches.
    pub deny: Vec<String>,
}

impl Policy {
    /// Whether the (normalised) request path is allowed.
    pub fn allows(&self, path: &str) -> bool {
        self.allows_any(&[path])
    }

    /// Whether a request that several paths spell alike is allowed: its canonical route path
    /// and every alias of it (`identity/forget` for `identity/delete`, bulk decrypt for
    /// decrypt). A deny that names any spelling refuses it, so an alias never slips past a
    /// deny; an allow that names any spelling admits it, so policies written for either
    /// spelling keep working.
    pub fn allows_any<S: AsRef<str>>(&self, paths: &[S]) -> bool {
        let any = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| paths.iter().any(|path| matches(p, path.as_ref())))
        };
        !any(&self.deny) && any(&self.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The first `my-policy` table of the KES configuration page, row by row.
    #[test]
    fn seed_table_one() {
        let p = policy(
            &[
                "/v1/key/create/my-key",
                "/v1/key/generate/my-key",
                "/v1/key/decrypt/my-key",
            ],
            &["/v1/key/*/my-key-internal"],
        );
        let rows = [
            ("/v1/key/create/my-key", true),
            ("/v1/key/generate/my-key", true),
            ("/v1/key/create/my-key2", false),
            ("/v1/key/delete/my-key", false),
            ("/v1/policy/write/my-policy", false),
            ("/v0/key/create/my-key", false),
        ];
        for (path, want) in rows {
            assert_eq!(p.allows(path), want, "{path}");
        }
    }

    #[test]
    fn a_deny_on_any_spelling_refuses_every_spelling() {
        let p = policy(
            &["/v1/key/*/*", "/v1/identity/*/*"],
            &["/v1/key/decrypt/secret", "/v1/identity/delete/*"],
        );
        assert!(!p.allows_any(&["/v1/key/bulk/decrypt/secret", "/v1/key/decrypt/secret"]));
        assert!(p.allows_any(&["/v1/key/bulk/decrypt/other", "/v1/key/decrypt/other"]));
        assert!(!p.allows_any(&["/v1/identity/forget/ab", "/v1/identity/delete/ab"]));
        let bulk_only = policy(&["/v1/key/bulk/decrypt/*"], &[]);
        assert!(bulk_only.allows_any(&["/v1/key/bulk/decrypt/k", "/v1/key/decrypt/k"]));
        assert!(!bulk_only.allows_any::<&str>(&[]));
    }

    /// The second table, with globs: a deny pattern wins over an allow pattern.
    #[test]
    fn seed_table_two() {
        let p = policy(
            &[
                "/v1/key/create/my-key*",
                "/v1/key/generate/my-key*",
                "/v1/key/decrypt/my-key*",
                "/v1/key/delete/my-key",
            ],
            &["/v1/key/*/my-key-internal"],
        );
        let rows = [
            ("/v1/key/create/my-key", true),
            ("/v1/key/generate/my-key", true),
            ("/v1/key/create/my-key2", true),
            ("/v1/key/delete/my-key", true),
            ("/v1/key/delete/my-key2", false),
            ("/v1/key/decrypt/my-key-internal", false),
        ];
        for (path, want) in rows {
            assert_eq!(p.allows(path), want, "{path}");
        }
    }
}
