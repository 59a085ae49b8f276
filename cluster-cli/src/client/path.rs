//! Building request paths from user-given names.

/// Percent-encodes one path segment (or query value).
///
/// Valid KES names (`[0-9A-Za-z_-]`) pass unchanged, as does `*`, which list
/// prefixes end with and which the server matches literally. Everything else
/// is escaped so that a name can never add a path segment or a query.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn names_pass_and_the_rest_is_escaped() {
        assert_eq!(segment("my-key_1"), "my-key_1");
        assert_eq!(segment("minio-*"), "minio-*");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
