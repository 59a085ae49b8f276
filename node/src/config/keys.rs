//! `keys:` — key names created once a leader is known ("already exists" counts as success).

use super::ConfigError;
use super::names::is_valid_name;
use super::reader::Field;

pub(crate) fn parse(field: &Field<'_>) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for item in field.list()? {
        let mut sec = item.section()?;
        let name = sec.take("name");
        sec.finish()?;
        let Some(name) = name else {
            return Err(ConfigError::Missing {
                key: format!("{}.name", item.path()),
                hint: "each entry is `- name: KEY-NAME`",
            });
        };
        let text = name.required_string("give the key's name, or remove the entry")?;
        if !is_valid_name(&text) {
            return Err(ConfigError::invalid(
                name.path(),
                format!(
                    "'{text}' is not a valid key name; use 1 to 80 characters of A-Z, a-z, 0-9, '-' and '_', not starting or ending with '-'"
                ),
            ));
        }
        if names.contains(&text) {
            return Err(ConfigError::invalid(
                name.path(),
                format!("the key {text} is listed twice; remove one entry"),
            ));
        }
        names.push(text);
    }
    Ok(names)
}
