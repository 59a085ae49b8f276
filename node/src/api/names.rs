//! The KES name and list-pattern rules.

use super::ApiError;

/// Whether `name` is a valid key, policy, identity or enclave name: 1–80 bytes of
/// `[0-9A-Za-z_-]`, no `-` at either end, and not the single `_`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 80
        && name != "_"
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Checks a key name, with KES's message.
pub(super) fn key_name(name: &str) -> Result<(), ApiError> {
    check(name, "key name")
}

/// Checks a policy name.
pub(super) fn policy_name(name: &str) -> Result<(), ApiError> {
    check(name, "policy name")
}

/// Checks an enclave name.
pub(super) fn enclave_name(name: &str) -> Result<(), ApiError> {
    check(name, "enclave name")
}

/// Checks an identity.
pub(super) fn identity(id: &str) -> Result<(), ApiError> {
    check(id, "identity")
}

fn check(name: &str, what: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} '{name}' is empty, too long or contains invalid characters"
        )))
    }
}

/// Turns a list pattern into a prefix. `*` or empty means all; one trailing `*` is stripped;
/// anything else must be name-like.
pub(super) fn list_prefix(pattern: &str) -> Result<String, ApiError> {
    let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
    let ok = prefix.is_empty()
        || (prefix.len() <= 80
            && prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    if ok {
        Ok(prefix.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "listing pattern '{pattern}' is empty, too long or is invalid"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        for ok in ["a", "my-key", "A_b-9", &"x".repeat(80)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "_", "-a", "a-", "a/b", "a.b", "ä", &"x".repeat(81)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn list_patterns() {
        assert_eq!(list_prefix("*").unwrap(), "");
        assert_eq!(list_prefix("").unwrap(), "");
        assert_eq!(list_prefix("my*").unwrap(), "my");
        assert_eq!(list_prefix("my").unwrap(), "my");
        assert!(list_prefix("a*b*").is_err());
        assert!(list_prefix("a/b").is_err());
    }
}
