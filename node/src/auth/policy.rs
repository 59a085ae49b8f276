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
        if self.deny.iter().any(|p| matches(p, path)) {
            return false;
        }
        self.allow.iter().any(|p| matches(p, path))
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
