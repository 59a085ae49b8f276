//! A small typed reader over a parsed YAML tree that always knows where it is.
//!
//! Derived serde structs would report an unknown key as "unknown field `alow`" with a line number
//! but without the path, and they cannot expand `${ENV}` inside a boolean or a duration. Reading
//! the tree by hand keeps the full dotted path (`policy.my-app.alow`) for every message, expands
//! references right where a scalar is read, and lets each section list the keys it takes, which
//! is exactly what an unknown-key message should offer.

use std::cell::RefCell;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::ConfigError;
use super::duration::parse_go_duration;
use super::env::{self, Expanded};

/// What one load shares: the environment to expand from and the warnings collected so far.
pub(crate) struct Ctx<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: RefCell<Vec<String>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Ctx {
            env,
            warnings: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn warn(&self, message: impl Into<String>) {
        self.warnings.borrow_mut().push(message.into());
    }

    pub(crate) fn into_warnings(self) -> Vec<String> {
        self.warnings.into_inner()
    }
}

/// How a YAML value looks, for "must be X, but it is Y" messages.
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping of keys",
        Value::Tagged(_) => "a tagged value",
    }
}

/// One value in the tree together with its dotted path.
#[derive(Clone)]
pub(crate) struct Field<'a> {
    cx: &'a Ctx<'a>,
    path: String,
    value: &'a Value,
    expand: bool,
}

impl<'a> Field<'a> {
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn value(&self) -> &'a Value {
        self.value
    }

    /// Records a warning for the caller of the load.
    pub(crate) fn warn(&self, message: impl Into<String>) {
        self.cx.warn(message);
    }

    /// This value (and everything below it) is read as written, without `${ENV}` expansion.
    pub(crate) fn verbatim(mut self) -> Self {
        self.expand = false;
        self
    }

    fn wrong_type(&self, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            key: self.path.clone(),
            expected,
            found: shape(self.value),
        }
    }

    /// The scalar as text after `${ENV}` expansion; `None` when the key has no value.
    pub(crate) fn text(&self) -> Result<Option<String>, ConfigError> {
        match self.value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b.to_string())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::String(s) if !self.expand => Ok(Some(s.clone())),
            Value::String(s) => match env::expand(s, self.cx.env) {
                Expanded::Literal => Ok(Some(s.clone())),
                Expanded::Set(v) => Ok(Some(v)),
                Expanded::Unset(name) => {
                    self.cx.warn(format!(
                        "`{}`: the environment variable {name} is not set, so the value is empty",
                        self.path
                    ));
                    Ok(Some(String::new()))
                }
            },
            _ => Err(self.wrong_type("a single value")),
        }
    }

    /// Text, with empty meaning "not set".
    pub(crate) fn optional_string(&self) -> Result<Option<String>, ConfigError> {
        Ok(self.text()?.filter(|s| !s.is_empty()))
    }

    /// Text that must not be empty; `hint` tells the operator what belongs there.
    pub(crate) fn required_string(&self, hint: &'static str) -> Result<String, ConfigError> {
        match self.optional_string()? {
            Some(s) => Ok(s),
            None => Err(self.empty(hint)),
        }
    }

    /// The error for an empty required value, naming the unset variable when there is one.
    pub(crate) fn empty(&self, hint: &'static str) -> ConfigError {
        let cause = match self.value {
            Value::String(s) if self.expand => env::reference(s)
                .map(|name| format!(" because the environment variable {name} is not set"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        ConfigError::Empty {
            key: self.path.clone(),
            cause,
            hint,
        }
    }

    /// `true`/`false` (YAML booleans, or text after expansion, any case).
    pub(crate) fn bool(&self) -> Result<Option<bool>, ConfigError> {
        if let Value::Bool(b) = self.value {
            return Ok(Some(*b));
        }
        let Some(text) = self.optional_string()? else {
            return Ok(None);
        };
        match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(ConfigError::invalid(
                &self.path,
                format!("'{text}' is not a boolean; write true or false"),
            )),
        }
    }

    /// A Go-syntax duration; a bare `0` is accepted as zero, as Go does.
    pub(crate) fn duration(&self) -> Result<Option<Duration>, ConfigError> {
        if let Value::Number(n) = self.value {
            return match n.as_u64() {
                Some(0) => Ok(Some(Duration::ZERO)),
                _ => Err(ConfigError::Duration {
                    key: self.path.clone(),
                    value: n.to_string(),
                    reason: "a number is missing its unit (ns, us, ms, s, m or h)",
                }),
            };
        }
        let Some(text) = self.optional_string()? else {
            return Ok(None);
        };
        parse_go_duration(&text)
            .map(Some)
            .map_err(|reason| ConfigError::Duration {
                key: self.path.clone(),
                value: text,
                reason,
            })
    }

    /// A whole number ≥ 0.
    pub(crate) fn u64(&self) -> Result<Option<u64>, ConfigError> {
        if let Value::Number(n) = self.value
            && let Some(v) = n.as_u64()
        {
            return Ok(Some(v));
        }
        let Some(text) = self.optional_string()? else {
            return Ok(None);
        };
        text.trim().parse().map(Some).map_err(|_| {
            ConfigError::invalid(
                &self.path,
                format!("'{text}' is not a whole number; write a number such as 10000"),
            )
        })
    }

    /// The items of a list; an empty value is an empty list.
    pub(crate) fn list(&self) -> Result<Vec<Field<'a>>, ConfigError> {
        match self.value {
            Value::Null => Ok(Vec::new()),
            Value::Sequence(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Field {
                    cx: self.cx,
                    path: format!("{}[{i}]", self.path),
                    value,
                    expand: self.expand,
                })
                .collect()),
            _ => Err(self.wrong_type("a list")),
        }
    }

    /// The keys below this one; an empty value is a section without keys.
    pub(crate) fn section(&self) -> Result<Section<'a>, ConfigError> {
        Section::new(self.cx, self.path.clone(), self.value, self.expand)
    }
}

