//! serde's error messages rewritten for people who edit YAML files.
//!
//! serde_yaml reports `entities.issues.pagination: unknown field \`typ\`,
//! expected one of \`type\`, ... at line 9 column 7`. This module splits that
//! into a path and a message, then restates the message in the words of the
//! file format, with a did-you-mean hint and the position of the offending
//! key or value taken from the [`PositionIndex`].

use super::index::{Node, NodeKind, Position, PositionIndex};
use crate::spec::suggest;

/// A serde error split into its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct SerdeProblem {
    /// Path of the value being read, `[]` for the document root.
    pub path: Vec<String>,
    /// serde's message without the path and the location.
    pub message: String,
    pub location: Option<Position>,
}

/// The phrases serde's messages start with, used to find where the path
/// prefix ends.
const MESSAGE_STARTS: &[&str] = &[
    "unknown field",
    "unknown variant",
    "missing field",
    "invalid type",
    "invalid value",
    "invalid length",
    "duplicate field",
    "data did not match any variant",
];

impl SerdeProblem {
    /// Builds a problem found at `path` from a message that has no path or
    /// position of its own (`serde_json::from_value`).
    pub fn new(path: Vec<String>, message: String) -> SerdeProblem {
        SerdeProblem {
            path,
            message,
            location: None,
        }
    }

    pub fn from_error(error: &serde_yaml::Error) -> SerdeProblem {
        let location = error.location().map(|location| Position {
            line: location.line(),
            column: location.column(),
        });
        let mut text = error.to_string();
        if let Some(position) = location {
            let suffix = format!(" at line {} column {}", position.line, position.column);
            if let Some(stripped) = text.strip_suffix(&suffix) {
                text = stripped.to_string();
            }
        }
        SerdeProblem::from_text(&text, location)
    }

    fn from_text(text: &str, location: Option<Position>) -> SerdeProblem {
        let start = MESSAGE_STARTS
            .iter()
            .filter_map(|phrase| text.find(phrase))
            .min();
        match start {
            Some(start) if start >= 2 && text[..start].ends_with(": ") => SerdeProblem {
                path: parse_path(&text[..start - 2]),
                message: text[start..].to_string(),
                location,
            },
            _ => SerdeProblem {
                path: Vec::new(),
                message: text.to_string(),
                location,
            },
        }
    }
}

/// Splits serde_yaml's `a.b[0].c` into segments; `.` is the root.
fn parse_path(text: &str) -> Vec<String> {
    if text == "." {
        return Vec::new();
    }
    let mut segments = Vec::new();
    for piece in text.split('.') {
        let mut rest = piece;
        if let Some(bracket) = rest.find('[') {
            if bracket > 0 {
                segments.push(rest[..bracket].to_string());
            }
            rest = &rest[bracket..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some(close) = inner.find(']') else { break };
                segments.push(inner[..close].to_string());
                rest = &inner[close + 1..];
            }
        } else {
            segments.push(rest.to_string());
        }
    }
    segments
}

/// Names inside backticks, in order: the `expected` lists of serde messages.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Says where a path is, in the words of the format: `entity "issues"`,
/// `entities.issues.pagination`, or `subject` for the document root.
pub fn describe_place(path: &[String], subject: &str) -> String {
    match path {
        [] => subject.to_string(),
        [section, name] if section == "entities" => format!("entity \"{name}\""),
        [section, name] if section == "templates" => format!("template \"{name}\""),
        _ => path.join("."),
    }
}

/// The field's name for "X must be ..." messages.
fn field_name(path: &[String]) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        path.join(".")
    }
}

