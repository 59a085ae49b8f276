//! `policy:` — named allow/deny pattern lists and the identities assigned to them.

use std::collections::{BTreeMap, BTreeSet};

use super::ConfigError;
use super::names::is_valid_name;
use super::reader::{Field, items};

/// One entry of `policy:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `allow`: path patterns a request must match one of.
    pub allow: Vec<String>,
    /// `deny`: path patterns a request must match none of; checked first.
    pub deny: Vec<String>,
    /// `identities`: the identities this policy applies to; none of them is in another policy.
    pub identities: Vec<String>,
}

pub(crate) fn parse(field: &Field<'_>) -> Result<BTreeMap<String, PolicyConfig>, ConfigError> {
    let mut sec = field.section()?;
    let mut policies = BTreeMap::new();
    for (name, entry) in sec.take_all() {
        if !is_valid_name(&name) {
            return Err(ConfigError::PolicyName {
                key: entry.path().to_owned(),
                name,
            });
        }
        let mut e = entry.section()?;
        let allow = e.take("allow");
        let deny = e.take("deny");
        let identities = e.take("identities");
        // KES up to v0.16 called the allow list `paths`.
        e.finish_with(&[("paths", "KES renamed this key: write `allow:` instead")])?;
        let policy = PolicyConfig {
            // Patterns are taken as written: KES never expands `${...}` in them, and a `$` in
            // a path pattern is a literal character.
            allow: patterns(&name, allow.map(Field::verbatim))?,
            deny: patterns(&name, deny.map(Field::verbatim))?,
            identities: identities_of(identities)?,
        };
        policies.insert(name, policy);
    }
    Ok(policies)
}

fn patterns(policy: &str, field: Option<Field<'_>>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for item in items(&field)? {
        let pattern = item.text()?.unwrap_or_default();
        check_pattern(policy, &pattern)?;
        out.push(pattern);
    }
    Ok(out)
}

/// Refuses what the glob-per-segment matcher would never match as the writer meant: classes and
/// escapes were Go `path.Match` syntax in older KES eras, and silently treating them as literal
/// characters would turn an allow rule into a rule that allows nothing (or a deny rule into one
/// that denies nothing).
pub(crate) fn check_pattern(policy: &str, pattern: &str) -> Result<(), ConfigError> {
    let reason = if pattern.is_empty() {
        "is empty and would match nothing; remove it"
    } else if pattern.contains(['[', ']', '\\']) {
        "uses '[', ']' or '\\', which kes-cluster does not support: '*' and '?' are the only wildcards (each within one path segment), so list the alternatives as separate patterns"
    } else if !pattern.starts_with('/') {
        "is not an API path; patterns start with '/', for example /v1/key/generate/my-app*"
    } else {
        return Ok(());
    };
    Err(ConfigError::PolicyPattern {
        policy: policy.to_owned(),
        pattern: pattern.to_owned(),
        reason,
    })
}

fn identities_of(field: Option<Field<'_>>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for item in items(&field)? {
        // The KES page promises that the server starts when an identity's variable is unset;
        // the expansion has already warned about it, and the empty entry assigns nobody.
        let Some(id) = item.optional_string()? else {
            continue;
        };
        if !is_valid_name(&id) {
            return Err(ConfigError::invalid(
                item.path(),
                format!(
                    "'{id}' is not a valid identity; use the hex SHA-256 that `kes-cluster identity of CERT` prints"
                ),
            ));
        }
        if out.contains(&id) {
            return Err(ConfigError::invalid(
                item.path(),
                format!("the identity {id} is listed twice in this policy; remove one"),
            ));
        }
        out.push(id);
    }
    Ok(out)
}

/// Each identity belongs to at most one policy, and never the admin: the admin bypasses
/// policies, so listing it would suggest a restriction that does not exist.
pub(crate) fn check_assignments(
    policies: &BTreeMap<String, PolicyConfig>,
    admin: Option<&str>,
) -> Result<(), ConfigError> {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, policy) in policies {
        let mut seen = BTreeSet::new();
        for id in &policy.identities {
            if Some(id.as_str()) == admin {
                return Err(ConfigError::AdminInPolicy {
                    identity: id.clone(),
                    policy: name.clone(),
                });
            }
            if !seen.insert(id.as_str()) {
                continue;
            }
            if let Some(first) = owner.insert(id, name) {
                return Err(ConfigError::IdentityInTwoPolicies {
                    identity: id.clone(),
                    first: first.to_owned(),
                    second: name.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_refused_and_accepted() {
        for bad in [
            "",
            "/v1/key/[ab]",
            "/v1/key/create/a]",
            "/v1/key/\\*",
            "v1/key/*",
        ] {
            assert!(check_pattern("p", bad).is_err(), "{bad}");
        }
        for good in [
            "/v1/key/*/*",
            "/v1/key/create/my-app?",
            "/v1/status",
            "/v1/$x",
        ] {
            assert!(check_pattern("p", good).is_ok(), "{good}");
        }
        let err = check_pattern("my-app", "/v1/key/[ab]").expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("my-app") && msg.contains("/v1/key/[ab]"),
            "{msg}"
        );
        assert!(msg.contains("'*' and '?' are the only wildcards"), "{msg}");
    }

    #[test]
    fn assignments() {
        let p = |ids: &[&str]| PolicyConfig {
            identities: ids.iter().map(|s| s.to_string()).collect(),
            ..PolicyConfig::default()
        };
        let mut policies = BTreeMap::new();
        policies.insert("a".to_owned(), p(&["x", "y"]));
        policies.insert("b".to_owned(), p(&["z"]));
        assert!(check_assignments(&policies, Some("admin")).is_ok());
        assert!(matches!(
            check_assignments(&policies, Some("z")),
            Err(ConfigError::AdminInPolicy { .. })
        ));
        policies.insert("c".to_owned(), p(&["y"]));
        assert!(matches!(
            check_assignments(&policies, None),
            Err(ConfigError::IdentityInTwoPolicies { ref first, ref second, .. }) if first == "a" && second == "c"
        ));
    }
}