/// Reads a key that may be absent: `None` when it is, else whatever `read` makes of it.
pub(crate) fn opt<'a, T>(
    field: &Option<Field<'a>>,
    read: impl FnOnce(&Field<'a>) -> Result<Option<T>, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match field {
        Some(f) => read(f),
        None => Ok(None),
    }
}

/// The items of a list key that may be absent (then there are none).
pub(crate) fn items<'a>(field: &Option<Field<'a>>) -> Result<Vec<Field<'a>>, ConfigError> {
    match field {
        Some(f) => f.list(),
        None => Ok(Vec::new()),
    }
}

struct Entry<'a> {
    key: String,
    value: &'a Value,
    used: bool,
}

/// A YAML mapping being read: hands out the keys it is asked for and, at the end, refuses the
/// ones nobody asked for.
pub(crate) struct Section<'a> {
    cx: &'a Ctx<'a>,
    path: String,
    entries: Vec<Entry<'a>>,
    asked: Vec<&'static str>,
    expand: bool,
}

impl<'a> Section<'a> {
    /// The top of the document. An empty document is an empty section.
    pub(crate) fn root(cx: &'a Ctx<'a>, value: &'a Value) -> Result<Self, ConfigError> {
        if !matches!(value, Value::Null | Value::Mapping(_)) {
            return Err(ConfigError::Yaml {
                message: format!(
                    "the top level is {}, but it must be a mapping of keys such as `address:`, `admin:` and `tls:`",
                    shape(value)
                ),
            });
        }
        Section::new(cx, String::new(), value, true)
    }

    fn new(
        cx: &'a Ctx<'a>,
        path: String,
        value: &'a Value,
        expand: bool,
    ) -> Result<Self, ConfigError> {
        let mapping = match value {
            Value::Null => None,
            Value::Mapping(m) => Some(m),
            other => {
                return Err(ConfigError::WrongType {
                    key: path,
                    expected: "a mapping of keys",
                    found: shape(other),
                });
            }
        };
        let mut entries = Vec::new();
        for (k, value) in mapping.into_iter().flatten() {
            // YAML reads `123:` as a number; a policy may well be called 123.
            let key = match k {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ConfigError::invalid(
                        if path.is_empty() {
                            "(top level)"
                        } else {
                            &path
                        },
                        format!("a key is {}, but keys must be names", shape(other)),
                    ));
                }
            };
            entries.push(Entry {
                key,
                value,
                used: false,
            });
        }
        Ok(Section {
            cx,
            path,
            entries,
            asked: Vec::new(),
            expand,
        })
    }

    fn field(&self, key: &str, value: &'a Value) -> Field<'a> {
        Field {
            cx: self.cx,
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            value,
            expand: self.expand,
        }
    }

    /// The value of `key`, if the mapping has it.
    pub(crate) fn take(&mut self, key: &'static str) -> Option<Field<'a>> {
        self.asked.push(key);
        let entry = self.entries.iter_mut().find(|e| e.key == key)?;
        entry.used = true;
        let value = entry.value;
        Some(self.field(key, value))
    }

    /// Every key with its value, in file order, for mappings whose keys are names (policies,
    /// API routes) rather than settings.
    pub(crate) fn take_all(&mut self) -> Vec<(String, Field<'a>)> {
        let values: Vec<_> = self
            .entries
            .iter_mut()
            .map(|e| {
                e.used = true;
                (e.key.clone(), e.value)
            })
            .collect();
        values
            .into_iter()
            .map(|(key, value)| {
                let field = self.field(&key, value);
                (key, field)
            })
            .collect()
    }

    /// Fails on the first key that no `take` asked for.
    pub(crate) fn finish(&self) -> Result<(), ConfigError> {
        self.finish_with(&[])
    }

    /// Like [`Section::finish`], but keys that older KES versions spelt differently get a
    /// message saying what to write instead of a bare "unknown key".
    pub(crate) fn finish_with(&self, renamed: &[(&str, &str)]) -> Result<(), ConfigError> {
        match self.entries.iter().find(|e| !e.used) {
            None => Ok(()),
            Some(e) => Err(match renamed.iter().find(|(old, _)| *old == e.key) {
                Some((_, advice)) => {
                    ConfigError::invalid(self.field(&e.key, e.value).path, *advice)
                }
                None => self.unknown(e),
            }),
        }
    }

    fn unknown(&self, e: &Entry<'a>) -> ConfigError {
        ConfigError::UnknownKey {
            key: self.field(&e.key, e.value).path,
            allowed: if self.asked.is_empty() {
                "no keys".to_owned()
            } else {
                self.asked.join(", ")
            },
        }
    }
}

/// Test helper: reads `key` of a one-section YAML document with `parse`, the way the whole-file
/// reader hands a section to its module.
#[cfg(test)]
pub(crate) fn parse_section<T>(
    yaml: &str,
    key: &'static str,
    parse: impl Fn(&Field<'_>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let value: Value = serde_yaml_ng::from_str(yaml).expect("test YAML parses");
    let env = |_: &str| None;
    let cx = Ctx::new(&env);
    let mut root = Section::root(&cx, &value)?;
    let field = root.take(key).expect("the section is present");
    parse(&field)
}
