//! `keystore:` — refused, because a kes-cluster node is the key store.
//!
//! KES's own sample config carries a `keystore:` skeleton with every store present and every
//! value empty, and that sample must load. So the rule is about values, not the key: a section
//! that names any store setting is refused with the message the contract §10 fixes, and an
//! all-empty skeleton is ignored with a warning. The interval knobs the skeleton fills in
//! (`status.ping`, `credentials.retry`) do not select a store and do not count. `${ENV}`
//! references are not expanded here: a reference is a setting, set or not.

use serde_yaml_ng::Value;

use super::ConfigError;
use super::reader::Field;

/// Keys whose values the KES sample fills in without choosing a store.
const INTERVAL_KEYS: [&str; 2] = ["ping", "retry"];

pub(crate) fn check(field: &Field<'_>) -> Result<(), ConfigError> {
    if let Some(key) = first_setting(field.value(), field.path(), None) {
        return Err(ConfigError::Keystore { key });
    }
    if !field.value().is_null() {
        field.warn(format!(
            "`{}` has no values and is ignored: kes-cluster keeps keys itself: configure `seal:` instead, and remove the section",
            field.path()
        ));
    }
    Ok(())
}

/// The dotted path of the first value that would configure a store.
fn first_setting(value: &Value, path: &str, key: Option<&str>) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Tagged(_) => match key {
            Some(k) if INTERVAL_KEYS.contains(&k) => None,
            _ => Some(path.to_owned()),
        },
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_setting(v, &format!("{path}[{i}]"), key)),
        Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            let name = match k {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            first_setting(v, &format!("{path}.{name}"), Some(&name))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(yaml: &str) -> Option<String> {
        let v: Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
        first_setting(&v, "keystore", None)
    }

    #[test]
    fn empty_skeletons_select_nothing() {
        assert_eq!(first("fs: {path: \"\"}"), None);
        assert_eq!(first("vault: {endpoint: \"\", status: {ping: 10s}}"), None);
        assert_eq!(first("gcp: {secretmanager: {scopes: [\"\"]}}"), None);
        assert_eq!(first("~"), None);
    }

    #[test]
    fn any_setting_selects_a_store() {
        assert_eq!(
            first("fs: {path: ./keys}").as_deref(),
            Some("keystore.fs.path")
        );
        assert_eq!(
            first("vault: {endpoint: \"${VAULT}\"}").as_deref(),
            Some("keystore.vault.endpoint")
        );
        assert_eq!(
            first("kes: {endpoint: [\"\", https://a]}").as_deref(),
            Some("keystore.kes.endpoint[1]")
        );
    }
}
