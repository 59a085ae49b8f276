//! The KES name rule, shared by key, policy and identity names: 1 to 80 bytes of
//! `[0-9A-Za-z_-]`, no `-` at either end, and not the lone `_`. Checking it at load time means a
//! name the API would refuse with 400 never gets into the cluster through the config file.

/// Whether `name` follows the KES name rule.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=80).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name != "_"
}

#[cfg(test)]
mod tests {
    use super::is_valid_name;

    #[test]
    fn the_kes_name_rule() {
        for good in ["my-app", "a", "_a", "a_", "A-9_z", "123", &"x".repeat(80)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "_",
            "-a",
            "a-",
            "a b",
            "a/b",
            "a.b",
            "ä",
            "a*",
            &"x".repeat(81),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
