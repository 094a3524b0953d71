//! Values a flow gives for a connector's config keys or a template's
//! parameters: unknown keys, missing keys, types, `enum`, defaults.
//!
//! Messages about a secret key never show its value.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::spec::plan::{ConfigField, ConfigType};
use crate::spec::suggest;

/// One value as the flow gives it.
#[derive(Debug, Clone)]
pub struct Given {
    pub key: String,
    pub value: Value,
    /// True when the value is text from the environment or the command line
    /// (`${PORT}`, `--set port=8080`), so it is converted to the declared type.
    pub from_text: bool,
}

/// Which part of the entry a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
    /// The mapping that should contain a missing key.
    Container,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueProblem {
    pub key: String,
    pub part: Part,
    pub message: String,
}

/// How messages name the keys: `config key` of `connector "github"`.
pub struct Naming<'a> {
    pub noun: &'a str,
    pub owner: &'a str,
}

/// Checks `given` against `declared`: returns the values with defaults
/// applied, and every problem.
pub fn check_values(
    declared: &IndexMap<String, ConfigField>,
    given: &[Given],
    naming: &Naming<'_>,
) -> (Map<String, Value>, Vec<ValueProblem>) {
    let mut values = Map::new();
    let mut problems = Vec::new();
    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
    for entry in given {
        let Some(field) = declared.get(&entry.key) else {
            let hint = suggest::hint(&entry.key, &names, &format!("{}s", naming.noun));
            problems.push(ValueProblem {
                key: entry.key.clone(),
                part: Part::Key,
                message: format!(
                    "unknown {} \"{}\" for {}{hint}",
                    naming.noun, entry.key, naming.owner
                ),
            });
            continue;
        };
        // An explicit null reads as "not set": the default or the required check applies.
        if entry.value.is_null() {
            continue;
        }
        let label = format!("{} \"{}\"", naming.noun, entry.key);
        let checked = if entry.from_text {
            match &entry.value {
                Value::String(text) => coerce_text(text, field, &label),
                other => check_value(other, field, &label).map(|()| other.clone()),
            }
        } else {
            check_value(&entry.value, field, &label).map(|()| entry.value.clone())
        };
        match checked {
            Ok(value) => {
                values.insert(entry.key.clone(), value);
            }
            Err(message) => problems.push(ValueProblem {
                key: entry.key.clone(),
                part: Part::Value,
                message,
            }),
        }
    }
    for (key, field) in declared {
        if values.contains_key(key) || problems.iter().any(|problem| &problem.key == key) {
            continue;
        }
        if let Some(default) = &field.default {
            values.insert(key.clone(), default.clone());
        } else if field.required {
            problems.push(ValueProblem {
                key: key.clone(),
                part: Part::Container,
                message: format!(
                    "missing {} \"{key}\" (required by {})",
                    naming.noun, naming.owner
                ),
            });
        }
    }
    (values, problems)
}

/// Checks a value against a field's type and `enum`.
pub fn check_value(value: &Value, field: &ConfigField, label: &str) -> Result<(), String> {
    if !has_type(value, field.value_type) {
        let expected = type_phrase(field.value_type);
        return Err(match field.secret {
            true => format!("{label} must be {expected}, found {}", kind_phrase(value)),
            false => format!("{label} must be {expected}, found {}", show(value)),
        });
    }
    if let (Some(pattern), Value::String(text)) = (&field.pattern, value)
        && !pattern.is_match(text)
    {
        return Err(match field.secret {
            true => format!("{label} does not have the form its connector expects"),
            false => format!(
                "{label} must match the pattern {}, found {}",
                pattern_source(pattern),
                show(value)
            ),
        });
    }
    if let Some(allowed) = &field.allowed
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        let list = list.join(", ");
        return Err(match field.secret {
            true => format!("{label} must be one of the values its connector allows"),
            false => format!("{label} must be one of {list}, found {}", show(value)),
        });
    }
    Ok(())
}

/// Returns a pattern as its declaration wrote it, without the anchors
/// added when it was compiled.
fn pattern_source(pattern: &regex::Regex) -> &str {
    let source = pattern.as_str();
    source
        .strip_prefix("^(?:")
        .and_then(|inner| inner.strip_suffix(")$"))
        .unwrap_or(source)
}

/// Compiles a declared pattern so that it must match a whole value.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    // Compiled alone first, so that an error shows the pattern as written.
    regex::Regex::new(pattern)?;
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// Converts text (from `${…}` or `--set`) to the field's type: numbers and
/// booleans are parsed, objects and arrays read as JSON.
pub fn coerce_text(text: &str, field: &ConfigField, label: &str) -> Result<Value, String> {
    let parsed = match field.value_type {
        ConfigType::String => Some(Value::String(text.to_string())),
        ConfigType::Integer | ConfigType::Number => {
            serde_json::from_str::<serde_json::Number>(text.trim())
                .ok()
                .map(Value::Number)
        }
        ConfigType::Boolean => match text.trim() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ConfigType::Object | ConfigType::Array => serde_json::from_str::<Value>(text).ok(),
    };
    let expected = type_phrase(field.value_type);
    let Some(value) = parsed else {
        return Err(match field.secret {
            true => format!("{label} must be {expected}"),
            false => format!("{label} must be {expected}, found \"{text}\""),
        });
    };
    check_value(&value, field, label)?;
    Ok(value)
}