/// Rewrites a problem into a located message. `subject` names the document
/// (`connector "github"`) for problems at its root.
pub fn describe(
    problem: &SerdeProblem,
    index: &PositionIndex,
    subject: &str,
) -> (Position, String) {
    let fallback = problem
        .location
        .or_else(|| index.root().map(|root| root.value))
        .unwrap_or(Position { line: 1, column: 1 });
    let path = &problem.path;
    let message = problem.message.as_str();
    let value_position = index.value_position(path).unwrap_or(fallback);
    let key_position = index.key_position(path).unwrap_or(fallback);

    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let field = names.first().copied().unwrap_or_default();
        let expected = names.get(1..).unwrap_or_default();
        let mut field_path = path.clone();
        field_path.push(field.to_string());
        let (place_path, position) = match index.get(&field_path) {
            Some(node) => (path.clone(), node.key),
            None => match unique_below(index, path, |segments, _| {
                segments.last().map(String::as_str) == Some(field)
            }) {
                Some((found, node)) => (found[..found.len() - 1].to_vec(), node.key),
                None => (path.clone(), key_position),
            },
        };
        let place = describe_place(&place_path, subject);
        let hint = suggest::hint(field, expected, "fields here");
        return (
            position,
            format!("unknown field \"{field}\" in {place}{hint}"),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        let value = names.first().copied().unwrap_or_default();
        let expected = names.get(1..).unwrap_or_default();
        let (field_path, position) = variant_field(index, path, value, value_position);
        let hint = suggest::hint(value, expected, "accepted values");
        let field = field_name(&field_path);
        return (
            position,
            format!("unknown value \"{value}\" for {field}{hint}"),
        );
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = backticked(rest)
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        let place = describe_place(path, subject);
        // A tagged mapping (`{typ: cursor}`) reports its missing tag before
        // any unknown key, so the misspelt key is named instead.
        if let Some(misspelt) = misspelt_key(index, path, &field) {
            let mut key_path = path.clone();
            key_path.push(misspelt.clone());
            let position = index.key_position(&key_path).unwrap_or(key_position);
            let message =
                format!("unknown field \"{misspelt}\" in {place}; did you mean \"{field}\"?");
            return (position, message);
        }
        return (
            key_position,
            format!("missing field \"{field}\" in {place}"),
        );
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        let field = backticked(rest)
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        let place = describe_place(path, subject);
        return (
            key_position,
            format!("duplicate field \"{field}\" in {place}"),
        );
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let expected = expected_phrase(expected);
        let (field_path, position) = match scalar_below(index, path, &expected, found) {
            Some((found_path, node)) => (found_path, node.value),
            None => (path.clone(), value_position),
        };
        let field = field_name(&field_path);
        let found = found_phrase(found);
        return (
            position,
            format!("{field} must be {expected}, found {found}"),
        );
    }
    if let Some(rest) = message.strip_prefix("data did not match any variant of untagged enum ") {
        let enum_name = rest.trim();
        let path = untagged_field(index, path, enum_name);
        let position = index.value_position(&path).unwrap_or(value_position);
        return untagged(index, &path, enum_name, position);
    }
    let field = field_name(path);
    (
        value_position,
        format!("{field}: {}", message.replace('`', "\"")),
    )
}

/// Returns the one node below `path` that passes `keep`, or None when
/// none or several do. serde_yaml reads a tagged enum (`pagination`,
/// `auth`) from a buffered copy and reports errors inside it at an
/// ancestor of the enum's mapping, so the offending key can be deeper
/// than the path serde gives.
fn unique_below<'a>(
    index: &'a PositionIndex,
    path: &[String],
    keep: impl Fn(&[String], &Node) -> bool,
) -> Option<(Vec<String>, &'a Node)> {
    let mut found = index.find_below(path, keep);
    if found.len() != 1 {
        return None;
    }
    let found = found.remove(0);
    let node = index.get(&found)?;
    Some((found, node))
}

/// Finds the scalar below `path` that a type error is about, when serde
/// reports a scalar type expected at a mapping (the path stops short
/// inside a tagged enum). `found` is serde's description of the value,
/// such as `string "three"` or ``integer `-1` ``.
fn scalar_below<'a>(
    index: &'a PositionIndex,
    path: &[String],
    expected: &str,
    found: &str,
) -> Option<(Vec<String>, &'a Node)> {
    let node = index.get(path)?;
    if node.kind != NodeKind::Mapping || expected == "a mapping" {
        return None;
    }
    let text = found_scalar(found)?;
    unique_below(index, path, |_, node| {
        node.kind == NodeKind::Scalar && node.scalar.as_deref() == Some(text.as_str())
    })
}

/// Returns the YAML text of a scalar serde describes (`string "abc"`,
/// ``integer `5` ``), or None for other values.
fn found_scalar(found: &str) -> Option<String> {
    if let Some(quoted) = found.strip_prefix("string ") {
        return serde_json::from_str::<String>(quoted).ok();
    }
    ["integer ", "floating point ", "boolean "]
        .iter()
        .find_map(|prefix| found.strip_prefix(prefix))
        .map(|text| text.trim_matches('`').to_string())
}

