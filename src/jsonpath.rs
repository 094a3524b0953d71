//! Compiled JSONPath expressions (RFC 9535, through `jsonpath-rust`).
//!
//! Most paths in specs are plain steps (`$.data[*]`, `$.meta.next`), which
//! are walked directly and, for records, moved out of the page instead of
//! cloned. Anything else (filters, slices, recursive descent) goes through
//! the library.

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

#[derive(Clone)]
pub struct JsonPath {
    source: String,
    query: JpQuery,
    steps: Option<Vec<Step>>,
}

impl std::fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonPath({:?})", self.source)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Wildcard,
}

impl JsonPath {
    /// Compiles `source`; the error says what is wrong with it.
    pub fn compile(source: &str) -> Result<JsonPath, String> {
        let query = parse_json_path(source)
            .map_err(|error| format!("invalid JSONPath {source:?}: {error}"))?;
        Ok(JsonPath {
            source: source.to_string(),
            query,
            steps: simple_steps(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The top-level key a plain path starts with (`lines` for
    /// `$.lines.data`); `None` for other paths.
    pub fn first_key(&self) -> Option<&str> {
        match self.steps.as_deref()?.first()? {
            Step::Key(key) => Some(key),
            _ => None,
        }
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        if let Some(steps) = &self.steps {
            let mut found = Vec::new();
            walk(value, steps, &mut found);
            return found;
        }
        match js_path_process(&self.query, value) {
            Ok(found) => found.into_iter().map(|found| found.val()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The one value the path selects: `None` when it selects nothing,
    /// an error when it selects several.
    pub fn find_one<'a>(&self, value: &'a Value) -> Result<Option<&'a Value>, String> {
        let mut found = self.find(value);
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            count => Err(format!(
                "JSONPath {:?} selected {count} values where one was expected",
                self.source
            )),
        }
    }

    /// Moves the selected values out of `value`. A path that selects one
    /// array yields the array's items, so `$.data` and `$.data[*]` agree.
    pub fn take(&self, mut value: Value) -> Vec<Value> {
        let mut taken = match &self.steps {
            Some(steps) => {
                let mut taken = Vec::new();
                take_walk(&mut value, steps, &mut taken);
                taken
            }
            None => self.find(&value).into_iter().cloned().collect(),
        };
        if taken.len() == 1
            && taken[0].is_array()
            && let Some(Value::Array(items)) = taken.pop()
        {
            return items;
        }
        taken.retain(|item| !item.is_null());
        taken
    }
}

fn walk<'a>(value: &'a Value, steps: &[Step], found: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        found.push(value);
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(child) = map.get(key) {
                walk(child, rest, found);
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(child) = items.get(*index) {
                walk(child, rest, found);
            }
        }
        (Step::Wildcard, Value::Array(items)) => {
            for child in items {
                walk(child, rest, found);
            }
        }
        (Step::Wildcard, Value::Object(map)) => {
            for child in map.values() {
                walk(child, rest, found);
            }
        }
        _ => {}
    }
}

fn take_walk(value: &mut Value, steps: &[Step], taken: &mut Vec<Value>) {
    let Some((step, rest)) = steps.split_first() else {
        taken.push(value.take());
        return;
    };
    match (step, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(child) = map.get_mut(key) {
                take_walk(child, rest, taken);
            }
        }
        (Step::Index(index), Value::Array(items)) => {
            if let Some(child) = items.get_mut(*index) {
                take_walk(child, rest, taken);
            }
        }
        (Step::Wildcard, Value::Array(items)) => {
            if rest.is_empty() {
                taken.extend(std::mem::take(items));
                return;
            }
            for child in items {
                take_walk(child, rest, taken);
            }
        }
        (Step::Wildcard, Value::Object(map)) => {
            for child in map.values_mut() {
                take_walk(child, rest, taken);
            }
        }
        _ => {}
    }
}

/// Splits `$.a.b[0][*]['c d']` into plain steps, or `None` when the path
/// uses anything else.
fn simple_steps(source: &str) -> Option<Vec<Step>> {
    let mut rest = source.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            let plain = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            if !plain || key.starts_with('-') {
                return None;
            }
            steps.push(Step::Key(key.to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("[*]") {
            steps.push(Step::Wildcard);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']")?;
            let key = &after[..end];
            if key.contains(['\\', '\'']) {
                return None;
            }
            steps.push(Step::Key(key.to_string()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let index = after[..end].parse::<usize>().ok()?;
            steps.push(Step::Index(index));
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn simple_paths_are_walked() {
        assert_eq!(
            simple_steps("$.data[*].id"),
            Some(vec![
                Step::Key("data".into()),
                Step::Wildcard,
                Step::Key("id".into())
            ])
        );
        assert_eq!(simple_steps("$.data[-1:].id"), None);
        assert_eq!(simple_steps("$..id"), None);
    }

    #[test]
    fn first_key_of_plain_paths() {
        let first = |source: &str| {
            JsonPath::compile(source)
                .unwrap()
                .first_key()
                .map(str::to_string)
        };
        assert_eq!(first("$.lines.data"), Some("lines".to_string()));
        assert_eq!(first("$.lines"), Some("lines".to_string()));
        assert_eq!(first("$[*]"), None);
        assert_eq!(first("$..lines"), None);
    }

    #[test]
    fn take_moves_records_out() {
        let path = JsonPath::compile("$.data[*]").unwrap();
        let records = path.take(json!({"data": [{"id": 1}, {"id": 2}]}));
        assert_eq!(records, vec![json!({"id": 1}), json!({"id": 2})]);
    }

    #[test]
    fn take_single_array_yields_items() {
        let path = JsonPath::compile("$.data").unwrap();
        let records = path.take(json!({"data": [{"id": 1}]}));
        assert_eq!(records, vec![json!({"id": 1})]);
    }

    #[test]
    fn slice_selects_last_id() {
        let path = JsonPath::compile("$.data[-1:].id").unwrap();
        let page = json!({"data": [{"id": "a"}, {"id": "b"}]});
        assert_eq!(path.find_one(&page).unwrap(), Some(&json!("b")));
    }

    #[test]
    fn find_one_rejects_several() {
        let path = JsonPath::compile("$.data[*].id").unwrap();
        let page = json!({"data": [{"id": "a"}, {"id": "b"}]});
        assert!(path.find_one(&page).is_err());
    }

    #[test]
    fn quoted_keys_with_spaces() {
        let path = JsonPath::compile("$['a b'].c").unwrap();
        assert_eq!(path.find(&json!({"a b": {"c": 3}})), vec![&json!(3)]);
    }
}
