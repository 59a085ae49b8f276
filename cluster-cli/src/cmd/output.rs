//! Small formatting helpers shared by the subcommands.

use base64::Engine;
use serde::Serialize;

use kes_cluster::{Error, Result};

/// Pretty JSON plus a newline.
pub(crate) fn json<T: Serialize>(value: &T) -> Result<String> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Protocol(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// One item per line.
pub(crate) fn lines<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("{}\n", s.as_ref())).collect()
}

/// `label  value` rows with the values aligned; empty values are left out.
pub(crate) fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

/// Standard base64, as the KES API encodes bytes.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a base64 argument, naming it when it is not base64.
pub(crate) fn unb64(what: &str, value: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| Error::Config(format!("{what} must be base64 (e.g. from `base64`): {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_fields_skip_empty_values() {
        let text = fields(&[
            ("Name", "k".into()),
            ("Created by", String::new()),
            ("Algorithm", "AES256".into()),
        ]);
        assert_eq!(text, "Name        k\nAlgorithm   AES256\n");
    }

    #[test]
    fn base64_arguments() {
        assert_eq!(unb64("context", "aGk=").unwrap(), b"hi");
        assert!(
            matches!(unb64("context", "h i"), Err(Error::Config(m)) if m.starts_with("context must be base64"))
        );
    }
}