/// Returns a key of the mapping at `path` that looks like a misspelling of
/// the missing `field`.
fn misspelt_key(index: &PositionIndex, path: &[String], field: &str) -> Option<String> {
    let node = index.get(path)?;
    node.keys
        .iter()
        .find(|key| suggest::closest(key, [field]).is_some())
        .cloned()
}

/// Finds the field an unknown variant was written in: the `type` key of a
/// tagged mapping (`pagination: {type: curser}`), else the value itself.
fn variant_field(
    index: &PositionIndex,
    path: &[String],
    value: &str,
    fallback: Position,
) -> (Vec<String>, Position) {
    let mut tag_path = path.to_vec();
    tag_path.push("type".to_string());
    match index.get(&tag_path) {
        Some(node) if node.scalar.as_deref() == Some(value) => (tag_path, node.value),
        _ => (path.to_vec(), fallback),
    }
}

/// Rewrites serde's name for an expected type (`u64`, `a map`, `struct
/// RawHttp`) in the format's words.
fn expected_phrase(expected: &str) -> String {
    let phrase = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a boolean" => "true or false",
        _ if expected.starts_with("struct ")
            || expected.starts_with("internally tagged enum ")
            || expected.starts_with("struct variant ") =>
        {
            "a mapping"
        }
        _ if expected.starts_with("enum ") => "one of its named values",
        other => other,
    };
    phrase.to_string()
}

/// Rewrites serde's description of a found value (`string "abc"`,
/// `integer \`5\``, `unit value`).
fn found_phrase(found: &str) -> String {
    if let Some(text) = found.strip_prefix("string ") {
        return text.to_string();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(text) = found.strip_prefix(prefix) {
            return text.trim_matches('`').to_string();
        }
    }
    match found {
        "unit value" => "an empty value".to_string(),
        "map" => "a mapping".to_string(),
        "sequence" => "a list".to_string(),
        other => other.replace('`', ""),
    }
}

/// Fields whose values are untagged enums, by enum name.
fn untagged_fields(enum_name: &str) -> &'static [&'static str] {
    match enum_name {
        "PrimaryKey" => &["primary_key"],
        "RawRecords" => &["records"],
        "RawParam" => &[
            "param",
            "offset_param",
            "limit_param",
            "page_size_param",
            "start_param",
            "end_param",
        ],
        "RawFlowEntities" => &["entities"],
        "SecretList" => &["secret"],
        _ => &[],
    }
}

/// Finds the field that contains an untagged enum. serde_yaml reports these
/// errors at the mapping that contains the field, so the field is the child
/// with a matching name; a mapping or list is preferred, because a plain
/// string matches every one of these enums.
fn untagged_field(index: &PositionIndex, path: &[String], enum_name: &str) -> Vec<String> {
    let names = untagged_fields(enum_name);
    if path
        .last()
        .is_some_and(|last| names.contains(&last.as_str()))
    {
        return path.to_vec();
    }
    let Some(node) = index.get(path) else {
        return path.to_vec();
    };
    let child = |key: &String| {
        let mut child = path.to_vec();
        child.push(key.clone());
        child
    };
    let candidates: Vec<Vec<String>> = node
        .keys
        .iter()
        .filter(|key| names.contains(&key.as_str()))
        .map(child)
        .collect();
    let structured = candidates.iter().find(|candidate| {
        index
            .get(candidate)
            .is_some_and(|node| node.kind != NodeKind::Scalar)
    });
    structured
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| path.to_vec())
}

