//! `${NAME}` references, as KES reads them: the whole trimmed value must be the reference; there
//! is no partial interpolation, so `https://${HOST}:7373` stays literal.
//!
//! An unset variable becomes the empty string plus a warning, as the KES configuration page
//! promises ("the server starts even if an environment variable is not present"). Whether an
//! empty value is acceptable is decided by the key that reads it, not here.

/// The variable name if `value` is exactly one `${NAME}` reference (surrounding blanks allowed).
pub(crate) fn reference(value: &str) -> Option<&str> {
    let name = value.trim().strip_prefix("${")?.strip_suffix('}')?;
    // `${A}${B}` would otherwise read as the name `A}${B`.
    if name.is_empty() || name.contains(['{', '}', '$']) {
        return None;
    }
    Some(name)
}

/// The outcome of expanding one value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expanded {
    /// The value was no reference and stays as written.
    Literal,
    /// The reference was replaced by the variable's value.
    Set(String),
    /// The variable is not set; the value is now empty. Holds the variable's name.
    Unset(String),
}

/// Looks up `value` in `env` if it is a reference.
pub(crate) fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Expanded {
    match reference(value) {
        None => Expanded::Literal,
        Some(name) => match env(name) {
            Some(v) => Expanded::Set(v),
            None => Expanded::Unset(name.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_references_count() {
        assert_eq!(reference("${ADMIN}"), Some("ADMIN"));
        assert_eq!(reference("  ${ADMIN}\t"), Some("ADMIN"));
        assert_eq!(reference("$ADMIN"), None);
        assert_eq!(reference("${}"), None);
        assert_eq!(reference("x${ADMIN}"), None);
        assert_eq!(reference("${A}${B}"), None);
        assert_eq!(reference("https://${HOST}:7373"), None);
    }

    #[test]
    fn expands_set_and_unset() {
        let env = |n: &str| (n == "SET").then(|| "value".to_owned());
        assert_eq!(expand("${SET}", &env), Expanded::Set("value".into()));
        assert_eq!(expand("${GONE}", &env), Expanded::Unset("GONE".into()));
        assert_eq!(expand("plain", &env), Expanded::Literal);
    }
}
