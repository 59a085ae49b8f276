//! `keys:` — keys created once a leader is known ("already exists" counts as success), and
//! how often each is rotated (`rotate_every`, our extension).

use super::ConfigError;
use super::names::is_valid_name;
use super::reader::Field;

/// One entry of `keys:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// `name`.
    pub name: String,
    /// `rotate_every`: the leader rotates the key this often (whole seconds; 0: never). Set
    /// on a key that exists, the period counts from then. `None`: the file does not say, and
    /// the key keeps what it has (a period given on create, or none).
    pub rotate_every: Option<u64>,
}

impl PartialEq<&str> for KeySpec {
    fn eq(&self, name: &&str) -> bool {
        self.name == *name
    }
}

pub(crate) fn parse(field: &Field<'_>) -> Result<Vec<KeySpec>, ConfigError> {
    let mut keys: Vec<KeySpec> = Vec::new();
    for item in field.list()? {
        let mut sec = item.section()?;
        let name = sec.take("name");
        let rotate_every = sec.take("rotate_every");
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
        if keys.iter().any(|k| k.name == text) {
            return Err(ConfigError::invalid(
                name.path(),
                format!("the key {text} is listed twice; remove one entry"),
            ));
        }
        let rotate_every = match rotate_every {
            None => None,
            Some(f) => match f.duration()? {
                Some(d) if d.is_zero() || d.as_secs() >= 1 => Some(d.as_secs()),
                _ => {
                    return Err(ConfigError::invalid(
                        f.path(),
                        "give a period of at least 1s, such as 720h, or 0 for never",
                    ));
                }
            },
        };
        keys.push(KeySpec {
            name: text,
            rotate_every,
        });
    }
    Ok(keys)
}