/// Explains a value that matched none of an untagged enum's forms, naming
/// the offending key when the value is a mapping with a misspelt one.
fn untagged(
    index: &PositionIndex,
    path: &[String],
    enum_name: &str,
    position: Position,
) -> (Position, String) {
    let field = field_name(path);
    let (forms, keys): (&str, &[&str]) = match enum_name {
        "PrimaryKey" => ("a field name or a list of field names", &[]),
        "RawRecords" => (
            "a JSONPath, or a mapping {rows, columns} or {rows, schema}",
            &["rows", "columns", "schema"],
        ),
        "RawParam" => (
            "a query parameter name, or a mapping {in: query|body|header, name: NAME}",
            &["in", "name"],
        ),
        "RawFlowEntities" => (
            "a list of entity names, or a mapping from entity name to its settings",
            &[],
        ),
        "SecretList" => ("a string or a list of strings", &[]),
        _ => ("one of its accepted forms", &[]),
    };
    if enum_name == "RawFlowEntities"
        && let Some(problem) = entity_settings_problem(index, path)
    {
        return problem;
    }
    if let Some(node) = index.get(path)
        && node.kind == NodeKind::Mapping
        && !keys.is_empty()
    {
        for key in &node.keys {
            if !keys.contains(&key.as_str()) {
                let mut key_path = path.to_vec();
                key_path.push(key.clone());
                let key_position = index.key_position(&key_path).unwrap_or(position);
                let hint = suggest::hint(key, keys, "fields here");
                return (
                    key_position,
                    format!("unknown field \"{key}\" in {field}{hint}"),
                );
            }
        }
        if enum_name == "RawParam"
            && let Some(problem) = param_location_problem(index, path)
        {
            return problem;
        }
    }
    (position, format!("{field} must be {forms}"))
}

/// Finds an entry of a flow's `entities` mapping whose settings are not a
/// mapping, such as `events:` with nothing after it.
fn entity_settings_problem(index: &PositionIndex, path: &[String]) -> Option<(Position, String)> {
    let node = index.get(path)?;
    if node.kind != NodeKind::Mapping {
        return None;
    }
    node.keys.iter().find_map(|name| {
        let mut entry = path.to_vec();
        entry.push(name.clone());
        let settings = index.get(&entry)?;
        (settings.kind != NodeKind::Mapping).then(|| {
            let message = format!(
                "{}.{name} must be a mapping; write {name}: {{}} to select the entity, or {name}: {{template: NAME, ...}}",
                field_name(path)
            );
            (settings.value, message)
        })
    })
}

/// Finds a bad `in` or a missing `name` in a `{in, name}` parameter.
fn param_location_problem(index: &PositionIndex, path: &[String]) -> Option<(Position, String)> {
    let field = field_name(path);
    let mut in_path = path.to_vec();
    in_path.push("in".to_string());
    let locations = ["query", "body", "header"];
    match index.get(&in_path) {
        None => {
            let position = index.key_position(path)?;
            return Some((position, format!("missing field \"in\" in {field}")));
        }
        Some(node) => {
            let value = node.scalar.as_deref().unwrap_or_default();
            if !locations.contains(&value) {
                let hint = suggest::hint(value, &locations, "accepted values");
                return Some((
                    node.value,
                    format!("unknown value \"{value}\" for {field}.in{hint}"),
                ));
            }
        }
    }
    let mut name_path = path.to_vec();
    name_path.push("name".to_string());
    if index.get(&name_path).is_none() {
        let position = index.key_position(path)?;
        return Some((position, format!("missing field \"name\" in {field}")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_message_are_split() {
        let problem = SerdeProblem::from_text(
            "entities.issues.pagination: unknown field `typ`, expected `type`",
            None,
        );
        assert_eq!(problem.path, vec!["entities", "issues", "pagination"]);
        assert_eq!(problem.message, "unknown field `typ`, expected `type`");
    }

    #[test]
    fn sequence_indexes_become_segments() {
        assert_eq!(parse_path("primary_key[0]"), vec!["primary_key", "0"]);
        assert_eq!(parse_path("a[1][2].b"), vec!["a", "1", "2", "b"]);
        assert!(parse_path(".").is_empty());
    }

    #[test]
    fn root_message_has_no_path() {
        let problem = SerdeProblem::from_text("missing field `http`", None);
        assert!(problem.path.is_empty());
        assert_eq!(problem.message, "missing field `http`");
    }

    #[test]
    fn expected_types_use_format_words() {
        assert_eq!(expected_phrase("u64"), "a non-negative integer");
        assert_eq!(expected_phrase("struct RawHttp"), "a mapping");
        assert_eq!(found_phrase("string \"abc\""), "\"abc\"");
        assert_eq!(found_phrase("integer `-1`"), "-1");
        assert_eq!(found_phrase("unit value"), "an empty value");
    }
}