fn has_type(value: &Value, value_type: ConfigType) -> bool {
    match (value_type, value) {
        (ConfigType::String, Value::String(_)) => true,
        (ConfigType::Integer, Value::Number(number)) => number.is_i64() || number.is_u64(),
        (ConfigType::Number, Value::Number(_)) => true,
        (ConfigType::Boolean, Value::Bool(_)) => true,
        (ConfigType::Object, Value::Object(_)) => true,
        (ConfigType::Array, Value::Array(_)) => true,
        _ => false,
    }
}

pub fn type_phrase(value_type: ConfigType) -> &'static str {
    match value_type {
        ConfigType::String => "a string",
        ConfigType::Integer => "an integer",
        ConfigType::Number => "a number",
        ConfigType::Boolean => "true or false",
        ConfigType::Object => "a mapping",
        ConfigType::Array => "a list",
    }
}

/// Names the JSON type of a value, without the value.
fn kind_phrase(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Shows a value in a message: scalars as JSON, collections by kind.
fn show(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => kind_phrase(value).to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(value_type: ConfigType) -> ConfigField {
        ConfigField {
            value_type,
            secret: false,
            default: None,
            required: true,
            description: None,
            allowed: None,
            pattern: None,
            templated: false,
        }
    }

    fn naming() -> Naming<'static> {
        Naming {
            noun: "config key",
            owner: "connector \"github\"",
        }
    }

    fn given(key: &str, value: Value) -> Given {
        Given {
            key: key.to_string(),
            value,
            from_text: false,
        }
    }

    #[test]
    fn unknown_key_is_suggested() {
        let mut declared = IndexMap::new();
        declared.insert("token".to_string(), field(ConfigType::String));
        let (_, problems) = check_values(&declared, &[given("tokn", json!("x"))], &naming());
        assert_eq!(
            problems[0].message,
            "unknown config key \"tokn\" for connector \"github\"; did you mean \"token\"?"
        );
        assert_eq!(problems[0].part, Part::Key);
    }

    #[test]
    fn missing_required_key_is_reported() {
        let mut declared = IndexMap::new();
        declared.insert("token".to_string(), field(ConfigType::String));
        let (_, problems) = check_values(&declared, &[], &naming());
        assert_eq!(
            problems,
            vec![ValueProblem {
                key: "token".to_string(),
                part: Part::Container,
                message: "missing config key \"token\" (required by connector \"github\")"
                    .to_string(),
            }]
        );
    }

    #[test]
    fn default_is_applied() {
        let mut declared = IndexMap::new();
        let mut base_url = field(ConfigType::String);
        base_url.default = Some(json!("https://api.github.com"));
        declared.insert("base_url".to_string(), base_url);
        let (values, problems) = check_values(&declared, &[], &naming());
        assert!(problems.is_empty());
        assert_eq!(values["base_url"], json!("https://api.github.com"));
    }

    #[test]
    fn type_mismatch_shows_value_unless_secret() {
        let mut limit = field(ConfigType::Integer);
        assert_eq!(
            check_value(&json!("ten"), &limit, "config key \"limit\"").unwrap_err(),
            "config key \"limit\" must be an integer, found \"ten\""
        );
        limit.secret = true;
        assert_eq!(
            check_value(&json!("ten"), &limit, "config key \"limit\"").unwrap_err(),
            "config key \"limit\" must be an integer, found a string"
        );
    }

    #[test]
    fn enum_is_checked() {
        let mut region = field(ConfigType::String);
        region.allowed = Some(vec![json!("us"), json!("eu")]);
        assert_eq!(
            check_value(&json!("asia"), &region, "config key \"region\"").unwrap_err(),
            "config key \"region\" must be one of \"us\", \"eu\", found \"asia\""
        );
    }

    #[test]
    fn text_is_coerced_to_declared_type() {
        let label = "config key \"x\"";
        assert_eq!(
            coerce_text("42", &field(ConfigType::Integer), label),
            Ok(json!(42))
        );
        assert_eq!(
            coerce_text("2.5", &field(ConfigType::Number), label),
            Ok(json!(2.5))
        );
        assert_eq!(
            coerce_text("true", &field(ConfigType::Boolean), label),
            Ok(json!(true))
        );
        assert_eq!(
            coerce_text("[1,2]", &field(ConfigType::Array), label),
            Ok(json!([1, 2]))
        );
        assert_eq!(
            coerce_text("{\"a\":1}", &field(ConfigType::Object), label),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            coerce_text("2.5", &field(ConfigType::Integer), label).unwrap_err(),
            "config key \"x\" must be an integer, found 2.5"
        );
        assert_eq!(
            coerce_text("yes", &field(ConfigType::Boolean), label).unwrap_err(),
            "config key \"x\" must be true or false, found \"yes\""
        );
    }
}
